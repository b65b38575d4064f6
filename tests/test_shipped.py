"""The model shipped inside the package: what `pip install` gives a clinic."""

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edge_runtime.bundle import default_bundle_path, load_bundle
from edge_runtime.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.png"))


def test_shipped_bundle_is_a_gated_small_drq_model():
    b = load_bundle(default_bundle_path())
    m = b.manifest
    assert m["format"] == "drq" and m["variant"] == "resunet_ag"
    assert default_bundle_path().stat().st_size <= 2.5e6
    metrics = m["metrics"]
    assert metrics["gated"] and metrics["split"] == "validation"
    assert metrics["drop"]["dice"] <= 0.005
    assert metrics["converted"]["fp_scan_rate"] <= 0.05


@pytest.mark.parametrize("scan", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_shipped_bundle_finds_the_tumour_in_each_example(scan, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["run", str(scan), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    findings = json.loads((out / f"{scan.stem}_findings.json").read_text())
    assert findings["tumour_found"]
    pred = np.asarray(Image.open(out / f"{scan.stem}_mask.png").convert("L")) > 0
    truth = np.asarray(Image.open(ROOT / "examples" / "truth" / scan.name).convert("L")) > 0
    dice = 2 * (pred & truth).sum() / (pred.sum() + truth.sum())
    assert dice >= 0.6, f"{scan.name}: Dice {dice:.3f} against the expert mask"
