"""``python -m bench.lab.ensemble``: the mean of several runs' models, scored as a run's report."""

import json
import shutil

import numpy as np
import pytest

from bench.lab import ensemble

pytestmark = pytest.mark.lab  # the lab archive (bench/lab): pytest --lab -m lab


def _fake_run(root, name, split=None, preprocessing=None, files=("best.keras",)):
    run = root / name
    run.mkdir()
    (run / "config.json").write_text(json.dumps(
        {"variant": "resunet", "preprocessing": preprocessing or {"input_size": 32}}))
    (run / "split.json").write_text(json.dumps(split or {"val_families": ["1"]}))
    (run / "report.json").write_text("{}")
    for f in files:
        (run / f).write_bytes(b"")
    return run


def test_runs_that_cannot_share_one_input_or_one_split_are_refused(tmp_path, capsys):
    a = _fake_run(tmp_path, "a")
    cases = [
        ([a], "at least 2 runs, got 1"),
        ([a, _fake_run(tmp_path, "s", split={"val_families": ["2"]})], "split differently"),
        ([a, _fake_run(tmp_path, "p", preprocessing={"input_size": 64})],
         "differ in preprocessing"),
        ([a, _fake_run(tmp_path, "k", files=())], "no best.keras"),
        ([a, tmp_path / "a"], "named twice"),
    ]
    for runs, problem in cases:
        code = ensemble.main([str(r) for r in runs] + ["--out", str(tmp_path / "new")])
        err = capsys.readouterr().err.strip()
        assert code == ensemble.EXIT_USAGE and problem in err, err
        assert err.startswith("ensemble: ") and "\n" not in err
    b = _fake_run(tmp_path, "b")
    assert ensemble.main([str(a), str(b), "--out", str(a)]) == ensemble.EXIT_USAGE
    assert "already exists" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def test_the_mean_predictor_averages_the_maps_pixel_by_pixel():
    batch = np.ones((2, 4, 4, 1), np.float32)
    mean = ensemble.mean_predictor([lambda b: b * 0.2, lambda b: b * 0.6, lambda b: b * 0.7])
    out = mean(batch)
    assert out.dtype == np.float32 and out.shape == batch.shape
    np.testing.assert_allclose(out, 0.5, rtol=1e-6)


def test_an_ensemble_of_a_model_and_its_copy_scores_exactly_the_model(tmp_path, monkeypatch):
    pytest.importorskip("tensorflow")
    from test_train import _write_synthetic
    from edge_seg.train.report import final_report
    from edge_seg.train.trainer import TrainConfig, train

    monkeypatch.setenv("EDGE_SEG_CACHE", str(tmp_path / "cache"))
    _write_synthetic(tmp_path / "data", n=20)
    cfg = TrainConfig(variant="resunet", preset="tiny", data=[str(tmp_path / "data")],
                      epochs=3, batch_size=8, patch_size=32, learning_rate=1e-2,
                      warmup_epochs=1, patience=100, jit_compile=False)
    run = tmp_path / "run"
    train(cfg, run, log=lambda m: None)
    final_report(run, log=lambda m: None)
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)

    out = tmp_path / "ens"
    results = tmp_path / "results"
    assert ensemble.main([str(run), str(copy), "--out", str(out), "--results",
                          str(results)]) == 0
    member = json.loads((run / "report.json").read_text())
    mean = json.loads((out / "report.json").read_text())
    # The mean of two identical maps is the map: the same setting, the same numbers.
    for key in ("dice_mean", "miou_2class_pooled", "threshold", "min_area_fraction"):
        assert mean[key] == pytest.approx(member[key]), key
    assert mean["checkpoint"] == "mean of 2 models' best.keras"
    cfg_out = json.loads((out / "config.json").read_text())
    assert cfg_out["ensemble"]["members"] == [str(run), str(copy)]
    assert json.loads((out / "split.json").read_text()) == \
        json.loads((run / "split.json").read_text())
    assert (out / "val_scans.csv").read_text() == (run / "val_scans.csv").read_text()
    md = (results / "ensemble_ens.md").read_text()
    assert "+0.0000 Dice" in md and md.count("\n| ") == 4   # header + 2 members + mean
    rows = json.loads((results / "ensemble_ens.json").read_text())["rows"]
    assert [r["run"] for r in rows] == ["run", "copy", "ens"]
