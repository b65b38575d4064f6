"""Per-source evaluation: each data folder is a source, split on its own, scored on its own,
and a model is judged on its worst source."""

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edge_runtime.cli import main
from edge_runtime.datasets import Sample, discover, split_by_family, split_by_source
from edge_runtime.evaluate import evaluate, sweep
from edge_runtime.preprocess import Preprocessing

pytestmark = pytest.mark.device

S = 64
SPEC = Preprocessing(input_size=S)


def _samples(source, n_fam, per_fam=2):
    return [Sample(key=f"{source}{f}_{i}", image=f"{source}/{f}_{i}.png",
                   mask=f"{source}/m{f}_{i}.png", label=1 + f % 3, label_name="x",
                   family=f"{source}{f}", source=source)
            for f in range(n_fam) for i in range(per_fam)]


def test_split_by_source_keeps_each_source_as_it_is_alone():
    a, b = _samples("a", 30), _samples("b", 20)
    _tr, va_alone = split_by_family(a, 0.2, 0)
    tr, va = split_by_source(a + b, 0.2, 0, {"b": 0.5})
    assert [s for s in va if s.source == "a"] == va_alone
    vb = [s for s in va if s.source == "b"]
    assert 0.4 <= len(vb) / len(b) <= 0.6                          # its own fraction
    assert not {s.family for s in tr} & {s.family for s in va}     # never a family on both sides
    with pytest.raises(ValueError, match="not among the sources"):
        split_by_source(a, 0.2, 0, {"c": 0.5})


def _square(r, c, side):
    m = np.zeros((S, S), np.uint8)
    m[r:r + side, c:c + side] = 255
    return m


@pytest.fixture()
def two_sources(tmp_path, write_figshare):
    """Source 'good' (predictions exact), source 'poor' (predictions half off), one tumour-free
    folder with one false alarm in four."""
    def scans(shift):
        return [{"index": i, "pid": f"p{i}", "label": 2, "label_name": "glioma",
                 "image": _square(10 + 3 * i, 10, 16),
                 "mask": _square(10 + 3 * i + shift, 10, 16) > 0} for i in range(4)]
    good = write_figshare(tmp_path / "good", scans(0))
    poor = write_figshare(tmp_path / "poor", scans(8))
    neg = tmp_path / "quiet"
    neg.mkdir()
    for i in range(4):
        Image.fromarray(_square(20, 20, 10) if i == 0 else np.zeros((S, S), np.uint8)).save(
            neg / f"n{i}.png")
    return good, poor, neg


def identity(batch):
    return batch.copy()


def _all(*dirs):
    return [s for d in dirs for s in discover(d)[1]]


def test_discover_names_the_source(two_sources):
    good, _poor, neg = two_sources
    assert {s.source for s in discover(good)[1]} == {"good"}
    assert {s.source for s in discover(neg)[1]} == {"quiet"}


def test_summary_per_source_and_worst(two_sources):
    good, poor, neg = two_sources
    res = evaluate(_all(good, poor, neg), identity, SPEC, batch_size=3)
    by = res.summary["by_source"]
    assert set(by) == {"good", "poor", "quiet"}
    assert by["good"]["tumour"]["dice_mean"] == pytest.approx(1.0)
    assert by["poor"]["tumour"]["dice_mean"] == pytest.approx(0.5)
    alone = evaluate(_all(poor), identity, SPEC)
    assert by["poor"]["tumour"]["dice_mean"] == alone.summary["dice_mean"]
    assert by["poor"]["by_patient"]["n_patients"] == 4
    assert by["quiet"]["tumour_free"]["fp_scans"] == 1 and "tumour" not in by["quiet"]
    worst = res.summary["worst_source"]
    assert worst["dice_mean"] == {"source": "poor", "value": pytest.approx(0.5)}
    assert worst["fp_scan_rate"] == {"source": "quiet", "value": 0.25}
    assert {r["source"] for r in res.rows} == {"good", "poor", "quiet"}


def test_sweep_per_source_matches_evaluate(two_sources):
    good, poor, neg = two_sources
    samples = _all(good, poor, neg)
    points, _ = sweep(samples, identity, SPEC, [0.5], [0.0, 0.05])
    for p in points:
        res = evaluate(samples, identity, SPEC, 0.5, p["min_area_fraction"])
        for name, src in res.summary["by_source"].items():
            if "tumour" in src:
                assert p["by_source"][name]["dice_mean"] == pytest.approx(
                    src["tumour"]["dice_mean"])
            else:
                assert p["by_source"][name]["fp_scan_rate"] == src["tumour_free"]["fp_scan_rate"]


def test_eval_prints_every_source_and_the_worst(two_sources, tiny_bundle):
    good, poor, neg = two_sources
    res = CliRunner().invoke(main, ["eval", str(tiny_bundle), "--data", str(good),
                                    "--data", str(poor), "--data", str(neg)])
    assert res.exit_code == 0, res.output
    assert "per source" in res.output
    for name in ("good", "poor", "quiet"):
        assert f"  {name} " in res.output
    assert "worst Dice: poor" in res.output


def test_compare_runs_gives_each_source_its_own_paired_interval(two_sources):
    pytest.importorskip("bench.compare_runs", reason="needs the lab (bench/), a source checkout")
    from bench.compare_runs import compare
    good, poor, neg = two_sources
    samples = _all(good, poor, neg)
    a = evaluate(samples, identity, SPEC).rows
    b = evaluate(samples, identity, SPEC, min_area_fraction=0.05).rows   # drops the alarm
    by = compare(a, b, resamples=200)["by_source"]
    assert set(by) == {"good", "poor", "quiet"}
    assert by["poor"]["tumour"]["dice_a"] == pytest.approx(0.5)
    assert by["quiet"]["tumour_free"] == {"n": 4, "flagged_a": 1, "flagged_b": 0}


def test_gate_auc_counts_ties_half():
    pytest.importorskip("bench.gate_roc", reason="needs the lab (bench/), a source checkout")
    from bench.gate_roc import auc
    assert auc([0.9, 0.8], [0.1, 0.1]) == 1.0
    assert auc([0.5], [0.5]) == 0.5
    assert auc([0.0, 1.0], [0.5, 0.5]) == 0.5
