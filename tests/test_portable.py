"""train.portable: pack the split here, fit whole scans on any Keras 3 backend (here: the
TensorFlow backend the test environment has), resume, and fit the schedule to a time budget."""

import json

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from test_train import _write_synthetic  # noqa: E402


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    from edge_seg.train.portable import pack
    from edge_seg.train.trainer import TrainConfig

    root = tmp_path_factory.mktemp("portable")
    mp = pytest.MonkeyPatch()
    mp.setenv("EDGE_SEG_CACHE", str(root / "cache"))
    _write_synthetic(root / "data", n=40)
    cfg = TrainConfig(variant="resunet", preset="tiny", data=[str(root / "data")],
                      learning_rate=1e-2, warmup_epochs=1, patience=100)
    lossless = pack(cfg, root / "lossless.npz", log=lambda m: None)
    jpeg = pack(TrainConfig(**vars(cfg)), root / "jpeg.npz", quality=95, log=lambda m: None)
    yield root, cfg, lossless, jpeg
    mp.undo()


def test_pack_holds_the_patient_family_split_and_lossless_masks(packed):
    from edge_seg.train.portable import load_pack
    from edge_seg.train.trainer import TrainConfig, gather_samples, make_split

    root, cfg, lossless, jpeg = packed
    meta, x_tr, y_tr, x_va, y_va, has_tumour = load_pack(lossless)
    split = meta["split"]
    assert not set(split["train_families"]) & set(split["val_families"])
    # The same split edge-seg train would make from the same config.
    tr, va, *_ = make_split(cfg, *gather_samples(TrainConfig(**vars(cfg))))
    assert split["val_keys"] == [s.key for s in va]
    assert len(x_tr) == len(tr) and len(x_va) == len(va) == int(has_tumour.sum())
    assert x_tr.dtype == np.uint8 and x_tr.shape[1:] == (meta["size"], meta["size"])
    assert set(np.unique(y_tr)) <= {0, 1} and y_va.shape == x_va.shape
    assert y_tr.sum() > 0

    meta_j, xj_tr, yj_tr, xj_va, yj_va, _ = load_pack(jpeg)
    assert meta_j["jpeg_quality"] == 95 and jpeg.stat().st_size < lossless.stat().st_size
    np.testing.assert_array_equal(yj_tr, y_tr)           # masks are never compressed
    np.testing.assert_array_equal(yj_va, y_va)
    assert np.abs(xj_tr.astype(int) - x_tr).mean() < 3   # images: close, not equal


def test_fit_stops_on_its_budget_resumes_and_loads_under_tensorflow(packed):
    import keras

    from edge_seg.train.portable import fit

    root, _, lossless, _ = packed
    run = root / "run"
    # A budget already spent still runs one epoch, then stops with the run resumable.
    state = fit(lossless, run, epochs=10, batch_size=8, minutes=1e-6, log=lambda m: None)
    assert state["epoch"] == 1 and not state["finished"]
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["trained_with"]["trainer"] == "train.portable" and cfg["epochs"] == 10
    state = fit(lossless, run, log=lambda m: None)
    assert state["epoch"] == 10 and state["finished"]
    rows = (run / "log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == [str(e) for e in range(1, 11)]
    assert state["best_val_dice"] >= 0.5, state   # whole synthetic discs are easy
    # The patch trainer refuses to resume it (it would silently change the recipe).
    from edge_seg.train.trainer import TrainConfig, train
    with pytest.raises(ValueError, match="python -m edge_seg.train.portable fit PACK"):
        mine = {k: v for k, v in cfg.items() if k != "trained_with"}
        train(TrainConfig(**dict(mine, strategy="default")), run, resume=True,
              log=lambda m: None)
    model = keras.models.load_model(run / "best.keras", compile=False)
    x = np.zeros((1, 64, 64, 1), np.float32)
    assert model.predict(x, verbose=0).shape == (1, 64, 64, 1)


def test_fit_to_minutes_shortens_the_schedule_after_the_warm_up(packed):
    from edge_seg.train.portable import fit

    root, _, lossless, _ = packed
    run = root / "fitted"
    state = fit(lossless, run, epochs=50, batch_size=8, fit_to_minutes=1e-6,
                log=lambda m: None)
    # warm-up (1 epoch) + the first cosine epoch are run, then no time is left: the
    # shortest schedule, 3 epochs, is recorded and run to its end.
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["epochs"] == 3 and cfg["trained_with"]["epochs_fitted_to_minutes"] == 1e-6
    assert state["epoch"] == 3 and state["finished"]


def test_fit_init_from_starts_from_the_given_weights_and_refuses_a_model_that_does_not_fit(
        packed):
    import keras

    from edge_seg.train.models import build_model
    from edge_seg.train.portable import fit

    root, _, lossless, _ = packed
    keras.utils.set_random_seed(123)
    start = build_model("resunet", "tiny", input_size=64, dynamic_size=True)
    start.save(root / "start.keras")
    run = root / "finetuned"
    # A learning rate too small to move anything: the kernels are still the given ones.
    fit(lossless, run, epochs=1, batch_size=8, learning_rate=1e-12, warmup_epochs=0,
        init_from=root / "start.keras", log=lambda m: None)
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["init_from"] == str(root / "start.keras") and cfg["warmup_epochs"] == 0
    tuned = keras.models.load_model(run / "last.keras", compile=False)
    kernels = [(a, b) for a, b in zip(start.weights, tuned.weights) if "kernel" in a.path]
    assert kernels and all(np.allclose(np.asarray(a), np.asarray(b), atol=1e-6)
                           for a, b in kernels)
    from edge_seg.train.recipe import training_recipe
    assert "from " in training_recipe(cfg)

    other = build_model("resunet_se", "tiny", input_size=64, dynamic_size=True)
    other.save(root / "other.keras")
    with pytest.raises(ValueError, match="other.keras: its weights do not fit variant"):
        fit(lossless, root / "refused", epochs=1, batch_size=8,
            init_from=root / "other.keras", log=lambda m: None)
    assert not (root / "refused").exists()   # refused before anything was written
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        fit(lossless, root / "refused2", epochs=1, init_from=root / "missing.keras",
            log=lambda m: None)


def test_fit_takes_the_loss_by_name_and_records_it(packed):
    from edge_seg.train.portable import fit
    from edge_seg.train.recipe import training_recipe

    root, _, lossless, _ = packed
    run = root / "scan_dice"
    fit(lossless, run, epochs=1, batch_size=8, loss="scan_dice_bce", log=lambda m: None)
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["loss"] == "scan_dice_bce"
    assert "loss scan_dice_bce" in training_recipe(cfg)
    assert "loss" not in training_recipe(dict(cfg, loss="dice_bce"))
    with pytest.raises(ValueError, match="unknown loss 'dice_typo'; allowed: dice_bce"):
        fit(lossless, root / "refused3", epochs=1, loss="dice_typo", log=lambda m: None)
    assert not (root / "refused3").exists()


def test_fit_takes_another_preset_at_the_packs_input_size_and_refuses_an_unknown_one(packed):
    import keras

    from edge_seg.train.models import build_model
    from edge_seg.train.portable import fit

    root, _, lossless, _ = packed
    run = root / "bigger"
    fit(lossless, run, epochs=1, batch_size=8, preset="edge", log=lambda m: None)
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["preset"] == "edge"
    model = keras.models.load_model(run / "last.keras", compile=False)
    expected = build_model(cfg["variant"], "edge", input_size=64, dynamic_size=True)
    assert model.count_params() == expected.count_params()
    with pytest.raises(ValueError, match="unknown preset 'huge'; allowed: paper, edge"):
        fit(lossless, root / "refused3", epochs=1, preset="huge", log=lambda m: None)
    assert not (root / "refused3").exists()


def test_patch_offsets_centre_on_the_tumour_stay_inside_and_refuse_a_bad_size():
    from edge_seg.train.portable import patch_offsets

    masks = np.zeros((50, 64, 64), np.uint8)
    masks[:25, 50:54, 3:7] = 1           # a small tumour near the lower-left edge
    rng = np.random.default_rng(0)
    corners = patch_offsets(masks, 32, 1.0, rng)
    assert corners.shape == (50, 2) and corners.min() >= 0 and corners.max() <= 32
    for (y0, x0) in corners[:25]:        # every tumour scan's patch holds tumour pixels
        assert masks[0, y0:y0 + 32, x0:x0 + 32].any()
    never = patch_offsets(masks, 32, 0.0, np.random.default_rng(1))
    assert len({tuple(c) for c in never}) > 10    # random corners, not one spot
    assert (patch_offsets(masks, 64, 1.0, rng) == 0).all()   # the whole scan
    with pytest.raises(ValueError, match="patch size must be in 1..64.*got 80"):
        patch_offsets(masks, 80, 0.9, rng)


def test_patch_crop_cuts_each_scans_own_patch():
    import keras

    from edge_seg.train.portable import _crop_layer

    both = np.random.default_rng(0).random((3, 16, 16, 2)).astype(np.float32)
    corners = np.array([[0, 0], [5, 2], [8, 8]], np.int32)
    out = np.asarray(_crop_layer(keras, 8)(both, corners))
    for b, (y0, x0) in enumerate(corners):
        np.testing.assert_allclose(out[b], both[b, y0:y0 + 8, x0:x0 + 8], rtol=1e-5)


def test_fit_on_patches_records_the_recipe_and_validates_on_whole_scans(packed):
    from edge_seg.train.portable import fit
    from edge_seg.train.recipe import training_recipe

    root, _, lossless, _ = packed
    run = root / "patches"
    state = fit(lossless, run, epochs=2, batch_size=8, patch_size=32, log=lambda m: None)
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["patch_size"] == 32 and cfg["tumour_centred"] == 0.9
    assert cfg["trained_with"]["whole_scans"] is False
    assert state["epoch"] == 2 and state["best_val_dice"] > 0
    assert training_recipe(cfg).startswith("2 epochs, 32-px patches, lr ")
    assert "train.portable" in training_recipe(cfg)
    with pytest.raises(ValueError, match="patch size must be in 1..64"):
        fit(lossless, root / "refused4", epochs=1, patch_size=96, log=lambda m: None)
    assert not (root / "refused4").exists()


def test_score_gives_the_logged_proxy_for_a_saved_model(packed, capsys):
    from edge_seg.train.portable import main

    root, _, lossless, _ = packed
    run = root / "run"
    if not (run / "best.keras").is_file():
        from edge_seg.train.portable import fit
        fit(lossless, run, epochs=2, batch_size=8, log=lambda m: None)
    best = json.loads((run / "state.json").read_text())["best_val_dice"]
    assert main(["score", str(lossless), str(run / "best.keras")]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(str(run / "best.keras")) and f"val_dice {best:.4f}" in line
    with pytest.raises(SystemExit) as e:
        main(["score", str(lossless), str(root / "nope.keras")])
    assert e.value.code == 2
