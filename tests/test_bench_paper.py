"""``python -m bench.paper_table`` on a fake run folder with tiny bundles."""

import csv
import json
from pathlib import Path

import pytest

from bench import paper_table
from bench.paper import CITATION, paper_ratios


@pytest.fixture()
def runs_dir(tmp_path, tiny_tflite_bytes):
    from edge_runtime.bundle import make_manifest, write_bundle
    from edge_runtime.preprocess import Preprocessing
    runs = tmp_path / "runs"
    run = runs / "r16"
    (run / "export").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"variant": "resunet_ag", "preset": "edge",
                                                 "epochs": 22, "patch_size": 128,
                                                 "learning_rate": 0.002}))
    (run / "report.json").write_text(json.dumps(
        {"threshold": 0.5, "min_area_fraction": 0.001, "min_peak_probability": 0.9,
         "val": {"dice_mean": 0.7, "miou_2class_pooled": 0.85, "fp_scan_rate": 0.1},
         "summary": {"tumour": {"n": 3, "dice_mean": 0.7, "missed_scans": 1},
                     "by_class": {"glioma": {"n": 2, "dice_mean": 0.6},
                                  "meningioma": {"n": 1, "dice_mean": 0.9}},
                     "tumour_free": {"n": 8, "fp_scans": 2, "fp_scan_rate": 0.25}}}))
    (run / "best.keras").write_bytes(b"k" * 1000)
    from edge_runtime.evaluate import rows_to_csv
    scans = [{"key": f"{fam}{i}", "family": fam, "label_name": "glioma", "has_tumour": True,
              "status": "ok", "dice": d, "tp": 10, "fp": 2, "fn": 3, "tn": 85}
             for fam, d in (("p1", 0.9), ("p2", 0.5), ("p3", 0.7)) for i in range(2)]
    (run / "val_scans.csv").write_text(rows_to_csv(scans))
    for fmt in ("fp32", "drq"):
        manifest = make_manifest(
            f"r16_{fmt}", fmt, Preprocessing(input_size=64), variant="resunet_ag",
            source={"run": "r16"},
            metrics={"gated": True, "scans": 40, "float": {"dice": 0.7},
                     "gate": {"metric": "dice_mean", "drop": 0.01},
                     "converted": {"dice": 0.69, "miou_2class_tumour_scans": 0.84,
                                   "fp_scan_rate": 0.2}})
        write_bundle(run / "export" / f"r16_{fmt}.zip", tiny_tflite_bytes, manifest, "card")
    (runs / "broken.zip").write_bytes(b"junk")
    return runs


def test_paper_table_end_to_end(runs_dir, tmp_path):
    out = tmp_path / "results"
    rc = paper_table.main(["--runs-dir", str(runs_dir), "--out", str(out), "--threads", "1",
                           "--runs", "2", "--warmup", "0", "--no-kit"])
    assert rc == 0
    for name in ("paper_table.md", "paper_table.csv", "paper_table.json",
                 "accuracy_vs_latency.png"):
        assert (out / name).is_file(), name
    with open(out / "paper_table.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    by = {(r["run"], r["format"]): r for r in rows}
    assert by[("r16", "keras")]["dice"] == "0.7"                       # from report.json
    assert by[("r16", "keras")]["accuracy_from"] == "report.json"
    drq = by[("r16", "drq")]
    assert drq["status"] == "ok" and float(drq["miou_2class"]) == 0.84   # from the gate
    assert float(drq["latency_ms_t1"]) > 0 and float(drq["size_mb"]) > 0
    assert float(drq["size_ratio_vs_fp32"]) > 0
    assert by[("r16", "int8")]["status"] == "missing"
    assert by[("r16", "fp16")]["status"] == "missing"
    assert any(r["status"] == "FAILED" for r in rows)                  # broken.zip
    assert sum(r["accuracy_from"] == "paper" for r in rows) == 2
    md = (out / "paper_table.md").read_text()
    assert CITATION in md and "0.845" in md and "0.3143" in md and "missing" in md
    assert "| r16 | glioma | 2 | 0.600 |" in md and "| r16 | meningioma | 1 | 0.900 |" in md
    assert "| r16 | tumour-free scans | 8 |" in md and "2 (25.0 %)" in md
    # the variants side by side: recipe, post-processing chosen on validation, DRQ drop
    line = next(x for x in md.splitlines() if x.startswith("| r16 | resunet_ag | 22 epochs"))
    assert "128-px patches, lr 0.002" in line and "0.50 / 0.0010 / 0.90" in line
    assert "| 0.700 [0.500, 0.900] |" in line and line.rstrip(" |").endswith("0.0100")
    table = json.loads((out / "paper_table.json").read_text())
    assert table["variants"][0]["drq_dice_drop"] == 0.01
    # the interval over the 3 patients of val_scans.csv (whole patients resampled)
    assert table["variants"][0]["n_patients"] == 3
    assert table["variants"][0]["dice_ci95"] == pytest.approx([0.5, 0.9])


def test_paper_table_with_nothing(tmp_path):
    out = tmp_path / "results"
    assert paper_table.main(["--runs-dir", str(tmp_path / "none"), "--out", str(out),
                             "--no-kit"]) == 0
    assert "no runs or bundles found" in (out / "paper_table.md").read_text()


def test_paper_table_fills_rows_from_a_kit_and_says_why_the_rest_are_missing(runs_dir,
                                                                             tiny_bundle,
                                                                             tmp_path):
    """A fresh clone: no export folder, the kit holds the bundles that exist."""
    import shutil

    from edge_runtime.kit import add_bundle, missing_entry, write_kit
    kit = tmp_path / "kit"
    drq = runs_dir / "r16" / "export" / "r16_drq.zip"
    entries = [add_bundle(kit, drq, "r16_drq", "variant"),
               add_bundle(kit, tiny_bundle, "ref_drq", "paper-reference"),
               missing_entry("r16_int8", "variant", run="r16", format="int8",
                             variant="resunet_ag", reason="never converted",
                             make="edge-seg convert runs/r16 --all")]
    write_kit(kit, entries)
    shutil.rmtree(runs_dir / "r16" / "export")
    (runs_dir / "broken.zip").unlink()
    table = paper_table.build_table(runs_dir, tmp_path / "out", kit_dir=kit, threads=(1,),
                                    bench=False)
    by = {(r["run"], r["format"]): r for r in table["rows"]}
    assert by[("r16", "drq")]["status"] == "ok"
    assert by[("r16", "drq")]["miou_2class"] == 0.84 and by[("r16", "drq")]["dice_drop"] == 0.01
    assert by[(paper_table.REFERENCE_RUN, "fp32")]["status"] == "ok"    # the tiny model is fp32
    int8 = by[("r16", "int8")]
    assert int8["status"] == "missing" and "never converted" in int8["error"]
    assert "edge-seg convert runs/r16 --all" in int8["error"]
    fp16 = by[("r16", "fp16")]
    assert fp16["status"] == "missing" and "r16/export" in fp16["error"]
    md = paper_table.render_markdown(table)
    assert "never converted" in md and "row(s) `missing`: the note says why" in md

    # --kit-runs: only what the kit lists; a run outside it and unlisted formats go away
    other = runs_dir / "research"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"variant": "resunet_se"}))
    (other / "report.json").write_bytes((runs_dir / "r16" / "report.json").read_bytes())
    (runs_dir / "r16" / "best.keras").unlink()
    full = paper_table.build_table(runs_dir, tmp_path / "out", kit_dir=kit, threads=(1,),
                                   bench=False)
    assert any(r["run"] == "research" for r in full["rows"])
    kit_only = paper_table.build_table(runs_dir, tmp_path / "out", kit_dir=kit, threads=(1,),
                                       bench=False, kit_runs=True)
    by = {(r["run"], r["format"]): r for r in kit_only["rows"]}
    assert set(by) == {("r16", "keras"), ("r16", "drq"), ("r16", "int8"),
                       (paper_table.REFERENCE_RUN, "fp32")}
    keras = by[("r16", "keras")]          # a fresh clone: the report, not the checkpoint
    assert keras["status"] == "report only" and keras["dice"] == 0.7
    assert "report.json" in keras["error"]


def test_paper_constants():
    r = paper_ratios()
    assert r["size_ratio"] == pytest.approx(127 / 32)
    assert r["speedup"] == pytest.approx(314.3 / 197.3)


def test_speed_vs_paper_times_both_models_in_one_run(tiny_bundle, tmp_path, monkeypatch):
    from bench import speed_vs_paper
    import shutil
    ref = tmp_path / "ref.zip"
    shutil.copy(tiny_bundle, ref)                  # stands in for the paper-size model
    monkeypatch.setattr(speed_vs_paper, "build_reference", lambda work: ref)
    out = tmp_path / "out"
    monkeypatch.chdir(tmp_path)
    rc = speed_vs_paper.main(["--bundle", str(tiny_bundle), "--threads", "1", "--runs", "2",
                              "--warmup", "0", "--image", "", "--out", str(out)])
    assert rc == 0
    data = json.loads((out / "speed_vs_paper.json").read_text())
    (r,) = data["ratios"]
    assert r["threads"] == 1 and r["edge_ms_p50"] > 0 and r["paper_ms_p50"] > 0
    assert r["speedup"] == pytest.approx(r["paper_ms_p50"] / r["edge_ms_p50"])
    md = (out / "speed_vs_paper.md").read_text()
    # The command to retype names the models relative to where it was run, not by a
    # machine-specific absolute path.
    shown = speed_vs_paper.shown_path(tiny_bundle)
    assert f"edge-seg bench {shown} ref.zip --threads 1" in md and "| 1 |" in md
    assert speed_vs_paper.shown_path(Path.home() / "x" / "y.zip") == "~/x/y.zip"


def test_training_recipe_says_how_and_how_far_a_run_was_trained():
    cpu = {"epochs": 22, "patch_size": 128, "learning_rate": 0.002}
    assert paper_table.training_recipe(cpu, {"epoch": 9, "finished": False, "best_epoch": 8}) \
        == "22 epochs, 128-px patches, lr 0.002, IN PROGRESS: epoch 9 of 22, best epoch 8"
    gpu = {"epochs": 63, "patch_size": 256, "learning_rate": 0.002,
           "trained_with": {"trainer": "train.portable", "backend": "jax", "whole_scans": True,
                            "epochs_fitted_to_minutes": 7.5}}
    line = paper_table.training_recipe(gpu, {"epoch": 60, "finished": True, "best_epoch": 45})
    assert line == ("63 epochs, whole 256-px scans, lr 0.002, train.portable (jax), "
                    "epochs fitted to 7.5 min, early stop at 60, best epoch 45")
    ft = dict(cpu, epochs=18, init_from="runs/a/best.keras")
    assert paper_table.training_recipe(ft).startswith("18 epochs, from a, 128-px patches")
