"""python -m edge_seg.convert.recover: a trainable network back from a bundle.

Tiny registry networks (32 px) with random batch-norm statistics, so that folding them into
the convolutions changes every kernel; converted to each format, recovered, and compared
with the network they came from. Run: ``python -m pytest tests/test_recover.py -q``.
"""

import json

import numpy as np
import pytest

keras = pytest.importorskip("keras")
pytest.importorskip("tensorflow")

from edge_seg.convert import export as E  # noqa: E402
from edge_seg.convert import recover as R  # noqa: E402
from edge_runtime.bundle import make_manifest, write_bundle  # noqa: E402
from edge_runtime.preprocess import Preprocessing  # noqa: E402
from test_convert import TOLERANCE, inputs, write_dataset  # noqa: E402
from edge_seg.train.models import build_model  # noqa: E402

S = 32


def trained_looking(variant, seed=0):
    """A tiny network whose batch norms hold statistics far from the identity."""
    keras.utils.set_random_seed(seed)
    model = build_model(variant, "tiny", input_size=S, dynamic_size=True)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(0, 0.2, n),
                               rng.normal(0, 0.1, n), rng.uniform(0.5, 2.0, n)])
    return model


def bundle_of(model, variant, fmt, tmp_path, preset="tiny"):
    data = E.export_tflite(model, fmt, calibration_images=inputs(8, seed=3), input_size=S)
    manifest = make_manifest(f"t_{fmt}", fmt, Preprocessing(input_size=S), variant=variant,
                             preset=preset)
    return write_bundle(tmp_path / f"{variant}_{fmt}.zip", data, manifest, "# t\n")


def recovered(path, images):
    from edge_runtime.bundle import load_bundle
    return R.recover_model(load_bundle(path), images)


@pytest.mark.parametrize("variant", ["resunet_se", "resunet_ag", "resunet_cbam"])
def test_fp32_bundle_gives_back_the_same_network(variant, tmp_path):
    model = trained_looking(variant)
    x = inputs(6, size=S)
    back, check = recovered(bundle_of(model, variant, "fp32", tmp_path), x)
    np.testing.assert_allclose(np.asarray(back(x)), np.asarray(model(x)), atol=1e-4)
    assert check["scans"] == 6 and check["mean_abs_prob_diff"] < 1e-5
    # every kernel differs from the original (batch norm folded in) but the function does not
    assert not np.allclose(back.get_layer("enc0_1_conv").kernel,
                           model.get_layer("enc0_1_conv").kernel)


@pytest.mark.parametrize("fmt", ["drq", "fp16", "int8"])
def test_quantised_bundles_recover_within_the_formats_tolerance(fmt, tmp_path):
    model = trained_looking("resunet_se", seed=1)
    x = inputs(6, size=S)
    back, check = recovered(bundle_of(model, "resunet_se", fmt, tmp_path), x)
    # the conversion's own error, plus rounding the recovered float weights do differently
    np.testing.assert_allclose(np.asarray(back(x)), np.asarray(model(x)),
                               atol=2 * TOLERANCE[fmt])
    assert check["mean_abs_prob_diff"] <= TOLERANCE[fmt]


def test_batch_norms_are_calibrated_for_training(tmp_path):
    """In training mode a batch norm uses the batch's statistics: on the calibration batch
    itself those are the ones recovery measured, so the output does not move."""
    model = trained_looking("resunet_se", seed=2)
    x = inputs(8, size=S)
    back, _check = recovered(bundle_of(model, "resunet_se", "fp32", tmp_path), x)
    np.testing.assert_allclose(np.asarray(back(x, training=True)), np.asarray(back(x)),
                               atol=2e-3)
    bn = back.get_layer("enc0_1_bn")
    assert not np.allclose(bn.moving_variance, 1.0)   # measured, not left at the identity
    # without calibration (identity statistics) training mode would be another function
    from edge_runtime.bundle import load_bundle
    folded = R.put_back(back, R.bundle_convolutions(
        load_bundle(tmp_path / "resunet_se_fp32.zip").model_bytes))
    assert folded and np.abs(np.asarray(back(x, training=True)) - np.asarray(back(x))).max() > 0.01


@pytest.mark.parametrize("variant,preset", [("resunet_ag", "tiny"), ("resunet_se", "edge")])
def test_a_manifest_that_does_not_match_the_weights_is_refused(variant, preset, tmp_path):
    model = trained_looking("resunet_se")
    path = bundle_of(model, variant, "fp32", tmp_path, preset=preset)
    with pytest.raises(R.RecoverError, match="another variant or preset") as err:
        recovered(path, inputs(2, size=S))
    assert "\n" not in str(err.value)


def test_recover_writes_a_run_folder_and_never_overwrites(tmp_path, capsys):
    data = write_dataset(tmp_path / "data", n=10, size=48)
    path = bundle_of(trained_looking("resunet_se"), "resunet_se", "drq", tmp_path)
    out = tmp_path / "runs" / "back"
    assert R.main([str(path), "--data", str(data), "--out", str(out),
                   "--calibration-scans", "4"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["next"] == f"edge-seg train --out {out} --report"
    assert sorted(p.name for p in out.iterdir()) == ["best.keras", "config.json", "state.json"]
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["variant"], cfg["preset"], cfg["seed"]) == ("resunet_se", "tiny", 0)
    assert cfg["data"] == [str(data)] and cfg["preprocessing"]["input_size"] == S
    assert cfg["recovered"]["format"] == "drq" and 1 <= cfg["recovered"]["scans"] <= 4
    assert cfg["recovered"]["model_sha256"] and cfg["recovered"]["mean_abs_prob_diff"] < 0.01
    back = keras.models.load_model(out / "best.keras", compile=False)
    x = inputs(2, size=64)           # trainable at any size, as edge-seg train needs
    assert back(x).shape == (2, 64, 64, 1)

    before = (out / "config.json").read_bytes()
    assert R.main([str(path), "--data", str(data), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "Traceback" not in err
    assert (out / "config.json").read_bytes() == before


def test_a_refused_recovery_leaves_nothing_behind(tmp_path, capsys):
    data = write_dataset(tmp_path / "data", n=6, size=48)
    path = bundle_of(trained_looking("resunet_se"), "resunet_ag", "fp32", tmp_path)
    runs = tmp_path / "runs"
    assert R.main([str(path), "--data", str(data), "--out", str(runs / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("recover: the bundle has") and "another variant" in err[-1]
    assert not any("Traceback" in line for line in err)
    assert not any(runs.iterdir())                      # no folder, no staging left
