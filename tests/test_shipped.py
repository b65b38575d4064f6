"""The model shipped inside the package: what `pip install` gives a clinic."""

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edge_runtime.bundle import default_bundle_path, load_bundle
from edge_runtime.cli import main

pytestmark = pytest.mark.device  # runs in a device-only install (no TensorFlow)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.png"))


def test_shipped_bundle_is_a_gated_small_drq_model():
    b = load_bundle(default_bundle_path())
    m = b.manifest
    assert m["format"] == "drq" and m["variant"] == "resunet_se"
    assert default_bundle_path().stat().st_size <= 2.5e6
    metrics = m["metrics"]
    assert metrics["gated"] and metrics["split"] == "validation"
    assert metrics["drop"]["dice"] <= 0.005
    assert metrics["converted"]["fp_scan_rate"] <= 0.05


def test_shipped_bundle_finds_the_tumour_in_each_example(tmp_path):
    """One batch over the three examples. Each tumour is found and overlaps the expert mask;
    together they score near the validation mean (0.645 here, 0.756 there). Single scans
    vary: on pituitary_1078 the model outlines the sellar part and misses the suprasellar
    extension (Dice 0.45), so the per-scan bar is lower than the mean's."""
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["run", *map(str, EXAMPLES), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    scores = {}
    for scan in EXAMPLES:
        findings = json.loads((out / f"{scan.stem}_findings.json").read_text())
        assert findings["tumour_found"], scan.name
        pred = np.asarray(Image.open(out / f"{scan.stem}_mask.png").convert("L")) > 0
        truth = np.asarray(Image.open(ROOT / "examples" / "truth" / scan.name).convert("L")) > 0
        scores[scan.stem] = 2 * (pred & truth).sum() / (pred.sum() + truth.sum())
    assert len(scores) == 3 and min(scores.values()) >= 0.4, scores
    assert np.mean(list(scores.values())) >= 0.6, scores
