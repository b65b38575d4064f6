"""Keras model -> TFLite flatbuffer, one row of ``edge_runtime.formats.FORMATS`` at a time.

Every export is at a **fixed batch of 1**: the model is rebuilt from its Keras config with the
input's batch dimension set to 1 (and unknown spatial dimensions set to ``input_size``) and the
weights are copied over. With a dynamic batch the converter adds SHAPE/STRIDED_SLICE/PACK ops,
XNNPACK splits the graph and the model runs ~3x slower (docs/CONVERT.md, platform notes).
DRQ keeps depthwise kernels in float32 (``float_depthwise_kernels``): XNNPACK has no
dynamic-range depthwise convolution, so int8 depthwise kernels split the graph and fall back
to TFLite's slower hybrid kernel (docs/LITE0.md). Networks without depthwise layers (the
Res-UNet family) convert to the same bytes as before.

TensorFlow and Keras are imported inside the functions that need them.
"""

import contextlib
import io
import os
import tempfile
import warnings

import numpy as np

from edge_runtime.formats import FORMAT_NAMES, get_format


def _keras():
    import keras
    return keras


def _input_layer_configs(config):
    """InputLayer entries of a functional/Sequential config (top level only)."""
    return [layer["config"] for layer in config.get("layers", [])
            if layer.get("class_name") == "InputLayer"]


def _fixed_shape(shape, batch_size, input_size):
    shape = list(shape)
    shape[0] = batch_size
    for i in range(1, len(shape) - 1):   # spatial dimensions (channels-last)
        if shape[i] is None:
            if input_size is None:
                raise ValueError(
                    f"the model's input shape {tuple(shape[1:])} has unknown spatial "
                    "dimensions; pass input_size (the preprocessing input_size)")
            shape[i] = int(input_size)
    if shape[-1] is None:
        raise ValueError(f"the model's input shape {tuple(shape[1:])} has no channel count")
    return shape


def _nearest_upsample_layer():
    """An export-only layer equal to ``UpSampling2D(2, interpolation="nearest")``.

    Keras 3 writes nearest upsampling as RESHAPE + TILE, and TFLite's RESIZE_NEAREST_NEIGHBOR
    is not taken by XNNPACK either (measured with ai-edge-litert 2.3): the graph splits into
    several partitions. Four channel copies + DEPTH_TO_SPACE give the same values exactly
    (out[2i+a, 2j+b, c] = x[i, j, c]) and run inside one XNNPACK partition; both ops load in
    tflite-runtime 2.14. TensorFlow-only, used only while exporting.
    """
    keras = _keras()

    class DepthToSpaceUpsample2D(keras.layers.Layer):
        def __init__(self, **kwargs):
            for key in ("size", "interpolation", "data_format"):
                kwargs.pop(key, None)
            super().__init__(**kwargs)

        def call(self, x):
            import tensorflow as tf
            return tf.nn.depth_to_space(tf.concat([x, x, x, x], axis=-1), 2)

        def compute_output_shape(self, s):
            return (s[0], None if s[1] is None else 2 * s[1],
                    None if s[2] is None else 2 * s[2], s[3])

    return DepthToSpaceUpsample2D


def _swap_nearest_upsampling(config):
    """Rewrite every 2x nearest UpSampling2D in a functional config; returns how many."""
    count = 0
    for layer in config.get("layers", []):
        lc = layer.get("config", {})
        if (layer.get("class_name") == "UpSampling2D" and lc.get("interpolation") == "nearest"
                and tuple(lc.get("size", ())) == (2, 2)
                and lc.get("data_format") in (None, "channels_last")):
            layer["class_name"] = "DepthToSpaceUpsample2D"
            layer["module"] = None
            layer["registered_name"] = "DepthToSpaceUpsample2D"
            count += 1
    return count


def fixed_batch_model(model, batch_size=1, input_size=None):
    """Rebuild a Keras 3 model with input shape (batch_size, S, S, C) and the same weights.

    Works for functional and Sequential models, custom layers included as long as they are
    registered Keras serialisables (importing ``train.models`` registers the project's). Falls
    back to ``keras.models.clone_model`` with a new fixed-batch ``keras.Input``.
    """
    keras = _keras()
    if len(model.inputs) != 1:
        raise ValueError(f"expected a model with one input, got {len(model.inputs)}")
    shape = _fixed_shape(model.inputs[0].shape, batch_size, input_size)
    rebuilt = None
    try:
        config = model.get_config()
        swapped = _swap_nearest_upsampling(config)
        inputs = _input_layer_configs(config)
        if tuple(model.inputs[0].shape) == tuple(shape) and not swapped:
            return model
        if len(inputs) == 1:
            inputs[0]["batch_shape"] = shape
            inputs[0].pop("batch_size", None)
            inputs[0].pop("shape", None)
            with keras.saving.custom_object_scope(
                    {"DepthToSpaceUpsample2D": _nearest_upsample_layer()}):
                rebuilt = model.__class__.from_config(config)
    except Exception:  # noqa: BLE001 - any config problem: try cloning instead
        rebuilt = None
    if rebuilt is None:
        new_input = keras.Input(batch_shape=tuple(shape), dtype=model.inputs[0].dtype,
                                name=getattr(model.inputs[0], "name", None) or "input")
        rebuilt = keras.models.clone_model(model, input_tensors=new_input)
    rebuilt.set_weights(model.get_weights())
    return rebuilt


def _representative_dataset(images, input_shape):
    arr = np.asarray(images, dtype=np.float32)
    if arr.ndim == len(input_shape) - 1:          # (N, S, S) -> (N, S, S, 1)
        arr = arr[..., None]
    if arr.ndim != len(input_shape) or tuple(arr.shape[1:]) != tuple(input_shape[1:]):
        want = ", ".join(map(str, input_shape[1:]))
        raise ValueError(f"calibration images must have shape (N, {want}), got {arr.shape}")
    if len(arr) == 0:
        raise ValueError("calibration images are empty; int8 needs at least one scan")

    def gen():
        for x in arr:
            yield [x[None]]
    return gen


@contextlib.contextmanager
def quiet_native_stderr():
    """Send native (C++) stderr to a temporary file while converting; yields a reader.

    TensorFlow's converter writes pages of logs to file descriptor 2. They are kept and
    returned by the yielded callable so that a failure can still quote them.
    """
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            def read():
                tmp.flush()
                tmp.seek(0)
                return tmp.read().decode("utf-8", "replace")
            yield read
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def export_tflite(keras_model, fmt, calibration_images=None, input_size=None):
    """Convert ``keras_model`` to a TFLite flatbuffer (bytes) in format ``fmt``.

    fmt: a name in ``edge_runtime.formats.FORMATS`` ("fp32", "drq", "fp16", "int8").
    calibration_images: (N, S, S) or (N, S, S, 1) float32 preprocessed training scans; needed
    for formats with ``needs_calibration`` (int8), ignored otherwise.
    input_size: the square input side, only used when the model's spatial size is unknown.
    The converted model has input and output of shape (1, S, S, C) float32 in every format.
    """
    if fmt not in FORMAT_NAMES:
        raise ValueError(f"unknown export format {fmt!r}; allowed: {', '.join(FORMAT_NAMES)}")
    spec = get_format(fmt)
    if spec.needs_calibration and calibration_images is None:
        raise ValueError(f"format {fmt!r} needs calibration_images (preprocessed training scans)")
    import tensorflow as tf

    model = fixed_batch_model(keras_model, batch_size=1, input_size=input_size)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if fmt == "drq":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif fmt == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif fmt == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = _representative_dataset(
            calibration_images, tuple(model.inputs[0].shape))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.float32    # quantise/dequantise inside the graph
        converter.inference_output_type = tf.float32
    with quiet_native_stderr() as native_log, contextlib.redirect_stdout(io.StringIO()), \
            warnings.catch_warnings():
        # int8 with float32 input/output is intended: no input statistics are needed.
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
        try:
            blob = bytes(converter.convert())
            return float_depthwise_kernels(blob)[0] if fmt == "drq" else blob
        except Exception as exc:
            tail = [line for line in native_log().splitlines() if "rror" in line][-1:]
            detail = f" ({tail[0].strip()})" if tail else ""
            raise RuntimeError(f"TFLite conversion to {fmt} failed: "
                               f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                               f"{detail}") from exc


def float_depthwise_kernels(model_bytes):
    """A DRQ flatbuffer with every int8 DEPTHWISE_CONV_2D kernel dequantised back to float32
    -> (bytes, number of kernels changed); the input bytes unchanged when there is none.

    The converter's dynamic-range mode stores every weight tensor over 1024 elements as int8,
    depthwise kernels included; the XNNPACK delegate (ai-edge-litert 2.3) takes int8 weights
    with float activations for convolutions but not for depthwise ones, which then run outside
    it as TFLite's hybrid kernel, one graph partition each. The dequantised kernel holds the
    int8 values times their scale, so only the int8 rounding of the activations goes."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(model_bytes))
    depthwise = schema.BuiltinOperator.DEPTHWISE_CONV_2D
    changed = 0
    for graph in model.subgraphs:
        for op in graph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            if max(code.builtinCode, code.deprecatedBuiltinCode) != depthwise:
                continue
            kernel = graph.tensors[op.inputs[1]]
            if kernel.type != schema.TensorType.INT8:
                continue
            buffer = model.buffers[kernel.buffer]
            w = np.frombuffer(bytes(bytearray(buffer.data)), np.int8).astype(np.float32)
            w = w.reshape(list(kernel.shape))
            scale = np.asarray(kernel.quantization.scale, np.float32)
            if scale.size > 1:
                shape = [1] * w.ndim
                shape[kernel.quantization.quantizedDimension] = -1
                scale = scale.reshape(shape)
            buffer.data = np.frombuffer((w * scale).astype("<f4").tobytes(), np.uint8)
            kernel.type = schema.TensorType.FLOAT32
            kernel.quantization = None
            changed += 1
    if not changed:
        return model_bytes, 0
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), changed
