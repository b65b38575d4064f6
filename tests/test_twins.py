"""Near-identical scans across a split: found, left out of new runs' training, measured."""

import json

import numpy as np
import pytest
from PIL import Image

from edge_runtime.datasets import read_negatives
from edge_seg.train.twins import DEFAULT_THRESHOLD, drop_twins, nearest, thumbnail


def _brain(seed, size=96):
    """A distinct synthetic 'scan': an ellipse with a few bright blobs at seeded places."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    img = 60.0 * (((yy - 0.5) / 0.42) ** 2 + ((xx - 0.5) / 0.35) ** 2 < 1)
    for _ in range(4):
        cy, cx, r = rng.uniform(0.25, 0.75, 2).tolist() + [rng.uniform(0.04, 0.1)]
        img += 150.0 * ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r)
    return np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)


def _save(folder, name, pixels, **kw):
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(folder / name, **kw)


def test_a_resized_reencoded_copy_is_a_twin_and_another_scan_is_not():
    a, b = _brain(1), _brain(2)
    copy = np.asarray(Image.fromarray(a).resize((150, 150), Image.BICUBIC))
    va, vb, vc = (thumbnail(x) for x in (a, b, copy))
    assert float(va @ vc) >= DEFAULT_THRESHOLD > float(va @ vb)
    assert abs(float(np.linalg.norm(va)) - 1) < 1e-5
    assert not thumbnail(np.full((40, 40), 7, np.uint8)).any()      # a flat scan: no NaN
    best, arg = nearest(np.stack([vc, vb]), np.stack([vb, va]))
    assert arg.tolist() == [1, 0] and best[1] > 0.999


def test_drop_twins_leaves_out_only_the_training_copies(tmp_path):
    for i in range(4):
        _save(tmp_path / "train", f"t{i}.png", _brain(10 + i))
    _save(tmp_path / "train", "copy.jpg", _brain(99), quality=90)   # JPEG copy of a val scan
    _save(tmp_path / "val", "v.png", _brain(99))
    _save(tmp_path / "val", "w.png", _brain(50))
    train, val = read_negatives(tmp_path / "train"), read_negatives(tmp_path / "val")
    kept, dropped = drop_twins(train, val)
    assert [s.key for s in kept] == ["t0.png", "t1.png", "t2.png", "t3.png"]
    assert len(dropped) == 1 and dropped[0]["train"] == "copy.jpg"
    assert dropped[0]["val"] == "v.png" and dropped[0]["similarity"] >= DEFAULT_THRESHOLD
    assert drop_twins(train, []) == (train, [])


def test_new_runs_leave_twins_out_and_old_runs_keep_what_they_trained_on(tmp_path):
    from edge_seg.train.trainer import TrainConfig, config_from_saved, make_split, split_record

    labelled = []   # the tumour-free side is what this is about
    for i in range(30):
        _save(tmp_path / "neg", f"n{i:02d}.png", _brain(200 + i))
    negatives = read_negatives(tmp_path / "neg")
    # Make one training-side scan a copy of a validation-side one (same split, same seed).
    cfg = TrainConfig(seed=0, val_fraction=0.2)
    _, _, ntr, nva, twins = make_split(cfg, labelled, negatives)
    assert twins == [] and nva
    Image.open(nva[0].image).save(ntr[0].image)
    _, _, ntr2, nva2, twins = make_split(cfg, labelled, negatives)
    assert [s.key for s in nva2] == [s.key for s in nva]          # validation never moves
    assert [t["train"] for t in twins] == [ntr[0].key] and twins[0]["val"] == nva[0].key
    assert ntr[0].key not in {s.key for s in ntr2} and len(ntr2) == len(ntr) - 1
    record = split_record(cfg, [], [], ntr2, nva2, twins)
    assert record["train_negatives_left_out"] == twins
    assert record["counts"]["train_negatives_left_out"] == 1
    off = TrainConfig(seed=0, val_fraction=0.2, twin_similarity=0.0)
    assert len(make_split(off, labelled, negatives)[2]) == len(ntr)
    # A run made before the option resumes with what it trained on; a new run records it.
    assert config_from_saved({"seed": 0}).twin_similarity == 0.0
    assert config_from_saved({"twin_similarity": 0.9}).twin_similarity == 0.9
    assert TrainConfig().twin_similarity == DEFAULT_THRESHOLD


@pytest.mark.lab
def test_leakage_counts_twins_and_splits_the_flag_rate_by_them(tmp_path, capsys):
    from bench.lab import leakage
    from edge_runtime.evaluate import rows_to_csv

    for i in range(6):
        _save(tmp_path / "neg", f"n{i}.png", _brain(300 + i))
    _save(tmp_path / "neg", "n0copy.png", np.asarray(Image.fromarray(_brain(300))
                                                    .resize((120, 120))))
    _save(tmp_path / "neg", "n1copy.png", _brain(301))
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"negatives": [str(tmp_path / "neg")]}))
    val = ["n0copy.png", "n1copy.png", "n4.png", "n5.png"]
    (run / "split.json").write_text(json.dumps({"val_keys": [], "val_negative_keys": val}))
    flagged = {"n0copy.png": True, "n1copy.png": False, "n4.png": True, "n5.png": False}
    rows = [{"key": k, "family": "neg:" + k, "has_tumour": False, "status": "ok",
             "any_tumour_predicted": f} for k, f in flagged.items()]
    (run / "val_scans.csv").write_text(rows_to_csv(rows))
    assert leakage.main(["--run", str(run), "--out", str(tmp_path / "out")]) == 0, \
        capsys.readouterr().err
    result = json.loads((tmp_path / "out" / "leakage.json").read_text())
    free = result["groups"]["tumour-free"]
    assert free["scans"] == 4 and free["with_twin"] == 2
    assert {t["val"]: t["train"] for t in result["twins"]} == {"n0copy.png": "n0.png",
                                                               "n1copy.png": "n1.png"}
    assert (free["flagged_with_twin"]["k"], free["flagged_with_twin"]["n"]) == (1, 2)
    assert (free["flagged_without_twin"]["k"], free["flagged_without_twin"]["n"]) == (1, 2)
    md = (tmp_path / "out" / "leakage.md").read_text()
    assert "| tumour-free | 4 | 2 (50 %) |" in md and "| without a training twin | 2 | 1 |" in md

    # Another run on the same split gets its own row; one split differently is refused.
    other = tmp_path / "other"
    other.mkdir()
    for name in ("config.json", "split.json"):
        (other / name).write_text((run / name).read_text())
    rows_other = [dict(r, any_tumour_predicted=False) for r in rows]
    (other / "val_scans.csv").write_text(rows_to_csv(rows_other))
    assert leakage.main(["--run", str(run), "--also", str(other), "--out",
                         str(tmp_path / "out2")]) == 0
    runs = json.loads((tmp_path / "out2" / "leakage.json").read_text())["runs"]
    assert [(r["run"], r["with_twin"]["k"], r["without_twin"]["k"]) for r in runs] == \
        [("run", 1, 1), ("other", 0, 0)]
    assert "| other | 0 of 4 | 0 of 2 (0.0 %) |" in (tmp_path / "out2" / "leakage.md").read_text()
    (other / "split.json").write_text(json.dumps({"val_keys": [], "val_negative_keys": val[:2]}))
    assert leakage.main(["--run", str(run), "--also", str(other), "--out",
                         str(tmp_path / "out3")]) == 2
    err = capsys.readouterr().err.strip()
    assert "not split as" in err and "\n" not in err and not (tmp_path / "out3").exists()


def test_a_run_that_left_twins_out_has_none_on_its_training_side(tmp_path):
    from edge_runtime.evaluate import run_split_samples

    for i in range(3):
        _save(tmp_path / "neg", f"n{i}.png", _brain(400 + i))
    _save(tmp_path / "neg", "n0copy.png", _brain(400))
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"negatives": [str(tmp_path / "neg")]}))
    (run / "split.json").write_text(json.dumps({
        "val_keys": [], "val_negative_keys": ["n0.png"],
        "train_negatives_left_out": [{"train": "n0copy.png", "val": "n0.png"}]}))
    train, val, _ = run_split_samples(run)
    assert [s.key for s in val] == ["n0.png"]
    assert sorted(s.key for s in train) == ["n1.png", "n2.png"]
