"""Shared fixtures. Keep this small: add fixtures, do not rewrite others'."""

from pathlib import Path

import pytest

TINY_SIZE = 64
FIXTURES = Path(__file__).with_name("fixtures")
TINY_TFLITE = FIXTURES / f"tiny_{TINY_SIZE}.tflite"


@pytest.fixture(scope="session", autouse=True)
def trust_file(tmp_path_factory):
    """Every test uses its own trust list (EDGE_SEG_TRUST), never the user's: the bundles
    the fixtures build are trusted there; any other bundle is untrusted unless a test trusts
    it (``edge_runtime.trust.trust_bundle``) or passes --allow-untrusted."""
    path = tmp_path_factory.mktemp("trust") / "trusted.json"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGE_SEG_TRUST", str(path))
        yield path


@pytest.fixture(scope="session")
def tiny_tflite_bytes():
    """fp32 TFLite bytes of the tiny model (input (1, 64, 64, 1)), from the committed
    fixture (made by ``tests/fixtures/make_tiny_tflite.py``), so no TensorFlow is needed."""
    return TINY_TFLITE.read_bytes()


@pytest.fixture(scope="session")
def tiny_bundle(tiny_tflite_bytes, tmp_path_factory):
    """Path to a valid bundle zip around the tiny model (input 64, threshold 0.5)."""
    from edge_runtime.bundle import make_manifest, write_bundle
    from edge_runtime.preprocess import Preprocessing

    manifest = make_manifest("tiny-test", "fp32", Preprocessing(input_size=TINY_SIZE),
                             threshold=0.5, min_area_fraction=0.002, variant="tiny",
                             preset="test", interpreters_verified=["ai-edge-litert"])
    from edge_runtime.trust import trust_bundle
    path = tmp_path_factory.mktemp("bundle") / "tiny.zip"
    write_bundle(path, tiny_tflite_bytes, manifest, "# tiny-test\n\nA test model.\n")
    trust_bundle(path)
    return path


def _write_figshare(root, scans):
    """Write a figshare-layout folder (``images/``, ``masks/``, ``metadata.csv``) at ``root``
    from dicts with ``index``, ``pid``, ``label``, ``label_name``, ``image`` (uint8 array)
    and ``mask`` (bool array). -> root."""
    import csv

    import numpy as np
    from PIL import Image

    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows = []
    for s in scans:
        i = s["index"]
        Image.fromarray(np.asarray(s["image"], np.uint8)).save(root / "images" / f"{i}.png")
        Image.fromarray(np.asarray(s["mask"], bool).astype(np.uint8) * 255).save(
            root / "masks" / f"{i}.png")
        rows.append({"index": i, "image": f"images/{i}.png", "mask": f"masks/{i}.png",
                     "label": s["label"], "label_name": s["label_name"], "pid": s["pid"],
                     "pid_family": s["pid"]})
    with open(root / "metadata.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


@pytest.fixture
def write_figshare():
    """``write_figshare(root, scans)``: a labelled folder in the figshare layout."""
    return _write_figshare


def pytest_addoption(parser):
    parser.addoption("--lab", action="store_true",
                     help="also run the tests of the lab's archive (bench/lab; marker 'lab')")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--lab"):
        return
    skip = pytest.mark.skip(reason="the lab archive (bench/lab): run with --lab -m lab")
    for item in items:
        if "lab" in item.keywords:
            item.add_marker(skip)
