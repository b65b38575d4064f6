"""lite0_unet: the EfficientNet-Lite0 U-Net in the registry, its npz loader, one training step
through ``edge-seg train`` and ``edge-seg convert`` to bundles the runtime runs.

Synthetic weights files (the right keys and shapes, random values) keep these tests independent
of ../shared/weights; the ImageNet port check on real photographs is marked ``lab``
(``python -m pytest --lab -m lab tests/test_lite0.py``), needs the real weights
($EDGE_SEG_WEIGHTS or ../shared/weights next to the repository) and scikit-image.
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

keras = pytest.importorskip("keras")
pytest.importorskip("tensorflow")

from edge_seg.train.models import build_model  # noqa: E402
from edge_seg.train.models.efficientnet_lite import (  # noqa: E402
    lite0_classifier, lite0_key_shapes, load_lite0_weights, stage_blocks)
from edge_seg.train.models.registry import describe, model_config  # noqa: E402

WEIGHTS_NAME = "efficientnet_lite0_imagenet.npz"


def fake_weights(path, seed=0, drop=(), reshape=None, extra=None):
    """An npz with every EfficientNet-Lite0 key at its shape (random values), minus ``drop``,
    one key given a wrong shape (``reshape={key: shape}``) or an ``extra`` key added."""
    rng = np.random.default_rng(seed)
    arrays = {k: rng.normal(0, 0.1, shape).astype(np.float32)
              for k, shape in lite0_key_shapes().items() if k not in drop}
    for k in [k for k in arrays if k.endswith("running_var")]:
        arrays[k] = np.abs(arrays[k]) + 0.5
    for k, shape in (reshape or {}).items():
        arrays[k] = np.zeros(shape, np.float32)
    arrays.update(extra or {})
    np.savez(path, **arrays)
    return path


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return fake_weights(tmp_path_factory.mktemp("w") / "lite0.npz")


# ------------------------------------------------------------------ registry
def test_registry_builds_the_variant_with_its_own_presets():
    model = build_model("lite0_unet", "tiny", input_size=32)
    names = {layer.name for layer in model.layers}
    assert {"to_lite0_range", "stem_conv", "block4_project_bn", "dec2_concat",
            "head_sigmoid"} <= names
    assert "block5_dw_conv" not in names                     # trimmed after stage 3
    assert model.output_shape == (None, 32, 32, 1)
    kinds = {type(layer).__name__ for layer in model.layers}
    assert "Conv2DTranspose" not in kinds and "Dense" not in kinds
    assert set(describe()["presets"]["lite0"]) >= {"edge", "tiny"}
    assert "lite0_unet" in describe()["families"]["lite0"]
    edge = build_model("lite0_unet", "edge")
    assert edge.output_shape == (None, 256, 256, 1) and 0.5e6 < edge.count_params() < 1.5e6


def test_registry_refuses_what_the_family_does_not_take():
    with pytest.raises(ValueError, match=r"unknown preset 'paper'; allowed: edge, .* "
                                         r"\(the presets of lite0_unet\)"):
        model_config("lite0_unet", "paper")
    with pytest.raises(ValueError, match="does not take base_filters=16; allowed:"):
        model_config("lite0_unet", "edge", base_filters=16)
    with pytest.raises(ValueError, match="does not take encoder_weights="):
        model_config("resunet_se", "edge", encoder_weights="w.npz")
    assert model_config("lite0_unet", "edge", base_filters=None, depth=None)["stop_after"] == 5
    with pytest.raises(ValueError, match="divisible by the encoder's stride 8"):
        build_model("lite0_unet", "tiny", input_size=36)


def test_each_family_says_whether_training_uses_xla():
    from edge_seg.train.models.registry import default_jit_compile
    assert default_jit_compile("lite0_unet") is False     # ~8x slower with XLA on CPU
    assert all(default_jit_compile(v) is True
               for v in ("unet", "resunet", "resunet_ag", "resunet_se", "resunet_cbam"))
    with pytest.raises(ValueError, match="unknown variant 'lite0'"):
        default_jit_compile("lite0")


def test_the_scan_range_is_mapped_inside_the_model():
    model = build_model("lite0_unet", "tiny", input_size=32)
    rescale = model.get_layer("to_lite0_range")
    out = np.asarray(rescale(np.array([[[[0.0]], [[0.5]], [[1.0]]]], np.float32)))
    np.testing.assert_allclose(out.ravel(), [-1.0, 0.0, 1.0])     # (255x - 127.5) / 127.5


# ------------------------------------------------------------------ loader
def test_loader_maps_every_key_of_a_trimmed_encoder(weights):
    model = build_model("lite0_unet", "tiny", input_size=32)
    result = load_lite0_weights(model, weights)
    blocks = stage_blocks(1) + stage_blocks(2) + stage_blocks(3)
    assert len(result["loaded"]) + len(result["skipped"]) == len(lite0_key_shapes())
    assert all(k.startswith(("_conv_stem", "_bn0", "_blocks")) for k in result["loaded"])
    assert {int(k.split(".")[1]) for k in result["loaded"] if k.startswith("_blocks")} \
        == set(blocks)
    npz = np.load(weights)
    dw = model.get_layer("block3_dw_conv").get_weights()[0]
    np.testing.assert_array_equal(dw, np.transpose(npz["_blocks.3._depthwise_conv.weight"],
                                                   (2, 3, 0, 1)))
    gamma, beta, mean, var = model.get_layer("block3_project_bn").get_weights()
    np.testing.assert_array_equal(var, npz["_blocks.3._bn2.running_var"])
    stem = model.get_layer("stem_conv").get_weights()[0]          # 1 channel: summed over RGB
    np.testing.assert_allclose(stem[:, :, 0, :], np.transpose(
        npz["_conv_stem.weight"], (2, 3, 1, 0)).sum(axis=2), rtol=1e-6)


def test_full_classifier_uses_every_key(weights):
    result = load_lite0_weights(lite0_classifier(input_size=32), weights)
    assert len(result["loaded"]) == len(lite0_key_shapes()) and not result["skipped"]


@pytest.mark.parametrize("corruption, message", [
    (dict(drop=("_blocks.2._bn1.running_var",)),
     r"missing key '_blocks\.2\._bn1\.running_var' for layer 'block2_dw_bn'"),
    (dict(reshape={"_blocks.4._project_conv.weight": (40, 100, 1, 1)}),
     r"key '_blocks\.4\._project_conv\.weight' has shape \(40, 100, 1, 1\).*expects "
     r"\(1, 1, 240, 40\)"),
    (dict(extra={"_blocks.16._bn0.weight": np.zeros(3, np.float32)}),
     r"unknown key '_blocks\.16\._bn0\.weight'.*allowed: the 247 EfficientNet-Lite0 keys"),
    (dict(reshape={"_conv_stem.weight": (32, 2, 3, 3)}),
     r"key '_conv_stem\.weight'.*allowed: 3, or 1"),
])
def test_loader_refuses_a_corrupted_file_in_one_line(tmp_path, corruption, message):
    path = fake_weights(tmp_path / "bad.npz", **corruption)
    model = build_model("lite0_unet", "tiny", input_size=32)
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match=message) as err:
        load_lite0_weights(model, path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_loader_refuses_a_file_that_is_not_an_npz(tmp_path):
    bad = tmp_path / "weights.npz"
    bad.write_text("not a zip")
    model = build_model("lite0_unet", "tiny", input_size=32)
    with pytest.raises(ValueError, match="not a readable .npz"):
        load_lite0_weights(model, bad)
    with pytest.raises(FileNotFoundError, match="encoder weights file not found"):
        load_lite0_weights(model, tmp_path / "absent.npz")


# ------------------------------------------------------------------ export
def test_drq_keeps_depthwise_kernels_float_and_stays_close_to_keras(weights):
    from edge_runtime.interpreter import make_interpreter, run_model
    from edge_seg.convert.export import export_tflite, float_depthwise_kernels
    from edge_seg.convert.verify import xnnpack_partitions

    model = build_model("lite0_unet", "tiny", input_size=64, encoder_weights=weights)
    blob = export_tflite(model, "drq")
    assert float_depthwise_kernels(blob) == (blob, 0)            # already done by the export
    assert xnnpack_partitions(blob)["whole_graph"]
    x = np.random.default_rng(0).random((2, 64, 64, 1)).astype(np.float32)
    interpreter = make_interpreter(blob, threads=1)
    got = np.concatenate([run_model(interpreter, x[i:i + 1]) for i in range(2)])
    want = model.predict(x, verbose=0)
    assert np.abs(got.reshape(want.shape) - want).max() < 1e-2   # test_convert's DRQ bound


def test_a_network_without_depthwise_layers_converts_to_the_same_bytes():
    from edge_seg.convert.export import export_tflite, float_depthwise_kernels
    blob = export_tflite(build_model("resunet", "tiny", input_size=32), "drq")
    assert float_depthwise_kernels(blob)[1] == 0 and float_depthwise_kernels(blob)[0] is blob


# ------------------------------------------------------------------ train + convert + run
def write_scans(root, n=8, size=64, seed=0):
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n):
        cy, cx = rng.integers(20, size - 20, 2)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < int(rng.integers(6, 12)) ** 2
        img = rng.integers(10, 60, (size, size)).astype(np.uint8)
        img[disc] = 220
        Image.fromarray(img).save(root / "images" / f"s{i:02d}.png")
        Image.fromarray((disc * 255).astype(np.uint8)).save(root / "masks" / f"s{i:02d}.png")
    return root


def test_train_one_step_convert_and_run(tmp_path, weights, monkeypatch):
    from edge_runtime.bundle import load_bundle
    from edge_runtime.cli import main as cli
    from edge_runtime.segment import Segmenter
    from edge_runtime.trust import trust_bundle

    monkeypatch.setenv("EDGE_SEG_CACHE", str(tmp_path / "cache"))
    data = write_scans(tmp_path / "data")
    run = tmp_path / "run"
    runner = CliRunner()
    result = runner.invoke(cli, ["train", "--variant", "lite0_unet", "--preset", "tiny",
                                 "--data", str(data), "--out", str(run), "--epochs", "1",
                                 "--batch-size", "4", "--patch-size", "32",
                                 "--val-fraction", "0.25", "--encoder-weights", str(weights)])
    assert result.exit_code == 0, result.output
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["jit_compile"] is False   # the lite0 family's default, recorded as used
    assert cfg["variant"] == "lite0_unet" and cfg["encoder_weights"] == str(weights)
    assert len(cfg["encoder_weights_sha256"]) == 64
    best = keras.models.load_model(run / "best.keras")
    assert best.get_layer("stem_conv").get_weights()[0].shape == (3, 3, 1, 32)

    out = tmp_path / "bundles"
    result = runner.invoke(cli, ["convert", str(run), "--format", "drq", "--format", "fp16",
                                 "--format", "int8", "--calibration-scans", "4", "--no-gate",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    scan = np.asarray(Image.open(data / "images" / "s00.png"))
    for fmt in ("drq", "fp16", "int8"):
        path = out / f"run_{fmt}.zip"
        bundle = load_bundle(path)
        assert bundle.manifest["variant"] == "lite0_unet"
        if fmt != "int8":
            assert bundle.manifest["xnnpack"]["whole_graph"], bundle.manifest["xnnpack"]
        trust_bundle(path)
        prob = Segmenter(bundle, threads=1).predict(scan)
        assert prob.shape == scan.shape and 0.0 <= prob.min() and prob.max() <= 1.0


def test_train_refuses_encoder_weights_for_a_res_unet(tmp_path, weights):
    from edge_runtime.cli import main as cli
    data = write_scans(tmp_path / "data", n=2)
    result = CliRunner().invoke(cli, ["train", "--variant", "resunet_se", "--data", str(data),
                                      "--out", str(tmp_path / "r"), "--encoder-weights",
                                      str(weights)])
    assert result.exit_code != 0
    assert "resunet_se (unet family) does not take encoder_weights" in result.output
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------ port check (lab)
def imagenet_weights():
    """$EDGE_SEG_WEIGHTS (a folder) or ../shared/weights next to the repository."""
    folder = os.environ.get("EDGE_SEG_WEIGHTS") or Path(__file__).resolve().parents[2] / \
        "shared" / "weights"
    return Path(folder) / WEIGHTS_NAME


@pytest.mark.lab
@pytest.mark.parametrize("photo, label, floor", [("chelsea", 285, 0.7), ("coffee", 967, 0.8)])
def test_imagenet_port_classifies_the_sample_photographs(photo, label, floor):
    """The port against the published model's predictions: Egyptian cat ~0.77, espresso ~0.90
    (../shared/weights/README.md)."""
    path = imagenet_weights()
    if not path.is_file():
        pytest.skip(f"{path}: no EfficientNet-Lite0 weights (set EDGE_SEG_WEIGHTS to their "
                    f"folder)")
    data = pytest.importorskip("skimage.data", reason="pip install scikit-image")
    model = lite0_classifier()
    assert not load_lite0_weights(model, path)["skipped"]
    image = Image.fromarray(getattr(data, photo)()).resize((224, 224), Image.BILINEAR)
    p = model.predict(np.asarray(image, np.float32)[None], verbose=0)[0]
    assert int(np.argmax(p)) == label and p[label] >= floor, (photo, np.argsort(p)[-3:])
