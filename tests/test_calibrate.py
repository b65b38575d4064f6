"""``edge-seg calibrate``: a site's tumour-free scans, the setting chosen for a false-alarm
target, and the new bundle it writes (the tiny bundle: bright regions are 'tumour')."""

import hashlib
import json
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edge_runtime.calibrate import filter_chain, folder_digest, min_scans_for
from edge_runtime.cli import main
from edge_runtime.evaluate import wilson_interval

pytestmark = pytest.mark.device  # no TensorFlow: the tiny bundle runs in the TFLite interpreter

S = 64


def _scan(square=None):
    a = np.zeros((S, S), np.uint8)
    if square:
        r, c, side = square
        a[r:r + side, c:c + side] = 220
    return a


def _negatives(root, n=80, alarms=20, side=6):
    """``n`` tumour-free scans; ``alarms`` of them hold a bright ``side``-px square (a false
    alarm of the tiny model), the rest are blank."""
    root.mkdir(parents=True)
    for i in range(n):
        square = (8 + (i * 7) % 40, 8 + (i * 11) % 40, side) if i < alarms else None
        Image.fromarray(_scan(square)).save(root / f"neg_{i:03d}.png")
    return root


def _labelled(root, n=5):
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    for i in range(n):
        square = (10 + 4 * i, 12 + 3 * i, 16)
        Image.fromarray(_scan(square)).save(root / "images" / f"t{i}.png")
        Image.fromarray((_scan(square) > 0).astype(np.uint8) * 255).save(
            root / "masks" / f"t{i}.png")
    return root


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _manifest(path):
    with zipfile.ZipFile(path) as z:
        return json.loads(z.read("manifest.json"))


def _run(*args):
    return CliRunner().invoke(main, ["calibrate", *map(str, args)])


def test_min_scans_is_where_no_false_alarm_can_show_the_target():
    n = min_scans_for(0.05)
    assert n == 73
    assert wilson_interval(0, n)[1] <= 0.05 < wilson_interval(0, n - 1)[1]
    assert min_scans_for(0.10) < n < min_scans_for(0.02)


def test_folder_digest_changes_with_content_and_names_only(tmp_path):
    root = _negatives(tmp_path / "neg", n=3, alarms=1)
    d = folder_digest(root)
    assert d["files"] == 3 and d == folder_digest(root)
    (root / "neg_000.png").rename(root / "renamed.png")
    renamed = folder_digest(root)
    assert renamed["sha256"] != d["sha256"]
    Image.fromarray(_scan((1, 1, 9))).save(root / "neg_001.png")
    assert folder_digest(root)["sha256"] != renamed["sha256"]


def test_filter_chain_is_nested():
    """Each step keeps a subset of the components the step before kept."""
    from edge_runtime.calibrate import _kept
    rng = np.random.default_rng(0)
    scan = {"size": 4096, "components": {0.5: (rng.integers(1, 80, 50),
                                               rng.uniform(0.5, 1.0, 50), np.zeros(50))}}
    chain = filter_chain((0.5, 0.001, 0.9))
    assert chain[0] == (0.5, 0.001, 0.9) and len(chain) > 3
    for before, after in zip(chain, chain[1:]):
        kb, ka = _kept(scan, before), _kept(scan, after)
        assert not (ka & ~kb).any()


def test_calibrate_writes_a_new_bundle_that_meets_the_target(tiny_bundle, tmp_path):
    neg = _negatives(tmp_path / "site_neg")
    lab = _labelled(tmp_path / "site_lab")
    original = _sha(tiny_bundle)
    out = tmp_path / "site.zip"
    res = _run(tiny_bundle, "--negatives", neg, "--labelled", lab, "--target-fpr", 0.05,
               "--out", out)
    assert res.exit_code == 0, res.output
    assert "20/80 flagged = 25.0 %" in res.output
    assert _sha(tiny_bundle) == original                     # the original is never changed
    m = _manifest(out)
    cal = m["calibration"]
    assert m["name"] == "tiny-test_site" and m["derived_from"]["model_sha256"]
    assert cal["negatives"]["scored"] == 80 and cal["before"]["flagged"] == 20
    assert cal["negatives"]["digest"] == folder_digest(neg)
    assert cal["chosen"]["false_alarms"]["ci95"][1] <= 0.05
    assert cal["chosen"]["missed"] == 0 and cal["chosen"]["tumour_scans"] == 5
    assert m["min_area_fraction"] == cal["chosen"]["min_area_fraction"] >= 0.01
    assert cal["date"] and cal["criterion"] == "upper"

    # The new bundle, run as any bundle is, flags none of the site's scans and misses nothing.
    from edge_runtime.datasets import discover
    from edge_runtime.evaluate import evaluate_bundle
    r = evaluate_bundle(out, discover(neg)[1] + discover(lab)[1])
    assert r.summary["tumour_free"]["fp_scans"] == 0
    assert r.summary["tumour"]["missed_scans"] == 0


def test_without_labelled_scans_the_first_nested_setting_that_passes(tiny_bundle, tmp_path):
    out = tmp_path / "site.zip"
    res = _run(tiny_bundle, "--negatives", _negatives(tmp_path / "neg"), "--out", out)
    assert res.exit_code == 0, res.output
    assert "not measured" in res.output
    chosen = _manifest(out)["calibration"]["chosen"]
    assert (chosen["threshold"], chosen["min_area_fraction"],
            chosen["min_peak_probability"]) == (0.5, 0.01, 0.999)


@pytest.mark.parametrize("case, code, words", [
    ("few", 2, "at least 73"),
    ("missing", 2, "not a folder"),
    ("masks", 2, "holds scans with masks"),
    ("unreachable", 5, "cannot be calibrated"),
    ("exists", 2, "already exists"),
])
def test_one_line_errors(tiny_bundle, tmp_path, case, code, words):
    neg = tmp_path / "neg"
    out = tmp_path / "site.zip"
    if case == "few":
        _negatives(neg, n=72, alarms=0)
    elif case == "masks":
        _labelled(neg)
    elif case == "unreachable":
        _negatives(neg, alarms=20, side=16)          # false alarms as big as tumours
    elif case == "exists":
        _negatives(neg)
        out.write_bytes(b"someone else's file")
    before = _sha(tiny_bundle)
    res = _run(tiny_bundle, "--negatives", neg, "--out", out)
    assert res.exit_code == code, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in res.output
    assert _sha(tiny_bundle) == before
    assert not out.exists() or out.read_bytes() == b"someone else's file"


def test_a_bad_scan_is_listed_and_the_rest_calibrate(tiny_bundle, tmp_path):
    neg = _negatives(tmp_path / "neg")
    (neg / "broken.png").write_bytes(b"not a png at all")
    out = tmp_path / "site.zip"
    res = _run(tiny_bundle, "--negatives", neg, "--out", out)
    assert res.exit_code == 1, res.output
    assert "broken.png" in res.output and out.is_file()
    cal = _manifest(out)["calibration"]
    assert cal["negatives"]["scans"] == 81 and cal["negatives"]["scored"] == 80
    assert cal["failed_scans"] == 1


def test_too_few_readable_scans_is_refused(tiny_bundle, tmp_path):
    neg = _negatives(tmp_path / "neg", n=73, alarms=0)
    (neg / "neg_000.png").write_bytes(b"broken")
    res = _run(tiny_bundle, "--negatives", neg, "--out", tmp_path / "site.zip")
    assert res.exit_code == 2 and "only 72 of 73 scans could be read" in res.output
    assert "neg_000.png" in res.output and not (tmp_path / "site.zip").exists()
