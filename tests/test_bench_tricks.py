"""``python -m bench.lab.inference_tricks``: flip TTA, thresholds and region rules, measured on a
bundle."""

import json
from pathlib import Path

import numpy as np
import pytest

from bench.lab import inference_tricks

pytestmark = pytest.mark.lab  # the lab archive (bench/lab): pytest --lab -m lab

ROOT = Path(__file__).resolve().parents[1]


def test_flip_tta_averages_the_prediction_with_its_mirror_flipped_back():
    def lopsided(batch):           # not mirror-symmetric: the left half counts double
        out = batch.copy()
        out[:, :, : batch.shape[2] // 2] *= 2
        return out
    x = np.random.default_rng(0).random((2, 8, 8, 1)).astype(np.float32)
    got = inference_tricks.flip_tta(lopsided)(x)
    want = (lopsided(x) + lopsided(x[:, :, ::-1])[:, :, ::-1]) / 2
    np.testing.assert_allclose(got, want)
    assert not np.allclose(got, lopsided(x))


def test_region_rules_pick_among_the_regions_the_bundle_kept():
    area = np.array([500, 90, 200, 30])
    peak = np.array([0.7, 0.99, 0.9, 1.0])
    kept = np.array([True, True, True, False])     # the last one fell under the area filter
    pick = inference_tricks.select_components
    assert pick("all (as shipped)", area, peak, kept).tolist() == kept.tolist()
    assert pick("largest only", area, peak, kept).tolist() == [True, False, False, False]
    assert pick("quarter of the largest", area, peak, kept).tolist() == [True, False, True,
                                                                         False]
    # the most confident region the bundle kept: not the filtered-out one at 1.0
    assert pick("most confident only", area, peak, kept).tolist() == [False, True, False,
                                                                      False]
    none = np.zeros(4, bool)
    assert not any(pick(r, area, peak, none).any() for r in inference_tricks.COMPONENT_RULES)
    with pytest.raises(ValueError, match="unknown rule 'biggest'; allowed: all"):
        pick("biggest", area, peak, kept)


def test_shape_rules_fill_enclosed_holes_and_grow_or_shrink_by_one_pixel():
    mask = np.zeros((9, 9), bool)
    mask[1:6, 1:6] = True
    mask[3, 3] = False                       # a hole inside the square
    mask[:, 7] = True                        # a bar from edge to edge...
    mask[4, 8] = False                       # ...beside an edge pixel: not a hole
    reshape = inference_tricks.reshape_mask
    filled = reshape("fill holes", mask)
    assert filled[3, 3] and not filled[4, 8]
    assert (filled ^ mask).sum() == 1
    assert not reshape("fill holes", np.zeros((4, 4), bool)).any()

    dot = np.zeros((5, 5), bool)
    dot[2, 2] = True
    grown = reshape("grow 1 px", dot)
    assert grown.sum() == 5 and grown[1, 2] and grown[2, 1] and not grown[1, 1]
    assert reshape("shrink 1 px", grown).tolist() == dot.tolist()
    # the scan's edge is not tumour-free: a region along it keeps its edge row
    edge = np.zeros((4, 4), bool)
    edge[:2] = True
    assert reshape("shrink 1 px", edge).tolist() == [[True] * 4, [False] * 4,
                                                     [False] * 4, [False] * 4]
    with pytest.raises(ValueError, match="unknown rule 'close'; allowed: fill holes"):
        reshape("close", mask)


def test_inference_tricks_on_the_shipped_examples(tmp_path, capsys):
    out = tmp_path / "res"
    rc = inference_tricks.main([str(ROOT / "edge_runtime" / "models" / "default.zip"),
                                "--data", str(ROOT / "examples"), "--out", str(out),
                                "--thresholds", "0.4,0.6"])
    assert rc == 0
    result = json.loads((out / "inference_tricks.json").read_text())
    modes = [(p["mode"], p["threshold"]) for p in result["points"]]
    # the bundle's own threshold (0.5) is always measured: it is the baseline
    assert modes == [(m, t) for m in ("as shipped", "flip TTA") for t in (0.4, 0.5, 0.6)]
    base = result["points"][1]
    assert base["dice_mean_change"] == 0.0 and base["dice_mean"] > 0.6
    tta = result["points"][4]
    assert tta["dice_mean"] != base["dice_mean"]          # the mirror pass really ran
    # the region rules' own pass reproduces the bundle as shipped, then varies it
    rules = {r["rule"]: r for r in result["components"]}
    assert list(rules) == [*inference_tricks.COMPONENT_RULES, *inference_tricks.SHAPE_RULES]
    assert rules["all (as shipped)"]["dice_mean"] == pytest.approx(base["dice_mean"], abs=1e-9)
    assert rules["all (as shipped)"]["dice_mean_change"] == 0.0
    assert rules["all (as shipped)"]["missed_scans"] == base["missed_scans"]
    # a folder of scans carries no tumour class: one group
    assert set(rules["largest only"]["dice_by_class"]) == {"tumour"}
    md = (out / "inference_tricks.md").read_text()
    assert "| flip TTA | 0.50 |" in md and "examples" in md
    assert "| largest only |" in md and "| fill holes |" in md
    # growing the outline adds pixels: the Dice moves either way, never stays identical
    assert rules["grow 1 px"]["dice_mean"] != rules["shrink 1 px"]["dice_mean"]


def test_inference_tricks_bad_arguments_are_one_line(tmp_path, capsys):
    bundle = str(ROOT / "edge_runtime" / "models" / "default.zip")
    with pytest.raises(SystemExit) as e:
        inference_tricks.main([bundle, "--data", "examples", "--thresholds", "0.5,2"])
    assert e.value.code == 2 and "--thresholds must be numbers in (0, 1)" in \
        capsys.readouterr().err
    with pytest.raises(SystemExit):
        inference_tricks.main([bundle])
    assert "give --run RUN" in capsys.readouterr().err
    assert inference_tricks.main([str(tmp_path / "nope.zip"), "--data", "examples"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("inference_tricks: ") and "nope.zip" in err and "\n" not in err
