"""``python -m bench.lab.teacher``: the mean of bundles, scored as a run's report."""

import json

import pytest

from bench.lab import teacher

pytestmark = pytest.mark.lab  # the lab archive (bench/lab): pytest --lab -m lab


def _run_folder(root, preprocessing):
    run = root / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"preprocessing": preprocessing}))
    (run / "split.json").write_text(json.dumps({"val_families": []}))
    return run


def test_what_cannot_be_scored_is_refused_in_one_line(tiny_bundle, tmp_path, capsys):
    cases = [
        ([str(tiny_bundle), "--split-from", str(tmp_path / "none")], "no config.json"),
        ([str(tiny_bundle), "--split-from", str(_run_folder(tmp_path, {"input_size": 256})),
          ], "the teacher preprocesses as"),
        ([str(tmp_path / "missing.zip"), "--split-from", str(tmp_path / "run")], "missing.zip"),
    ]
    for args, problem in cases:
        code = teacher.main(args + ["--out", str(tmp_path / "new")])
        err = capsys.readouterr().err.strip()
        assert code == teacher.EXIT_USAGE and problem in err, err
        assert err.startswith("teacher: ") and "\n" not in err
        assert not (tmp_path / "new").exists()
    code = teacher.main([str(tiny_bundle), "--split-from", str(tmp_path / "run"), "--out",
                         str(tmp_path / "run")])
    assert code == teacher.EXIT_USAGE and "already exists" in capsys.readouterr().err


def test_the_mean_of_a_bundle_and_itself_scores_exactly_the_bundle(tiny_bundle, tmp_path,
                                                                   monkeypatch):
    pytest.importorskip("tensorflow")
    from test_train import _write_synthetic

    from edge_seg.train.trainer import TrainConfig, train
    monkeypatch.setenv("EDGE_SEG_CACHE", str(tmp_path / "cache"))
    _write_synthetic(tmp_path / "data", n=20)
    cfg = TrainConfig(variant="resunet", preset="tiny", data=[str(tmp_path / "data")],
                      epochs=1, batch_size=8, patch_size=32, jit_compile=False,
                      preprocessing={"input_size": 64})
    run = tmp_path / "run"
    train(cfg, run, log=lambda m: None)
    one, two = tmp_path / "one", tmp_path / "two"
    assert teacher.main([str(tiny_bundle), "--split-from", str(run), "--out", str(one)]) == 0
    assert teacher.main([str(tiny_bundle), str(tiny_bundle), "--split-from", str(run),
                         "--out", str(two)]) == 0
    a, b = (json.loads((d / "report.json").read_text()) for d in (one, two))
    for key in ("dice_mean", "fp_scan_rate", "threshold", "min_area_fraction",
                "min_peak_probability"):
        assert a[key] == b[key], key
    assert (one / "val_scans.csv").read_text() == (two / "val_scans.csv").read_text()
    assert b["checkpoint"] == "mean of 2 bundles"
    cfg_two = json.loads((two / "config.json").read_text())
    assert len(cfg_two["teacher_bundles"]) == 2 and cfg_two["teacher"]["split_from"] == str(run)
    assert json.loads((two / "split.json").read_text()) == json.loads(
        (run / "split.json").read_text())
    # every validation scan of the run was scored
    from edge_runtime.evaluate import run_validation_samples
    samples, _ = run_validation_samples(run)
    assert len((two / "val_scans.csv").read_text().strip().splitlines()) == len(samples) + 1
