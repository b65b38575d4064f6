"""The evaluation loop and ``edge-seg eval`` on tiny synthetic datasets."""

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edge_runtime import metrics
from edge_runtime.datasets import discover
from edge_runtime.evaluate import ROW_FIELDS, evaluate, sweep, write_results
from edge_runtime.preprocess import Preprocessing

pytestmark = pytest.mark.device  # runs in a device-only install (no TensorFlow)

S = 64
SPEC = Preprocessing(input_size=S)


def _square(r0, r1, c0, c1, size=S):
    m = np.zeros((size, size), np.uint8)
    m[r0:r1, c0:c1] = 255
    return m


def _save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture()
def dataset(tmp_path):
    """figshare layout, two classes, plus a tumour-free folder.

    The scans are binary squares at the model's input size, so with the identity predictor
    below the predicted mask is exactly the bright square (no resampling, x in {0, 1}).
    """
    root = tmp_path / "fig"
    rows = [
        # key, image square, mask square, label, name, family
        ("a", (10, 18, 10, 18), (14, 22, 10, 18), 1, "meningioma", "p1"),  # overlap 32 of 64/64
        ("b", (20, 30, 20, 30), (20, 30, 20, 30), 2, "glioma", "p2"),      # perfect, 100 px
        ("c", (40, 48, 40, 48), (5, 10, 5, 10), 2, "glioma", "p3"),        # miss, 64 vs 25 px
    ]
    lines = ["index,image,mask,label,label_name,pid,pid_family"]
    for key, img, msk, label, name, fam in rows:
        _save(root / "images" / f"{key}.png", _square(*img))
        _save(root / "masks" / f"{key}.png", _square(*msk))
        lines.append(f"{key},images/{key}.png,masks/{key}.png,{label},{name},{fam},{fam}")
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    neg = tmp_path / "neg"
    _save(neg / "clean.png", np.zeros((S, S), np.uint8))                 # nothing predicted
    _save(neg / "alarm.png", _square(30, 40, 30, 40))                   # a false alarm
    return root, neg


def identity_predict(batch):
    """prob = the normalised scan: bright squares are 'tumour'."""
    return batch.copy()


def _samples(*dirs):
    out = []
    for d in dirs:
        out.extend(discover(d)[1])
    return out


def test_evaluate_matches_hand_computed(dataset):
    fig, neg = dataset
    res = evaluate(_samples(fig, neg), identity_predict, SPEC, threshold=0.5,
                   min_area_fraction=0.0, batch_size=2)
    assert res.ok and len(res.rows) == 5
    by_key = {r["key"]: r for r in res.rows}
    a, b, c = by_key["a"], by_key["b"], by_key["c"]
    assert (a["tp"], a["fp"], a["fn"]) == (32, 32, 32)
    assert a["dice"] == pytest.approx(0.5) and a["iou"] == pytest.approx(1 / 3)
    assert b["dice"] == 1.0 and b["hd95_px"] == 0.0
    assert c["dice"] == 0.0 and c["recall"] == 0.0
    ref = metrics.hd95(_square(10, 18, 10, 18), _square(14, 22, 10, 18))
    assert a["hd95_px"] == pytest.approx(ref)

    s = res.summary
    assert (s["n_scans"], s["n_tumour"], s["n_tumour_free"], s["n_failed"]) == (5, 3, 2, 0)
    assert s["dice_mean"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    assert s["iou_mean"] == pytest.approx((1 / 3 + 1.0 + 0.0) / 3)
    # pooled over the three tumour scans: tp=132, fp=32+64, fn=32+25
    tp, fp, fn = 132, 96, 57
    tn = 3 * S * S - tp - fp - fn
    assert s["dice_pooled"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert s["iou_pooled"] == pytest.approx(tp / (tp + fp + fn))
    assert s["precision_pooled"] == pytest.approx(tp / (tp + fp))
    assert s["recall_pooled"] == pytest.approx(tp / (tp + fn))
    assert s["miou_2class_pooled"] == pytest.approx(
        (tp / (tp + fp + fn) + tn / (tn + fp + fn)) / 2, abs=1e-6)
    assert s["tumour"]["missed_scans"] == 0            # scan c has a (wrong) prediction
    assert s["by_class"]["glioma"]["n"] == 2
    assert s["by_class"]["glioma"]["dice_mean"] == pytest.approx(0.5)
    assert s["by_class"]["meningioma"]["dice_mean"] == pytest.approx(0.5)
    tf = s["tumour_free"]
    assert (tf["n"], tf["fp_scans"], tf["fp_scan_rate"]) == (2, 1, 0.5)
    assert s["fp_scan_rate"] == 0.5
    assert s["hd95_px_median"] == pytest.approx(np.median([a["hd95_px"], 0.0, c["hd95_px"]]))
    assert s["all"]["n"] == 5


def test_min_area_fraction_removes_small_predictions(dataset):
    fig, neg = dataset
    # 10x10 = 100 px = 2.4% of 64x64: a 3% floor drops every square here
    res = evaluate(_samples(neg), identity_predict, SPEC, 0.5, 0.03)
    assert res.summary["tumour_free"]["fp_scan_rate"] == 0.0


def noisy_predict(batch):
    """The bright squares, dimmed a little, plus seeded specks of every size and confidence:
    something for the area and peak filters to remove."""
    out = batch * 0.85
    for i in range(batch.shape[0]):
        rng = np.random.default_rng(int(batch[i].sum()))
        for _ in range(6):
            r, c, k = rng.integers(0, S - 6), rng.integers(0, S - 6), rng.integers(1, 6)
            out[i, r:r + k, c:c + k] = np.maximum(out[i, r:r + k, c:c + k],
                                                  rng.uniform(0.4, 1.0))
    return out


def test_sweep_gives_what_evaluate_gives_at_every_setting(dataset):
    fig, neg = dataset
    samples = _samples(fig, neg)
    grid = ((0.5, 0.7), (0.0, 0.002, 0.01), (0.0, 0.8, 0.9, 0.95))
    points, failures = sweep(samples, noisy_predict, SPEC, *grid, batch_size=2)
    assert failures == [] and len(points) == 2 * 3 * 4
    distinct = set()
    for p in points:
        s = evaluate(samples, noisy_predict, SPEC, p["threshold"], p["min_area_fraction"],
                     min_peak_probability=p["min_peak_probability"]).summary
        for key in ("dice_mean", "iou_mean", "miou_2class_pooled", "fp_scan_rate"):
            assert p[key] == pytest.approx(s[key], abs=1e-12), (p, key)
        assert p["missed_scans"] == s["tumour"]["missed_scans"]
        distinct.add((round(p["dice_mean"], 9), p["fp_scan_rate"]))
    assert len(distinct) > 4        # the grid really changes the answer


def test_sweep_reports_unreadable_scans_and_scores_the_rest(dataset):
    fig, neg = dataset
    (neg / "broken.png").write_bytes(b"not an image")
    points, failures = sweep(_samples(fig, neg), identity_predict, SPEC, (0.5,), (0.0,))
    assert [Path(f).name for f, _ in failures] == ["broken.png"]
    assert points[0]["fp_scan_rate"] == 0.5 and points[0]["missed_scans"] == 0


def test_bad_scans_fail_alone(dataset, tmp_path):
    fig, neg = dataset
    (neg / "broken.png").write_bytes(b"not an image")
    _save(fig / "masks" / "a.png", np.zeros((32, 32), np.uint8))        # wrong-size mask
    res = evaluate(_samples(fig, neg), identity_predict, SPEC, 0.5, 0.0)
    failed = [r for r in res.rows if r["status"] == "failed"]
    assert {r["key"] for r in failed} == {"a", "broken.png"}
    assert any("mask is 32x32" in r["error"] for r in failed)
    assert res.summary["n_failed"] == 2 and res.summary["n_scored"] == 4
    assert len(res.failures) == 2
    # rows keep the samples' order
    assert [r["key"] for r in res.rows][:3] == ["a", "b", "c"]


def test_predict_fn_errors_become_failed_rows(dataset):
    fig, _neg = dataset

    def broken(batch):
        raise RuntimeError("boom")
    res = evaluate(_samples(fig), broken, SPEC)
    assert all(r["status"] == "failed" and "boom" in r["error"] for r in res.rows)


def test_write_results_has_every_field(dataset, tmp_path):
    fig, neg = dataset
    res = evaluate(_samples(fig, neg), identity_predict, SPEC, 0.5, 0.0)
    csv_path, json_path = write_results(res, tmp_path / "out")
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == ROW_FIELDS and len(rows) == 5
    summary = json.loads(json_path.read_text())
    for key in ("dice_mean", "iou_mean", "dice_pooled", "iou_pooled", "miou_2class_pooled",
                "precision_pooled", "recall_pooled", "hd95_px_median", "hd95_px_mean",
                "fp_scan_rate", "by_class", "tumour_free", "all", "definitions"):
        assert key in summary, key
    assert summary["tumour"]["hd95_mm_median"] is None          # NaN is written as null
    assert not list((tmp_path / "out").glob(".*tmp"))


def test_cli_eval_on_tiny_bundle(dataset, tiny_bundle, tmp_path):
    from edge_runtime.cli import main
    fig, neg = dataset
    out = tmp_path / "ev"
    r = CliRunner().invoke(main, ["eval", str(tiny_bundle), "--data", str(fig), "--data",
                                  str(neg), "--out", str(out), "--threads", "1"])
    assert r.exit_code == 0, r.output
    assert "2-class mIoU" in r.output and "tumour-free scans" in r.output
    summary = json.loads((out / "eval_summary.json").read_text())
    assert summary["n_scored"] == 5
    assert summary["model"]["name"] == "tiny-test"
    assert summary["model"]["interpreter"]["package"]
    assert summary["threshold"] == 0.5 and summary["min_area_fraction"] == 0.002
    assert (out / "eval_scans.csv").read_text().startswith("key,image,mask")


def test_cli_eval_overrides_the_post_processing_as_run_does_and_says_so(dataset, tiny_bundle,
                                                                         tmp_path):
    from edge_runtime.cli import main
    fig, neg = dataset
    out = tmp_path / "ev"
    r = CliRunner().invoke(
        main, ["eval", str(tiny_bundle), "--data", str(fig), "--data", str(neg), "--out",
               str(out), "--threads", "1", "--threshold", "0.7", "--min-area-fraction", "0",
               "--min-peak-probability", "0.9"])
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "eval_summary.json").read_text())
    assert (summary["threshold"], summary["min_area_fraction"],
            summary["min_peak_probability"]) == (0.7, 0.0, 0.9)
    assert "warning:" in r.output and "verified threshold 0.5 -> 0.7" in r.output
    bad = CliRunner().invoke(main, ["eval", str(tiny_bundle), "--data", str(fig),
                                    "--threshold", "1.5"])
    assert bad.exit_code == 2 and "--threshold" in bad.output


def test_cli_eval_split_val_from_run(dataset, tiny_bundle, tmp_path):
    from edge_runtime.cli import main
    fig, neg = dataset
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(
        {"data": [str(fig)], "negatives": [str(neg)], "val_fraction": 0.2, "seed": 0}))
    (run / "split.json").write_text(json.dumps(
        {"val_keys": ["b"], "val_negative_keys": ["clean.png"]}))
    r = CliRunner().invoke(main, ["eval", str(tiny_bundle), "--split", "val", "--run",
                                  str(run), "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output[r.output.index("{"):])
    assert (summary["n_tumour"], summary["n_tumour_free"]) == (1, 1)
    assert summary["data"]["split_from"] == "split.json"


def test_cli_eval_errors_are_one_line(tiny_bundle, tmp_path):
    from edge_runtime.cli import main
    runner = CliRunner()
    r = runner.invoke(main, ["eval", str(tiny_bundle)])
    assert r.exit_code == 2 and "nothing to score" in r.output
    r = runner.invoke(main, ["eval", str(tmp_path / "nope.zip"), "--data", str(tmp_path)])
    assert r.exit_code in (2, 3)
    assert len(r.output.strip().splitlines()) == 1
    r = runner.invoke(main, ["eval", str(tiny_bundle), "--split", "val"])
    assert r.exit_code == 2 and "--run" in r.output
    assert runner.invoke(main, ["eval", "--help"]).exit_code == 0


def test_nan_free_json(dataset):
    fig, _ = dataset
    res = evaluate(_samples(fig), identity_predict, SPEC)
    from edge_runtime.evaluate import to_json
    text = to_json(res.summary)
    assert "NaN" not in text and "Infinity" not in text
    assert math.isnan(res.summary["tumour_free"]["fp_scan_rate"])


def _row(family, dice, key, tp=10, fp=0, fn=0, tn=90, label="glioma"):
    return {"key": key, "family": family, "label_name": label, "status": "ok",
            "has_tumour": True, "dice": dice, "tp": tp, "fp": fp, "fn": fn, "tn": tn}


def test_wilson_interval_known_values():
    from edge_runtime.evaluate import wilson_interval
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)   # the textbook value
    low, high = wilson_interval(6, 282)
    assert low < 6 / 282 < high and high < 0.05
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_patient_summary_groups_by_family_and_resamples_whole_patients():
    from edge_runtime.evaluate import patient_summary
    # One patient with ten perfect slices, one with a single missed slice: the scan mean is
    # 10/11, but with only two patients nothing is known within [0, 1] -- a scan-level
    # bootstrap would call 10/11 precise.
    rows = [_row("A", 1.0, f"a{i}") for i in range(10)] + [_row("B", 0.0, "b0", tp=0, fn=10)]
    out = patient_summary(rows, resamples=500, seed=1)
    assert out["n_patients"] == 2 and out["patients_dice_below_0_5"] == 1
    assert [p["family"] for p in out["patients"]] == ["B", "A"]   # worst first
    assert out["dice_mean_of_patients"] == pytest.approx(0.5)
    low, high = out["bootstrap"]["dice_mean_ci95"]
    assert low == pytest.approx(0.0) and high == pytest.approx(1.0)
    # Identical patients: the interval collapses onto the value.
    same = [_row(f, 0.8, f + str(i), fp=5, tn=85) for f in "ABCD" for i in range(3)]
    low, high = patient_summary(same)["bootstrap"]["dice_mean_ci95"]
    assert low == pytest.approx(0.8) and high == pytest.approx(0.8)
    miou = patient_summary(same)["bootstrap"]["miou_2class_pooled_ci95"]
    assert miou == pytest.approx([(10 / 15 + 85 / 90) / 2] * 2)   # tumour IoU, background IoU
    # Reproducible: a fixed seed gives the same interval.
    assert patient_summary(rows) == patient_summary(rows)
    # Failed and tumour-free rows are not patients here.
    extra = rows + [dict(_row("C", 0.0, "c"), status="failed"),
                    dict(_row("D", 0.0, "d"), has_tumour=False)]
    assert patient_summary(extra)["n_patients"] == 2


def test_summary_from_saved_csv_equals_the_original(dataset, tmp_path):
    from edge_runtime.evaluate import rows_from_csv, summarise
    result = evaluate(_samples(*dataset), identity_predict, Preprocessing(input_size=S))
    csv_path, _ = write_results(result, tmp_path)
    again = summarise(rows_from_csv(csv_path.read_text()))
    for k in ("dice_mean", "miou_2class_pooled", "fp_scan_rate", "n_tumour", "n_failed"):
        assert again[k] == pytest.approx(result.summary[k], abs=1e-5)
    assert again["by_patient"]["n_patients"] == result.summary["by_patient"]["n_patients"] > 0
    assert result.summary["tumour_free"]["fp_scan_rate_ci95"][0] <= \
        result.summary["tumour_free"]["fp_scan_rate"] <= \
        result.summary["tumour_free"]["fp_scan_rate_ci95"][1]


def test_discover_reads_scans_with_a_truth_subfolder_as_labelled(tmp_path):
    # The layout of examples/: scans side by side, their expert masks in truth/. Read as a
    # folder of tumour-free scans, the masks themselves would count as scans.
    root = tmp_path / "ex"
    (root / "truth").mkdir(parents=True)
    for name in ("a", "b"):
        _save(root / f"{name}.png", _square(10, 30, 10, 30) // 255 * 200)
        _save(root / "truth" / f"{name}.png", _square(10, 30, 10, 30))
    layout, samples = discover(root)
    assert layout == "scans+truth"
    assert [(s.key, s.has_tumour) for s in samples] == [("a", True), ("b", True)]
    assert samples[0].mask == root / "truth" / "a.png"
    _save(root / "c.png", _square(0, 5, 0, 5) // 255 * 200)                   # a scan without truth
    with pytest.raises(ValueError, match=r"c\.png: no mask with the same stem in .*truth"):
        discover(root)
    only = tmp_path / "only"
    (only / "truth").mkdir(parents=True)
    _save(only / "truth" / "a.png", _square(10, 30, 10, 30))
    with pytest.raises(ValueError, match="masks in truth/ but no scans next to it"):
        discover(only)


def test_cli_eval_on_the_shipped_examples_scores_them_against_their_truth():
    from edge_runtime.bundle import default_bundle_path
    from edge_runtime.cli import main
    root = Path(__file__).resolve().parents[1]
    bundle = default_bundle_path()   # the installed one, also outside a source checkout
    out = CliRunner().invoke(main, ["eval", str(bundle), "--data", str(root / "examples"),
                                    "--json"])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.stdout)
    assert summary["n_tumour"] == 3 and summary["n_tumour_free"] == 0
    assert summary["dice_mean"] > 0.6                     # as tests/test_shipped.py demands


def test_eval_summary_lines_say_how_many_tumours_were_missed():
    from edge_runtime.commands.evaluate import summary_lines
    from edge_runtime.evaluate import summarise
    rows = [dict(_row("A", 0.8, "a0", tp=8, fp=2, fn=2, tn=88), truth_px=10, pred_px=10,
                 iou=0.67, precision=0.8, recall=0.8, hd95_px=1.0, hd95_mm=math.nan),
            dict(_row("B", 0.0, "b0", tp=0, fp=0, fn=10, tn=90), truth_px=10, pred_px=0,
                 iou=0.0, precision=math.nan, recall=0.0, hd95_px=math.nan, hd95_mm=math.nan)]
    text = "\n".join(summary_lines(summarise(rows)))
    assert "tumour missed (nothing predicted): 1 of 2 scans" in text
    assert "glioma       n=2     Dice 0.4000" in text and "missed 1" in text
