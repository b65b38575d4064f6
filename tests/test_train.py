"""Training side: models, registry, split, data pipeline, losses, resume (tiny synthetic data)."""

import json
from collections import Counter

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from edge_runtime.datasets import Sample, split_by_family  # noqa: E402
from edge_seg.train.data import make_dataset  # noqa: E402
from edge_seg.train.losses import (LOSSES, dice_bce_loss, dice_loss, scan_dice_bce_loss,  # noqa: E402
                          scan_dice_loss)
from edge_seg.train.models import VARIANTS, build_model  # noqa: E402
from edge_seg.train.models.registry import model_config  # noqa: E402


def discs(n, size=64, seed=0):
    """Synthetic scans: noisy background with bright discs/ellipses; the mask is the shape."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    imgs = rng.random((n, size, size)).astype(np.float32) * 0.3
    masks = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        cy, cx = rng.integers(size // 4, 3 * size // 4, 2)
        ry, rx = rng.integers(size // 10, size // 5, 2)
        m = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        imgs[i][m] += 0.6
        masks[i][m] = 1
    return np.clip(imgs, 0, 1), masks


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_variant_builds_and_its_loss_falls(variant):
    keras.utils.set_random_seed(0)
    model = build_model(variant, "tiny", input_size=32, dynamic_size=True)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=dice_bce_loss)
    x, y = discs(8, 32)
    # Training-mode loss per step (inference-mode BatchNorm statistics need many more steps).
    hist = model.fit(x[..., None], y[..., None], epochs=10, batch_size=8, verbose=0)
    losses = hist.history["loss"]
    assert min(losses[-3:]) < losses[0], (variant, losses)
    # Same weights run at another size (fully convolutional) and the output is a probability.
    out = model.predict(np.zeros((1, 64, 64, 1), np.float32), verbose=0)
    assert out.shape == (1, 64, 64, 1) and 0.0 <= out.min() and out.max() <= 1.0


def test_layers_are_named_after_their_blocks():
    model = build_model("resunet_ag", "tiny")
    names = {layer.name for layer in model.layers}
    assert {"enc0_1_conv", "ag0_psi", "bottleneck_add", "dec0_concat", "head_sigmoid"} <= names
    model = build_model("resunet_cbam", "tiny")
    assert any(n.endswith("_cbam_spatial_gate") for n in (layer.name for layer in model.layers))


def test_no_layer_that_breaks_tflite_runtime_2_14():
    for variant in VARIANTS:
        kinds = {type(layer).__name__ for layer in build_model(variant, "tiny").layers}
        assert "Conv2DTranspose" not in kinds and "Dense" not in kinds, variant


def test_paper_preset_matches_the_paper_size():
    params = build_model("resunet_ag", "paper").count_params()
    assert 30e6 <= params <= 34e6, params


def test_config_round_trip_with_custom_layers(tmp_path):
    model = build_model("resunet_cbam", "tiny")
    path = tmp_path / "m.keras"
    model.save(path)
    again = keras.models.load_model(path)
    x = np.random.default_rng(0).random((1, 64, 64, 1)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x, verbose=0), again.predict(x, verbose=0),
                               atol=1e-6)


def test_unknown_names_are_refused_with_a_suggestion():
    with pytest.raises(ValueError, match="did you mean 'resunet_ag'"):
        model_config("resunet_agg", "edge")
    with pytest.raises(ValueError, match="allowed: paper"):
        model_config("resunet", "huge")
    with pytest.raises(ValueError, match="divisible"):
        build_model("resunet", "tiny", input_size=30)


def _samples():
    out = []
    for fam in range(30):
        label = fam % 3 + 1
        for k in range(1 + fam % 5):
            out.append(Sample(key=f"{fam}_{k}", image=f"{fam}_{k}.png", mask="m.png",
                              label=label, label_name=str(label), patient=f"p{fam}{'AB'[k % 2]}",
                              family=f"f{fam}"))
    return out


def test_split_keeps_families_together_is_deterministic_and_stratified():
    samples = _samples()
    train, val = split_by_family(samples, 0.25, seed=3)
    assert not {s.family for s in train} & {s.family for s in val}
    assert len(train) + len(val) == len(samples)
    assert split_by_family(samples, 0.25, seed=3) == (train, val)
    assert set(Counter(s.label for s in val)) == {1, 2, 3}
    assert split_by_family(samples, 0.25, seed=4)[1] != val


def test_patch_pipeline_is_deterministic_and_oversamples_tumour():
    x, y = discs(16, 64)
    epoch_dataset, steps = make_dataset(x, y, 32, 4, seed=1, tumour_centred=1.0)
    a = [b[0].numpy() for b in epoch_dataset(2)]
    b = [b[0].numpy() for b in epoch_dataset(2)]
    assert len(a) == steps == 4 and all(np.array_equal(p, q) for p, q in zip(a, b))
    masks = np.concatenate([m.numpy() for _, m in epoch_dataset(0)])
    assert masks.shape == (16, 32, 32, 1)
    assert (masks.reshape(16, -1).max(axis=1) > 0).mean() >= 0.9  # tumour-centred patches
    assert not np.array_equal(a[0], next(iter(epoch_dataset(3)))[0].numpy())


def test_losses_match_hand_computed_values():
    y = np.array([[1, 1, 0, 0]], np.float32)
    p = np.array([[0.5, 1.0, 0.5, 0.0]], np.float32)
    inter, total = 0.5 + 1.0, 2 + 2.0
    expected = 1 - (2 * inter + 1) / (total + 1)
    assert float(dice_loss(y, p)) == pytest.approx(expected, abs=1e-6)
    eps = 1e-7
    pc = np.clip(p, eps, 1 - eps)
    bce = -np.mean(y * np.log(pc) + (1 - y) * np.log(1 - pc))
    assert float(dice_bce_loss(y, p)) == pytest.approx(expected + bce, abs=1e-4)


def test_scan_dice_counts_every_tumour_alike_and_skips_empty_samples():
    y = np.zeros((3, 8, 8, 1), np.float32)
    y[0, :6, :6] = 1          # a large tumour, found exactly
    y[1, 0, 0] = 1            # a one-pixel tumour, missed
    p = y.copy()
    p[1] = 0                  # (sample 2 has no tumour and predicts none)
    # per sample: 0 and 1 - (0 + 1) / (1 + 0 + 1) = 0.5; the empty sample is left out
    assert float(scan_dice_loss(y, p)) == pytest.approx(0.25, abs=1e-6)
    # the batch-pooled Dice hardly sees the missed tumour
    assert float(dice_loss(y, p)) < 0.02
    # a batch without any tumour has no Dice term: only cross-entropy teaches it
    empty = np.zeros_like(y)
    assert float(scan_dice_loss(empty, np.full_like(y, 0.3))) == 0.0
    assert float(scan_dice_bce_loss(empty, np.full_like(y, 0.3))) == pytest.approx(
        -np.log(0.7), abs=1e-4)


def test_train_cli_offers_exactly_the_registered_losses():
    from edge_seg.train.cli import train as train_cmd
    opt = next(o for o in train_cmd.params if o.name == "loss")
    assert set(opt.type.choices) == set(LOSSES)
    assert opt.default in LOSSES


def _write_synthetic(root, n=12, size=64):
    from PIL import Image
    x, y = discs(n, size, seed=5)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        Image.fromarray((x[i] * 255).astype(np.uint8)).save(root / "images" / f"s{i}.png")
        Image.fromarray(y[i] * 255).save(root / "masks" / f"s{i}.png")


def test_train_learns_discs_and_resume_continues_from_the_saved_epoch(tmp_path, monkeypatch):
    from edge_seg.train.trainer import TrainConfig, train

    monkeypatch.setenv("EDGE_SEG_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "data"
    _write_synthetic(data, n=40)
    cfg = TrainConfig(variant="resunet", preset="tiny", data=[str(data)], epochs=14,
                      batch_size=8, patch_size=32, learning_rate=1e-2, warmup_epochs=1,
                      patience=100, jit_compile=False)
    run = tmp_path / "run"
    state = train(cfg, run, log=lambda m: None, max_epochs_this_call=12)
    assert state["epoch"] == 12 and not state["finished"]
    rows = (run / "log.csv").read_text().splitlines()
    assert len(rows) == 13
    assert state["best_val_dice"] >= 0.7, state  # synthetic discs are easy
    split = json.loads((run / "split.json").read_text())
    assert not set(split["train_families"]) & set(split["val_families"])
    with pytest.raises(FileExistsError):
        train(cfg, run, log=lambda m: None)
    state = train(cfg, run, resume=True, log=lambda m: None)
    assert state["epoch"] == 14 and state["finished"]
    assert [r.split(",")[0] for r in (run / "log.csv").read_text().splitlines()[1:]] == \
        [str(e) for e in range(1, 15)]
    assert (run / "best.keras").is_file() and (run / "last.keras").is_file()

    # The final report scores a post-processing grid from one model pass, picks a setting
    # and scores that setting in full; the pick is one of the grid's points, same numbers.
    from edge_seg.train.report import final_report
    rep = final_report(run, thresholds=(0.5,), min_area_fractions=(0.0, 0.01),
                       min_peak_probabilities=(0.0, 0.9), log=lambda m: None)
    assert len(rep["sweep"]) == 4 and rep["dice_mean"] >= 0.6
    picked = [p for p in rep["sweep"] if (p["threshold"], p["min_area_fraction"],
                                          p["min_peak_probability"]) ==
              (rep["threshold"], rep["min_area_fraction"], rep["min_peak_probability"])]
    assert len(picked) == 1 and picked[0]["dice_mean"] == pytest.approx(rep["dice_mean"])
    saved = json.loads((run / "report.json").read_text())
    assert saved["min_peak_probability"] == rep["min_peak_probability"]
    assert saved["fp_limit_met"] is True   # no tumour-free scans here: nothing to exceed
    assert saved["summary"]["by_class"] and (run / "val_scans.csv").is_file()
    assert saved["summary"]["by_patient"]["n_patients"] >= 1
    # The command prints the same, with the interval over validation patients.
    from click.testing import CliRunner

    from edge_runtime.cli import main as cli_main
    out = CliRunner().invoke(cli_main, ["train", "--out", str(run), "--report"])
    assert out.exit_code == 0, out.output
    assert f"Dice {json.loads((run / 'report.json').read_text())['dice_mean']:.4f}" in \
        out.output and "95 % over patients" in out.output

    # Fine-tuning starts from the given weights: with a vanishing learning rate the first
    # epoch scores what the source model scored (a fresh model would score near 0).
    best = json.loads((run / "state.json").read_text())["best_val_dice"]
    ft_cfg = TrainConfig(**dict(vars(cfg), epochs=1, learning_rate=1e-12, warmup_epochs=0,
                                init_from=str(run / "best.keras")))
    ft = train(ft_cfg, tmp_path / "ft", log=lambda m: None)
    assert ft["best_val_dice"] == pytest.approx(best, abs=0.02), (ft, best)
    assert json.loads((tmp_path / "ft" / "config.json").read_text())["init_from"] == \
        str(run / "best.keras")


def test_report_choice_respects_the_false_positive_limit():
    from edge_seg.train.report import choose
    sweep = [{"threshold": 0.5, "min_area_fraction": a, "dice_mean": d, "fp_scan_rate": f}
             for a, d, f in [(0.0, 0.80, 0.20), (0.001, 0.79, 0.06), (0.002, 0.78, 0.04),
                             (0.003, 0.75, 0.01)]]
    assert choose(sweep, 0.05)["min_area_fraction"] == 0.002
    assert choose(sweep, 0.005)["min_area_fraction"] == 0.003      # none qualifies: fewest FP
    no_negatives = [dict(s, fp_scan_rate=float("nan")) for s in sweep]
    assert choose(no_negatives, 0.05)["min_area_fraction"] == 0.0


def test_report_choice_does_not_buy_false_alarms_with_a_dice_tie():
    """A Dice within DICE_TIE of the best is a tie, settled by fewer tumour-free scans flagged:
    the recovered shipped model chose 14 flags over 8 for +0.0006 Dice without this."""
    from edge_seg.train.report import DICE_TIE, choose
    sweep = [{"threshold": 0.5, "min_area_fraction": a, "min_peak_probability": p,
              "dice_mean": d, "fp_scan_rate": f}
             for a, p, d, f in [(0.0005, 0.95, 0.7557, 14 / 282), (0.001, 0.98, 0.7551, 8 / 282),
                                (0.001, 0.99, 0.7552, 8 / 282), (0.006, 0.99, 0.7400, 2 / 282)]]
    assert DICE_TIE == 0.001
    got = choose(sweep, 0.05)
    assert (got["min_area_fraction"], got["min_peak_probability"]) == (0.001, 0.99)
    assert choose(sweep, 0.05, dice_tie=0.0)["fp_scan_rate"] == 14 / 282   # the old rule
