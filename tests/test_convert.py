"""edge-seg convert: export formats, fixed batch, XNNPACK, interpreter checks, gate, bundle.

Tiny models (32 px) built here with Keras; a synthetic labelled data set (bright discs on a
noisy dark background) written to tmp_path. Run: ``python -m pytest tests/test_convert.py -q``.
"""

import json
import os
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

keras = pytest.importorskip("keras")
pytest.importorskip("tensorflow")

from edge_seg.convert import export as E  # noqa: E402
from edge_seg.convert import verify as V  # noqa: E402
from edge_seg.convert.cli import convert as convert_cmd  # noqa: E402
from edge_seg.convert.pipeline import bundle_filename  # noqa: E402
from edge_runtime.errors import EXIT_GATE, EXIT_USAGE  # noqa: E402
from edge_runtime.formats import FORMAT_NAMES  # noqa: E402

S = 32

# Max |Keras - TFLite| on sigmoid probabilities for the tiny model below, per format.
# Measured over 3 seeds x 8 inputs (docs/CONVERT.md): fp32 <= 1.8e-7, fp16 <= 4.0e-5,
# drq <= 1.3e-3, int8 <= 6.3e-3. The bounds leave 5-50x headroom.
TOLERANCE = {"fp32": 1e-5, "fp16": 5e-4, "drq": 1e-2, "int8": 3e-2}


def tiny_unet(size=S, upsampling="nearest", batch_size=None, seed=0):
    """Conv -> pool -> conv -> UpSampling2D -> conv -> sigmoid, random weights."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((size, size, 1), batch_size=batch_size, name="scan")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="enc")(inp)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    # 3*3*8*16 = 1152 weights: DRQ/fp16 only touch weight tensors of >= 1024 elements
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="mid")(x)
    x = keras.layers.UpSampling2D(2, interpolation=upsampling, name="up")(x)
    x = keras.layers.Concatenate(name="skip")([x, inp])
    out = keras.layers.Conv2D(1, 1, activation="sigmoid", name="head")(x)
    return keras.Model(inp, out, name="tiny_unet")


def inputs(n=4, size=S, seed=1):
    """Smooth images in [0, 1] that look a little like scans (not white noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    xs = []
    for _ in range(n):
        cy, cx, r = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng.uniform(0.1, 0.25)
        img = 0.2 + 0.1 * np.sin(6 * xx + rng.uniform(0, 6)) + 0.05 * rng.random((size, size))
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2] = 0.9
        xs.append(np.clip(img, 0, 1))
    return np.stack(xs).astype(np.float32)[..., None]


@pytest.fixture(scope="module")
def tiny():
    model = tiny_unet()
    calib = inputs(16, seed=2)
    converted = {fmt: E.export_tflite(model, fmt, calibration_images=calib)
                 for fmt in FORMAT_NAMES}
    return model, converted


# ------------------------------------------------------------------ export

@pytest.mark.parametrize("fmt", FORMAT_NAMES)
def test_every_format_matches_keras_within_tolerance(tiny, fmt):
    model, converted = tiny
    x = inputs(4)
    want = np.asarray(model(x, training=False))
    got = V.run_tflite(converted[fmt], x)
    err = float(np.max(np.abs(got - want)))
    assert got.shape == want.shape == (4, S, S, 1)
    assert err <= TOLERANCE[fmt], f"{fmt}: max abs diff {err:.2e} > {TOLERANCE[fmt]:.0e}"


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
def test_converted_model_has_fixed_batch_1_float32_io(tiny, fmt):
    interp = V.litert_interpreter(tiny[1][fmt])
    for d in (interp.get_input_details()[0], interp.get_output_details()[0]):
        assert list(d["shape"]) == [1, S, S, 1]
        assert np.dtype(d["dtype"]) == np.float32     # int8 keeps float32 in and out
        assert list(d["shape_signature"]) == [1, S, S, 1]   # no dynamic batch (-1)


def test_quantised_formats_are_smaller(tiny):
    size = {f: len(b) for f, b in tiny[1].items()}
    assert size["drq"] < size["fp16"] < size["fp32"]
    assert size["int8"] < size["fp32"]


def test_unknown_spatial_size_uses_input_size():
    keras.utils.set_random_seed(0)
    inp = keras.Input((None, None, 1))
    out = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(inp)
    model = keras.Model(inp, out)
    with pytest.raises(ValueError, match="input_size"):
        E.fixed_batch_model(model)
    b = E.export_tflite(model, "fp32", input_size=24)
    assert list(V.litert_interpreter(b).get_input_details()[0]["shape"]) == [1, 24, 24, 1]


def test_fixed_batch_model_keeps_weights_and_outputs():
    model = tiny_unet(batch_size=8)          # trained at a fixed batch of 8
    fixed = E.fixed_batch_model(model, batch_size=1)
    assert tuple(fixed.inputs[0].shape) == (1, S, S, 1)
    x = inputs(1)
    np.testing.assert_allclose(np.asarray(fixed(x)), np.asarray(model.predict_on_batch(
        np.repeat(x, 8, axis=0)))[:1], atol=1e-6)


def test_int8_needs_calibration_and_unknown_format_is_refused(tiny):
    with pytest.raises(ValueError, match="calibration"):
        E.export_tflite(tiny[0], "int8")
    with pytest.raises(ValueError, match="allowed: fp32, drq, fp16, int8"):
        E.export_tflite(tiny[0], "int4")


def test_bad_calibration_shape_is_refused(tiny):
    with pytest.raises(ValueError, match="calibration images must have shape"):
        E.export_tflite(tiny[0], "int8", calibration_images=np.zeros((2, 16, 16), np.float32))


# ------------------------------------------------------------------ XNNPACK

def test_conv_only_model_is_one_xnnpack_partition():
    keras.utils.set_random_seed(0)
    inp = keras.Input((S, S, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.UpSampling2D(2, interpolation="bilinear")(x)
    out = keras.layers.Conv2D(1, 1, activation="sigmoid")(x)
    for fmt in ("fp32", "drq"):
        info = V.xnnpack_partitions(E.export_tflite(keras.Model(inp, out), fmt))
        assert info["error"] is None
        assert info["partitions"] == 1 and info["whole_graph"], info
        assert info["delegated_nodes"] == info["total_nodes"]


def test_tiny_models_with_nearest_upsampling_run_in_one_partition(tiny):
    info = V.xnnpack_partitions(tiny[1]["fp32"])
    assert info["whole_graph"] and info["partitions"] == 1, info
    assert "TILE" not in info["undelegated_ops"]


def test_delegation_summary_counts_replaced_nodes():
    def op(i, name, ins, outs):
        return {"index": i, "op_name": name, "inputs": np.array(ins), "outputs": np.array(outs)}
    ops = [op(0, "CONV_2D", [0, 9], [1]), op(1, "TILE", [1, 8], [2]),
           op(2, "CONV_2D", [2, 7], [3]), op(3, "LOGISTIC", [3], [4]),
           op(4, "DELEGATE", [0, 9], [1]), op(5, "DELEGATE", [2, 7], [4])]
    assert V.delegation_summary(ops) == (3, 4, 2, ["TILE"])


# ------------------------------------------------------------------ interpreters

def test_tflite_runtime_not_checked_without_a_python(tiny, monkeypatch):
    monkeypatch.delenv(V.TFLITE_RUNTIME_ENV, raising=False)
    rows = V.check_interpreters(tiny[1]["drq"], inputs(1))
    assert rows[0]["package"] == "ai-edge-litert" and rows[0]["status"] == "ok"
    assert rows[1] == {"package": "tflite-runtime", "version": None, "status": "not checked",
                       "detail": f"no tflite-runtime Python given (set {V.TFLITE_RUNTIME_ENV})"}
    missing = V.check_tflite_runtime(tiny[1]["drq"], inputs(1), python="/nonexistent/python")
    assert missing["status"] == "not checked"


@pytest.mark.skipif(not os.environ.get(V.TFLITE_RUNTIME_ENV),
                    reason=f"set {V.TFLITE_RUNTIME_ENV} to a numpy<2 Python with tflite-runtime")
@pytest.mark.parametrize("fmt", FORMAT_NAMES)
def test_tflite_runtime_214_loads_and_agrees(tiny, fmt):
    x = inputs(1)
    rows = V.check_interpreters(tiny[1][fmt], x, reference=V.run_tflite(tiny[1][fmt], x))
    row = rows[1]
    assert row["status"] == "ok", row
    assert row["version"].startswith("2.14")
    assert row["max_abs_diff"] <= TOLERANCE[fmt]


# ------------------------------------------------------------------ run folder, gate, bundle

def threshold_model(size=S, invert=False):
    """A 'segmenter' that marks bright pixels: blur -> sigmoid(+-20 (x - 0.5))."""
    inp = keras.Input((size, size, 1))
    x = keras.layers.AveragePooling2D(2)(inp)
    x = keras.layers.UpSampling2D(2, interpolation="bilinear")(x)
    head = keras.layers.Conv2D(1, 1, activation="sigmoid")
    out = head(x)
    sign = -1.0 if invert else 1.0
    head.set_weights([np.full((1, 1, 1, 1), 20.0 * sign, np.float32),
                      np.array([-10.0 * sign], np.float32)])
    return keras.Model(inp, out)


def write_dataset(root, n=10, size=48, seed=0):
    """images/ + masks/ folder: bright discs (the 'tumours') on a noisy dark background."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n):
        cy, cx, r = rng.integers(14, size - 14, 2).tolist() + [int(rng.integers(5, 10))]
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2
        img = rng.integers(10, 50, (size, size)).astype(np.uint8)
        img[disc] = 220
        Image.fromarray(img).save(root / "images" / f"s{i:02d}.png")
        Image.fromarray((disc * 255).astype(np.uint8)).save(root / "masks" / f"s{i:02d}.png")
    return root


@pytest.fixture
def run_dir(tmp_path):
    data = write_dataset(tmp_path / "data")
    run = tmp_path / "runs" / "toy"
    run.mkdir(parents=True)
    threshold_model().save(run / "best.keras")
    (run / "config.json").write_text(json.dumps({     # as train/trainer.py writes it
        "variant": "threshold_toy", "preset": "tiny", "data": [str(data)], "negatives": [],
        "seed": 0, "val_fraction": 0.4, "input_size": None, "epochs": 3, "patch_size": S,
        "learning_rate": 0.01, "preprocessing": {"input_size": S}}))
    (run / "state.json").write_text(json.dumps(
        {"epoch": 3, "best_val_dice": 0.9, "best_epoch": 2, "bad_epochs": 1, "finished": True}))
    return run


def invoke(*args):
    result = CliRunner().invoke(convert_cmd, [str(a) for a in args])
    return result, result.output


def error_lines(output):
    """Output lines other than progress ('convert: ...') - an error must be exactly one."""
    return [ln for ln in output.strip().splitlines() if not ln.startswith("convert: ")]


def test_cli_converts_gates_and_bundles(run_dir, tmp_path):
    out = tmp_path / "out"
    result, output = invoke(run_dir, "--format", "drq", "--format", "int8", "--out", out,
                            "--calibration-scans", "4")
    assert result.exit_code == 0, output
    assert sorted(p.name for p in out.iterdir()) == ["toy_drq.zip", "toy_int8.zip"]
    assert bundle_filename("toy", "fp16") == "toy_fp16.zip"
    with zipfile.ZipFile(out / "toy_int8.zip") as zf:
        assert sorted(zf.namelist()) == ["MODEL_CARD.md", "manifest.json", "model.tflite"]
        m = json.loads(zf.read("manifest.json"))
        card = zf.read("MODEL_CARD.md").decode()
    assert m["format"] == "int8" and m["variant"] == "threshold_toy" and m["preset"] == "tiny"
    assert m["input"] == {"shape": [1, S, S, 1], "dtype": "float32"}
    assert m["quantization"]["io_dtype"] == "float32"
    assert m["quantization"]["calibration"]["scans"] == 4
    assert m["metrics"]["gated"] and m["metrics"]["gate"]["passed"]
    assert m["metrics"]["float"]["dice"] > 0.8            # the toy model does find the discs
    assert abs(m["metrics"]["drop"]["dice"]) <= 0.01
    assert m["training"]["split_seed"] == 0 and m["training"]["val_scans"] >= 1
    assert m["interpreters_verified"][0]["status"] == "ok"
    assert m["xnnpack"]["partitions"] >= 1
    assert len(m["model_sha256"]) == 64 and m["edge_seg_version"]
    assert "Not a medical device" in card and "## Limits" in card
    recipe = f"3 epochs, {S}-px patches, lr 0.01, best epoch 2"
    assert m["training"]["recipe"] == recipe and f"- Training: {recipe}" in card


def test_bundle_round_trip(run_dir, tmp_path):
    bundle_mod = pytest.importorskip("edge_runtime.bundle")
    out = tmp_path / "out"
    result, output = invoke(run_dir, "--format", "fp32", "--out", out, "--no-gate",
                            "--threshold", "0.4", "--min-area-fraction", "0.001",
                            "--min-peak-probability", "0.7", "--name", "rt")
    assert result.exit_code == 0, output
    b = bundle_mod.load_bundle(out / "rt_fp32.zip")
    assert b.name == "rt_fp32" and b.threshold == 0.4 and b.min_area_fraction == 0.001
    assert b.min_peak_probability == 0.7 and b.manifest["schema_version"] == 2
    assert "highest probability is below 0.7" in b.model_card
    assert b.preprocessing.input_size == S
    assert b.manifest["metrics"]["gated"] is False
    x = inputs(2)
    want = np.asarray(keras.saving.load_model(run_dir / "best.keras")(x))
    np.testing.assert_allclose(V.run_tflite(b.model_bytes, x), want, atol=TOLERANCE["fp32"])


def test_gate_refuses_a_bad_conversion_and_writes_nothing(run_dir, tmp_path, monkeypatch):
    bad = E.export_tflite(threshold_model(invert=True), "drq")   # a different model
    monkeypatch.setattr(E, "export_tflite", lambda *a, **k: bad)
    out = tmp_path / "out"
    result, output = invoke(run_dir, "--format", "drq", "--out", out)
    assert result.exit_code == EXIT_GATE, output
    assert "accuracy gate refused" in output and "nothing written" in output
    assert len(error_lines(output)) == 1 and "Traceback" not in output
    assert not out.exists() or not any(out.iterdir())
    result, output = invoke(run_dir, "--format", "drq", "--out", out, "--allow-drop")
    assert result.exit_code == 0, output
    m = json.loads(zipfile.ZipFile(out / "toy_drq.zip").read("manifest.json"))
    assert m["metrics"]["gate"]["passed"] is False and m["metrics"]["drop"]["dice"] > 0.5


def test_gate_uses_the_runs_split_json(run_dir, tmp_path):
    (run_dir / "split.json").write_text(json.dumps({
        "seed": 0, "val_fraction": 0.4, "val_keys": ["s01", "s03", "s05"],
        "val_negative_keys": []}))
    out = tmp_path / "out"
    result, output = invoke(run_dir, "--format", "fp32", "--out", out)
    assert result.exit_code == 0, output
    m = json.loads(zipfile.ZipFile(out / "toy_fp32.zip").read("manifest.json"))
    assert m["metrics"]["scans"] == 3 and m["metrics"]["float"]["tumour_scans"] == 3
    assert m["training"]["val_scans"] == 3 and m["training"]["train_scans"] == 7
    assert m["training"]["val_split_from"] == "split.json"


def test_negative_max_drop_refuses_even_a_faithful_conversion(run_dir, tmp_path):
    out = tmp_path / "out"
    result, output = invoke(run_dir, "--format", "fp32", "--out", out, "--max-drop", "-0.5",
                            "--gate-scans", "2")
    assert result.exit_code == EXIT_GATE, output
    assert "on 2 validation scans" in output
    assert not out.exists() or not any(out.iterdir())


def test_bare_keras_file_with_data_folder(run_dir, tmp_path):
    keras_file = tmp_path / "model.keras"
    threshold_model().save(keras_file)
    out = tmp_path / "out"
    result, output = invoke(keras_file, "--out", out, "--data", tmp_path / "data",
                            "--gate-scans", "3")
    assert result.exit_code == 0, output
    assert (out / "model_drq.zip").is_file()


# ------------------------------------------------------------------ CLI errors

def test_cli_help_and_usage_errors(run_dir, tmp_path):
    result, output = invoke("--help")
    assert result.exit_code == 0 and "--max-drop" in output and "--allow-drop" in output
    result, output = invoke(run_dir, "--all", "--format", "drq", "--out", tmp_path / "o")
    assert result.exit_code == EXIT_USAGE and "not both" in output
    result, output = invoke(run_dir, "--format", "int4", "--out", tmp_path / "o")
    assert result.exit_code == EXIT_USAGE and "int4" in output
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    result, output = invoke(notes, "--out", tmp_path / "o")
    assert result.exit_code == EXIT_USAGE, output
    assert "Traceback" not in output
    assert len(error_lines(output)) == 1 and error_lines(output)[0].startswith("edge-seg convert:")
    empty = tmp_path / "empty_run"
    empty.mkdir()
    result, output = invoke(empty, "--out", tmp_path / "o")
    assert result.exit_code == EXIT_USAGE and "best.keras" in output


def test_cli_is_registered_lazily_and_imports_no_tensorflow():
    import subprocess
    import sys
    from edge_runtime.cli import COMMANDS
    assert COMMANDS["convert"][0] == "edge_seg.convert.cli:convert"
    code = ("import sys, convert.cli, convert.export, convert.verify, convert.gate, "
            "convert.pipeline, convert.source; "
            "sys.exit(any(m in sys.modules for m in ('tensorflow', 'keras')))")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# ------------------------------------------------------------------ the project's models

def test_project_tiny_model_converts_at_batch_1():
    models = pytest.importorskip("edge_seg.train.models")
    model = models.build_model("resunet_ag", "tiny")
    size = model.inputs[0].shape[1] or 64
    b = E.export_tflite(model, "drq", input_size=size)
    interp = V.litert_interpreter(b)
    assert list(interp.get_input_details()[0]["shape"]) == [1, size, size, 1]
    x = inputs(1, size=size)
    err = np.max(np.abs(V.run_tflite(b, x) - np.asarray(model(x, training=False))))
    assert err <= TOLERANCE["drq"]


@pytest.mark.slow
def test_paper_preset_sizes():
    """The paper's size (Res-UNet + AG, base 64, ~32M params): ~131 MB fp32, ~33 MB DRQ.

    Sizes follow the parameter count: fp32 stores 4 bytes per weight, DRQ ~1 (int8 weights,
    float32 biases and batch-norm folding). The project's decoder (UpSampling2D + conv, no
    Conv2DTranspose) has ~31.4M params, the platform notes' Conv2DTranspose build 32.8M.
    """
    try:
        from edge_seg.train.models import build_model
    except ImportError as exc:
        pytest.skip(f"train.models not available ({exc})")
    model = build_model("resunet_ag", "paper")
    params = model.count_params()
    assert 30e6 < params < 34e6, params
    fp32 = E.export_tflite(model, "fp32")
    drq = E.export_tflite(model, "drq")
    print(f"paper preset: {params / 1e6:.2f}M params, fp32 {len(fp32) / 1e6:.1f} MB, "
          f"drq {len(drq) / 1e6:.1f} MB")
    assert 3.9 * params < len(fp32) < 4.1 * params, len(fp32)
    assert 120e6 < len(fp32) < 137e6, len(fp32)
    assert 0.95 * params < len(drq) < 1.1 * params, len(drq)
    assert 30e6 < len(drq) < 35e6, len(drq)


def test_nearest_upsampling_is_exported_into_one_xnnpack_partition():
    """Keras' nearest UpSampling2D becomes TILE (not delegated); export swaps in an exact
    DEPTH_TO_SPACE equivalent so the whole graph runs in XNNPACK."""
    keras = pytest.importorskip("keras")
    from edge_seg.convert.export import export_tflite
    from edge_seg.convert.verify import xnnpack_partitions
    from edge_runtime.interpreter import make_interpreter, run_model

    inp = keras.Input((None, None, 1))
    x = keras.layers.Conv2D(4, 3, padding="same")(inp)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.UpSampling2D(2, interpolation="nearest")(x)
    out = keras.layers.Conv2D(1, 1, activation="sigmoid")(x)
    model = keras.Model(inp, out)
    blob = export_tflite(model, "fp32", input_size=32)
    info = xnnpack_partitions(blob)
    assert info["whole_graph"] and info["partitions"] == 1, info
    x = np.random.default_rng(0).random((1, 32, 32, 1)).astype(np.float32)
    got = run_model(make_interpreter(blob), x)
    np.testing.assert_allclose(got.reshape(32, 32), model.predict(x, verbose=0).reshape(32, 32),
                               atol=1e-5)


def test_int8_lowers_a_peak_gate_it_cannot_reach_and_records_it(run_dir, tmp_path):
    """The int8 sigmoid tops out at 255/256 = 0.99609375: a 0.998 gate chosen on the float
    model would make the int8 bundle say 'no tumour' everywhere. The converter lowers it to
    the top code for int8 only, records it, and the gate scores the lowered setting."""
    bundle_mod = pytest.importorskip("edge_runtime.bundle")
    out = tmp_path / "out"
    result, output = invoke(run_dir, "--format", "drq", "--format", "int8", "--out", out,
                            "--calibration-scans", "4", "--min-peak-probability", "0.998")
    assert result.exit_code == 0, output
    assert "int8: min_peak_probability 0.998 -> 0.99609375" in output
    drq = bundle_mod.load_bundle(out / "toy_drq.zip")
    int8 = bundle_mod.load_bundle(out / "toy_int8.zip")
    assert drq.min_peak_probability == 0.998 and "setting_capped" not in drq.manifest
    assert int8.min_peak_probability == 255 / 256
    capped = int8.manifest["setting_capped"]
    assert capped["min_peak_probability"] == {"asked": 0.998, "used": 255 / 256}
    assert "largest probability this model can output" in capped["reason"]
    assert "Setting lowered for this format" in int8.model_card
    gate = int8.manifest["metrics"]
    assert gate["gate"]["passed"] and gate["converted"]["dice"] > 0.8   # it still finds discs
