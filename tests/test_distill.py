"""``edge-seg train --teacher``: a teacher's maps as a second target (edge_seg.train.distill)."""

import json

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from edge_seg.train import distill
from edge_seg.train.data import make_dataset
from edge_seg.train.losses import dice_bce_loss


def _discs(n=6, size=48, seed=1):
    from test_train import discs
    return discs(n, size, seed=seed)


def test_the_teacher_map_rides_with_the_mask_and_no_random_draw_changes():
    x, y = _discs()
    soft = (y * 255).astype(np.uint8)
    plain, _ = make_dataset(x, y, 32, 3, seed=4, scanner_augment=("bias", "noise"))
    taught, _ = make_dataset(x, y, 32, 3, seed=4, scanner_augment=("bias", "noise"),
                                 soft=soft)
    for epoch in (0, 1):
        for (xa, ya), (xb, yb) in zip(plain(epoch), taught(epoch)):
            assert yb.shape == (3, 32, 32, 2)
            np.testing.assert_array_equal(xa.numpy(), xb.numpy())     # the same patches
            np.testing.assert_array_equal(ya.numpy()[..., 0], yb.numpy()[..., 0])
            # the map went through the same geometry as the mask (bilinear, then >= 0.5)
            np.testing.assert_array_equal(yb.numpy()[..., 1] >= 0.5, yb.numpy()[..., 0] > 0)
    with pytest.raises(ValueError, match="one map per scan"):
        make_dataset(x, y, 32, 3, seed=4, soft=soft[:-1])


def test_the_loss_adds_the_cross_entropy_towards_the_teacher_and_survives_saving():
    rng = np.random.default_rng(0)
    hard = (rng.random((2, 8, 8, 1)) > 0.7).astype(np.float32)
    soft = rng.random((2, 8, 8, 1)).astype(np.float32)
    pred = np.clip(rng.random((2, 8, 8, 1)), 0.05, 0.95).astype(np.float32)
    loss = distill.distill_loss("dice_bce", 0.5)
    got = float(loss(np.concatenate([hard, soft], -1), pred))
    bce = float(np.mean(keras.losses.binary_crossentropy(soft, pred)))
    want = float(dice_bce_loss(hard, pred)) + 0.5 * bce
    assert got == pytest.approx(want, rel=1e-5)
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert (again.base, again.weight) == ("dice_bce", 0.5)
    with pytest.raises(ValueError, match="unknown loss"):
        distill.distill_loss("nope", 1.0)


def test_a_teacher_that_preprocesses_otherwise_is_refused_in_one_line(tiny_bundle):
    with pytest.raises(distill.TeacherError) as err:
        distill.load_teacher([tiny_bundle], {"input_size": 256, "resize": "letterbox"})
    msg = str(err.value)
    assert str(tiny_bundle) in msg and "'input_size': 64" in msg and "\n" not in msg
    with pytest.raises(distill.TeacherError, match="at least one bundle"):
        distill.load_teacher([], {})


def test_teacher_maps_are_the_mean_of_the_bundles_and_cached(tiny_bundle, tmp_path):
    from edge_runtime.bundle import load_bundle
    from edge_runtime.interpreter import make_interpreter, run_model

    spec = load_bundle(tiny_bundle).preprocessing.to_dict()
    x, _ = _discs(n=3, size=64)
    one, rec1 = distill.load_teacher([tiny_bundle], spec)
    two, rec2 = distill.load_teacher([tiny_bundle, tiny_bundle], spec)
    assert len(rec2) == 2 and rec1[0]["sha256"] == load_bundle(tiny_bundle).sha256
    maps = distill.teacher_maps(x, two, rec2, cache_dir=tmp_path, log=None)
    assert maps.dtype == np.uint8 and maps.shape == x.shape
    interp = make_interpreter(load_bundle(tiny_bundle).model_bytes)
    want = np.rint(np.clip(run_model(interp, x[1]), 0, 1) * 255)
    assert np.abs(maps[1].astype(int) - want).max() <= 1
    np.testing.assert_array_equal(maps, distill.teacher_maps(x, one, rec1, log=None))

    def broken(_batch):
        raise AssertionError("the cached maps were not used")
    np.testing.assert_array_equal(maps, distill.teacher_maps(x, broken, rec2,
                                                             cache_dir=tmp_path, log=None))
    with pytest.raises(distill.TeacherError, match="one-slice"):
        distill.teacher_maps(x[..., None], one, rec1, log=None)


def test_a_run_with_a_teacher_trains_records_it_and_resumes_only_with_it(tiny_bundle, tmp_path,
                                                                          monkeypatch):
    from edge_seg.train.trainer import TrainConfig, train
    from test_train import _write_synthetic
    monkeypatch.setenv("EDGE_SEG_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "data"
    _write_synthetic(data, n=16)
    cfg = TrainConfig(variant="resunet", preset="tiny", data=[str(data)], epochs=2,
                      batch_size=4, patch_size=32, learning_rate=1e-2, warmup_epochs=0,
                      patience=10, jit_compile=False, teacher=[str(tiny_bundle)],
                      distill_weight=0.5, preprocessing={"input_size": 64})
    run = tmp_path / "run"
    state = train(cfg, run, log=lambda m: None, max_epochs_this_call=1)
    assert state["epoch"] == 1
    saved = json.loads((run / "config.json").read_text())
    assert saved["teacher"] == [str(tiny_bundle)] and saved["distill_weight"] == 0.5
    from edge_runtime.bundle import load_bundle
    assert [r["sha256"] for r in saved["teacher_bundles"]] == [load_bundle(tiny_bundle).sha256]
    assert list((tmp_path / "cache").glob("teacher-*.npy"))
    # the same teacher: the run resumes (the saved model's loss deserialises)
    state = train(cfg, run, resume=True, log=lambda m: None)
    assert state["epoch"] == 2 and state["finished"]
    # another model at the teacher's path: refused, in one line, naming it
    from conftest import FIXTURES

    from edge_runtime.bundle import make_manifest, write_bundle
    from edge_runtime.preprocess import Preprocessing
    from edge_runtime.trust import trust_bundle
    other = tmp_path / "other.zip"
    write_bundle(other, (FIXTURES / "tiny_64_int8.tflite").read_bytes(),
                 make_manifest("other", "int8", Preprocessing(input_size=64), threshold=0.5,
                               variant="tiny", preset="test",
                               interpreters_verified=["ai-edge-litert"]), "# other\n")
    trust_bundle(other)
    saved.update(epochs=3, teacher=[str(other)])
    (run / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match="not the ones this run started with") as err:
        train(cfg, run, resume=True, log=lambda m: None)
    assert str(other) in str(err.value) and "\n" not in str(err.value)
