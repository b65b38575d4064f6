"""``python -m bench.compare_runs``: a paired patient-level comparison of two runs."""

import json

import pytest

from bench import compare_runs
from edge_runtime.evaluate import rows_to_csv


def _rows(dice_by_family, label="glioma", free_flags=()):
    rows = []
    for fam, dices in dice_by_family.items():
        for i, d in enumerate(dices):
            tp = int(round(d * 10))
            rows.append({"key": f"{fam}-{i}", "family": fam, "label_name": label,
                         "has_tumour": True, "status": "ok", "dice": d, "tp": tp,
                         "fp": 10 - tp, "fn": 10 - tp, "tn": 80 + tp,
                         "any_tumour_predicted": tp > 0})
    for i, flagged in enumerate(free_flags):
        rows.append({"key": f"free-{i}", "family": f"N{i}", "label_name": "", "has_tumour": False,
                     "status": "ok", "dice": float("nan"), "tp": 0, "fp": 5 if flagged else 0,
                     "fn": 0, "tn": 95, "any_tumour_predicted": flagged})
    return rows


def test_a_uniform_gain_is_detected_and_its_interval_excludes_zero():
    a = _rows({f"P{i}": [0.5 + 0.04 * i, 0.45 + 0.04 * i] for i in range(8)})
    b = _rows({f"P{i}": [0.6 + 0.04 * i, 0.55 + 0.04 * i] for i in range(8)})
    out = compare_runs.compare(a, b, resamples=400)
    t = out["tumour"]
    assert t["dice_diff"] == pytest.approx(0.1)
    # Every patient gains exactly 0.1, so every paired draw gains 0.1: the pairing is what
    # makes the interval collapse (two unpaired intervals of these runs would overlap).
    assert t["dice_diff_ci95"] == pytest.approx([0.1, 0.1])
    assert t["dice_b_ahead"] == 1.0 and t["miou_diff"] > 0
    assert out["patients"] == {"n": 8, "better": 8, "worse": 0, "within": 0, "threshold": 0.01}
    assert "B is ahead beyond the patient-level noise" in compare_runs.to_markdown(out, "a", "b")


def test_a_gain_on_one_patient_and_a_loss_on_another_is_not_evidence():
    a = _rows({"P1": [0.5] * 5, "P2": [0.9] * 5, "P3": [0.7] * 5})
    b = _rows({"P1": [0.8] * 5, "P2": [0.7] * 5, "P3": [0.7] * 5})
    out = compare_runs.compare(a, b, resamples=400)
    low, high = out["tumour"]["dice_diff_ci95"]
    assert low < 0 < high
    assert out["patients"]["better"] == 1 and out["patients"]["worse"] == 1
    assert "no evidence of a difference" in compare_runs.to_markdown(out, "a", "b")


def test_classes_and_tumour_free_flags_are_paired_scan_by_scan():
    a = _rows({"G1": [0.4, 0.4], "G2": [0.5]}, free_flags=(True, False, False))
    a += _rows({"M1": [0.9, 0.9]}, label="meningioma")
    b = _rows({"G1": [0.6, 0.6], "G2": [0.7]}, free_flags=(False, True, True))
    b += _rows({"M1": [0.8, 0.8]}, label="meningioma")
    out = compare_runs.compare(a, b, resamples=200)
    assert set(out["by_class"]) == {"glioma", "meningioma"}
    assert out["by_class"]["glioma"]["dice_diff"] == pytest.approx(0.2)
    assert out["by_class"]["meningioma"]["dice_diff"] == pytest.approx(-0.1)
    assert out["tumour"]["n_scans"] == 5 and out["tumour"]["n_patients"] == 3
    assert out["tumour_free"] == {"n": 3, "flagged_a": 1, "flagged_b": 2, "only_a": 1, "only_b": 2}


def test_a_scan_failed_in_either_run_is_left_out_of_both():
    a = _rows({"P1": [0.5, 0.5], "P2": [0.5]})
    b = _rows({"P1": [0.7, 0.7], "P2": [0.7]})
    b[0]["status"] = "failed"
    out = compare_runs.compare(a, b, resamples=50)
    assert out["tumour"]["n_scans"] == 2


def test_main_writes_markdown_and_json_from_run_folders(tmp_path, capsys):
    for name, d in (("old", 0.5), ("new", 0.6)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "val_scans.csv").write_text(
            rows_to_csv(_rows({f"P{i}": [d, d + 0.1] for i in range(4)}, free_flags=(False,))))
    out = tmp_path / "results"
    rc = compare_runs.main([str(tmp_path / "old"), str(tmp_path / "new"), "--out", str(out),
                            "--resamples", "100"])
    assert rc == 0
    md = (out / "compare_new_vs_old.md").read_text()
    assert "| all | 8 (4) | 0.550 | 0.650 | +0.100" in md
    saved = json.loads((out / "compare_new_vs_old.json").read_text())
    assert saved["a"] == "old" and saved["b"] == "new"
    assert saved["tumour"]["dice_diff"] == pytest.approx(0.1)


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    assert compare_runs.main([str(tmp_path / "nope"), str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nope" in err and "not found" in err
    (tmp_path / "a.csv").write_text(rows_to_csv(_rows({"P1": [0.5]})))
    (tmp_path / "b.csv").write_text(rows_to_csv(_rows({"P2": [0.5]})))
    assert compare_runs.main([str(tmp_path / "a.csv"), str(tmp_path / "b.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert "different scans (1 only in the first, 1 only in the second)" in err
    (tmp_path / "junk.csv").write_text("x,y\n1,2\n")
    assert compare_runs.main([str(tmp_path / "junk.csv"), str(tmp_path / "a.csv")]) == 2
    assert "junk.csv: not a per-scan results CSV" in capsys.readouterr().err
