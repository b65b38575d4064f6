"""bench.augment_table: the registered reading of runs/AUGMENT.md (helps / hurts / not shown,
with a second seed as the yardstick), from compare_runs JSON files."""

import json

import pytest

from bench.augment_table import main, verdict


def _row(a, b, brisc, figshare):
    def source(diff):
        d, lo, hi = diff
        return {"tumour": {"dice_diff": d, "dice_diff_ci95": [lo, hi], "dice_a": 0.7,
                           "dice_b": 0.7 + d}, "missed_a": 6, "missed_b": 5}
    neg = {"tumour_free": {"n": 100, "flagged_a": 4, "flagged_b": 2}}
    return {"a": a, "b": b, "by_source": {"brisc": source(brisc), "figshare": source(figshare),
                                          "notumor": neg, "brisc_notumor": neg}}


SEED = _row("none", "seed1", (0.011, -0.014, 0.035), (0.02, -0.005, 0.04))


@pytest.mark.parametrize("brisc, figshare, want", [
    ((0.034, 0.007, 0.069), (0.003, -0.011, 0.017), "helps"),
    ((0.034, 0.007, 0.069), (-0.03, -0.05, -0.01), "not shown"),   # figshare below 0
    ((0.009, 0.001, 0.02), (0.0, -0.01, 0.01), "not shown"),       # within seed noise
    ((0.02, -0.003, 0.05), (0.0, -0.02, 0.02), "not shown"),       # BRISC interval has 0
    ((-0.04, -0.07, -0.01), (0.0, -0.02, 0.02), "hurts"),
])
def test_verdict_follows_the_registered_rule(brisc, figshare, want):
    assert verdict(_row("none", "x", brisc, figshare), SEED) == want


def test_table_from_compare_files(tmp_path):
    res, runs = tmp_path / "res", tmp_path / "runs"
    res.mkdir()
    for row in (SEED, _row("none", "bias", (0.034, 0.007, 0.069), (0.003, -0.011, 0.017)),
                _row("other", "ignored", (0.5, 0.4, 0.6), (0.5, 0.4, 0.6))):
        (res / f"compare_{row['b']}_vs_{row['a']}.json").write_text(json.dumps(row))
    (runs / "bias").mkdir(parents=True)
    (runs / "bias" / "config.json").write_text(json.dumps({"augment": ["bias"]}))
    assert main(["--results", str(res), "--base", "none", "--seed-arm", "seed1",
                 "--runs-dir", str(runs)]) == 0
    text = (res / "augment_table.md").read_text()
    lines = [ln for ln in text.splitlines() if ln.startswith("| ") and "arm" not in ln]
    assert lines[0].startswith("| seed1 | ? |") and "yardstick" in lines[0]
    assert lines[1].startswith("| bias | bias | +0.034 [+0.007, +0.069]; missed 6 → 5")
    assert lines[1].endswith("| helps |") and "ignored" not in text


def test_no_results_is_a_one_line_error(tmp_path):
    with pytest.raises(SystemExit, match="no compare_\\*_vs_none.json"):
        main(["--results", str(tmp_path), "--base", "none"])
