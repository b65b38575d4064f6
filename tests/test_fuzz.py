"""Seeded fuzz cases (bench.fuzz_cases) through the real CLI, in process: a few hundred
malformed images, DICOM files, special files and bundles. Every input gets exactly one
answer line, no traceback, no hang, and no silent wrong answer (the full run:
``python -m bench.fuzz --n 10000``, bench/results/fuzz.md)."""

import json
import os
from collections import Counter, defaultdict

import pytest
from click.testing import CliRunner

from bench import fuzz_cases as fc
from bench.fuzz import check_bundle, judge_bundle, judge_images
from edge_runtime.cli import main

pytestmark = pytest.mark.device

# generator calls per category (variants: 7 files a call)
IMAGE_CALLS = {"variants": 3, "nonfinite": 20, "truncated": 25, "bitflip": 40,
               "header_lies": 10, "shapes": 15, "modes": 25, "multiframe": 8, "garbage": 18,
               "names": 13, "dicom": 20, "special": 6}
BUNDLE_CALLS = {"bundle_manifest": 10, "bundle_zip": 9, "bundle_folder": 6, "bundle_tflite": 4}


@pytest.mark.parametrize("category", sorted(IMAGE_CALLS))
def test_image_fuzz(category, tmp_path):
    if category == "special" and not hasattr(os, "mkfifo"):
        pytest.skip("needs FIFOs")
    cases = fc.image_cases(category, IMAGE_CALLS[category], seed=22)
    folder = tmp_path / "in"
    folder.mkdir()
    paths = [c.write(folder) for c in cases]
    keep = [i for i, c in enumerate(cases) if not c.helper]
    cases, paths = [cases[i] for i in keep], [paths[i] for i in keep]
    r = CliRunner().invoke(main, ["run", *map(os.fsdecode, paths), "--json", "--threads", "1",
                                  "--out", str(tmp_path / "out")])
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    assert "Traceback" not in r.output and r.exit_code in (0, 1), r.output[-2000:]
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(rows) == len(paths)                       # one answer per input
    by_source = {row["source"]: row for row in rows}
    stats, problems = judge_images(cases, paths, by_source)
    assert not problems, problems
    assert stats[category]["files"] == len(cases)
    for line in r.stderr.splitlines():                   # failures: one escaped line each
        assert "\x1b" not in line and "\r" not in line


def test_fuzz_cases_are_reproducible():
    a = fc.image_cases("bitflip", 5, seed=3)
    b = fc.image_cases("bitflip", 5, seed=3)
    assert [c.data for c in a] == [c.data for c in b]
    assert [c.data for c in a] != [c.data for c in fc.image_cases("bitflip", 5, seed=4)]


@pytest.mark.parametrize("category", sorted(BUNDLE_CALLS))
def test_bundle_fuzz(category, tmp_path):
    if category in ("bundle_folder", "bundle_zip") and not hasattr(os, "mkfifo"):
        pytest.skip("needs FIFOs")
    cases = fc.bundle_cases(category, BUNDLE_CALLS[category], seed=22)
    folder = tmp_path / "bundles"
    folder.mkdir()
    problems = []
    stats = defaultdict(Counter)
    for case in cases:
        path = case.write(folder)
        res = check_bundle(os.fsdecode(path), str(fc.EXAMPLES[0]), str(tmp_path / "out"))
        assert res["allow"] in (0, 3) and res["info"] in (0, 3), (case.name, res)
        judge_bundle(case, res, stats, problems)
    assert not problems, problems
    assert stats[category]["refused"] >= len(cases) - 1
