"""The only place that knows which TFLite interpreter package is installed.

Order of preference: ``ai_edge_litert`` (the maintained LiteRT interpreter), then
``tflite_runtime`` (frozen at 2.14, needs numpy<2), then ``tensorflow.lite`` (workstation
fallback; TensorFlow is never imported unless the first two are missing or it is asked for).
Set ``EDGE_SEG_INTERPRETER=litert|tflite_runtime|tensorflow`` to force one.

XNNPACK is the default delegate in all three packages and is applied when the op resolver
is left at its default (``experimental_op_resolver_type=AUTO``): this module never passes
a resolver type, so the delegate stays on (without it models run 3-6x slower).
"""

import contextlib
import importlib
import os
import sys
import tempfile

import numpy as np

from edge_runtime.errors import EXIT_MISSING_EXTRA, BundleError, EdgeSegError

ENV_VAR = "EDGE_SEG_INTERPRETER"
BACKENDS = ("litert", "tflite_runtime", "tensorflow")
MAX_DEFAULT_THREADS = 4


class InterpreterUnavailableError(EdgeSegError):
    """No usable TFLite interpreter package (or a bad EDGE_SEG_INTERPRETER value)."""

    exit_code = EXIT_MISSING_EXTRA


def _version_of(dist, module):
    try:
        from importlib.metadata import version
        return version(dist)
    except Exception:  # noqa: BLE001 - metadata missing (vendored installs)
        return getattr(module, "__version__", "unknown")


def _load_backend(name):
    """-> (Interpreter class, package label, version). Raises ImportError if absent."""
    if name == "litert":
        mod = importlib.import_module("ai_edge_litert.interpreter")
        return mod.Interpreter, "ai-edge-litert", _version_of("ai-edge-litert", mod)
    if name == "tflite_runtime":
        mod = importlib.import_module("tflite_runtime.interpreter")
        top = importlib.import_module("tflite_runtime")
        return mod.Interpreter, "tflite-runtime", _version_of("tflite-runtime", top)
    if name == "tensorflow":
        tf = importlib.import_module("tensorflow")  # last resort, workstation only
        return tf.lite.Interpreter, "tensorflow", getattr(tf, "__version__", "unknown")
    raise InterpreterUnavailableError(
        f"{ENV_VAR}={name!r} is not a known interpreter; allowed: {', '.join(BACKENDS)}")


def _select_backend():
    forced = os.environ.get(ENV_VAR, "").strip()
    if forced:
        if forced not in BACKENDS:
            raise InterpreterUnavailableError(
                f"{ENV_VAR}={forced!r} is not a known interpreter; allowed: {', '.join(BACKENDS)}")
        try:
            return _load_backend(forced)
        except ImportError as exc:
            raise InterpreterUnavailableError(
                f"{ENV_VAR}={forced} but it cannot be imported ({exc})") from None
    for name in BACKENDS:
        try:
            return _load_backend(name)
        except ImportError:
            continue
    raise InterpreterUnavailableError(_missing_interpreter_hint())


def _is_32bit_arm():
    import platform
    import struct
    machine = platform.machine().lower()
    return machine.startswith(("armv6", "armv7", "armv8l")) or (
        machine in ("aarch64", "arm64") and struct.calcsize("P") == 4)


def _missing_interpreter_hint():
    if _is_32bit_arm():
        return ("no TFLite interpreter installed, and 32-bit ARM is not supported: "
                "ai-edge-litert has no 32-bit wheel. Install the 64-bit OS, or try (untested) "
                "pip install 'numpy<2' tflite-runtime==2.14.0 (README: On a Raspberry Pi)")
    return ("no TFLite interpreter installed; install one with: pip install ai-edge-litert "
            "(or tflite-runtime with numpy<2)")


def interpreter_info():
    """-> {"package": ..., "version": ...} of the interpreter ``make_interpreter`` would use."""
    _cls, package, version = _select_backend()
    return {"package": package, "version": version}


def default_threads():
    """Threads used when none are given: the CPU count, at most 4 (a Raspberry Pi's cores)."""
    return max(1, min(MAX_DEFAULT_THREADS, os.cpu_count() or 1))


# Lines the native runtime prints on every load that tell a user nothing.
_NATIVE_NOISE = ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",)


@contextlib.contextmanager
def _filtered_native_stderr():
    """Run a block with file descriptor 2 captured, then pass on what the native runtime
    printed there except ``_NATIVE_NOISE`` (so every command does not start with an INFO
    line). Python-level ``sys.stderr`` writes inside the block are captured the same way."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):   # no usable fd 2 (embedded, closed): leave it alone
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            kept = [line for line in tmp.read().decode("utf-8", "replace").splitlines()
                    if line.strip() and line.strip() not in _NATIVE_NOISE]
            if kept:
                try:
                    sys.stderr.write("\n".join(kept) + "\n")
                except (OSError, ValueError):
                    pass


def make_interpreter(model, threads=None, label=None):
    """A ready (tensors allocated) TFLite interpreter for ``model``.

    ``model`` is a path to a .tflite file or the model's bytes. ``threads`` is a positive
    integer or None for ``default_threads()``. XNNPACK stays on (default op resolver).
    ``label`` names the model in errors (default: the path, or "model bytes").
    Raises ``BundleError`` (naming the model) when the model cannot be loaded; a path that is
    not a regular file (a FIFO) is refused without being opened.
    """
    if threads is None:
        threads = default_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    cls, _package, _version = _select_backend()
    from edge_runtime.safeio import NotRegularFileError, check_regular, one_line, shown
    if isinstance(model, (bytes, bytearray, memoryview)):
        kwargs = {"model_content": bytes(model)}
        label = shown(label) if label is not None else "model bytes"
    else:
        label = shown(label if label is not None else model)
        try:
            check_regular(model)
        except NotRegularFileError as exc:
            raise BundleError(f"{label}: {exc.problem}; refused without reading it") from None
        except OSError as exc:
            raise BundleError(f"{label}: cannot open the model ({exc.strerror or exc})") from None
        kwargs = {"model_path": os.fspath(model)}
    try:
        with _filtered_native_stderr():
            interp = cls(num_threads=threads, **kwargs)
            interp.allocate_tensors()
    except Exception as exc:  # noqa: BLE001 - interpreter errors are RuntimeError/ValueError
        msg = one_line(exc, 300)
        raise BundleError(f"{label}: the TFLite interpreter cannot load the model ({msg})") from None
    return interp


def input_shape(interpreter):
    """The model's input tensor shape, e.g. (1, 256, 256, 1)."""
    return tuple(int(d) for d in interpreter.get_input_details()[0]["shape"])


def _quantize(x, detail):
    dtype = detail["dtype"]
    if dtype == np.float32:
        return x.astype(np.float32, copy=False)
    scale, zero = detail.get("quantization", (0.0, 0))
    if not scale:
        return x.astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)


def _dequantize(y, detail):
    if y.dtype == np.float32:
        return y
    scale, zero = detail.get("quantization", (0.0, 0))
    if not scale:
        return y.astype(np.float32)
    return ((y.astype(np.float32) - zero) * scale).astype(np.float32)


def run_model(interpreter, x):
    """Run the model on preprocessed input(s).

    ``x``: one image ``(S, S)`` or ``(S, S, 1)`` -> probability ``(S, S)``; a batch
    ``(N, S, S, 1)`` -> ``(N, S, S)`` (run one at a time: models are exported at batch 1).
    Quantised input/output tensors are (de)quantised here, so callers always see float32.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 2:
        batch, single = x[None, :, :, None], True
    elif x.ndim == 3 and x.shape[-1] == 1:
        batch, single = x[None], True
    elif x.ndim == 4 and x.shape[-1] == 1:
        batch, single = x, False
    else:
        raise ValueError(f"model input must be (S, S), (S, S, 1) or (N, S, S, 1), got {x.shape}")
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    want = tuple(int(d) for d in inp["shape"])
    if tuple(batch.shape[1:]) != want[1:]:
        raise ValueError(f"model expects input {want}, got images of shape {tuple(batch.shape[1:])}")
    results = []
    for i in range(batch.shape[0]):
        interpreter.set_tensor(inp["index"], _quantize(batch[i:i + 1], inp))
        interpreter.invoke()
        y = _dequantize(interpreter.get_tensor(out["index"]), out)
        results.append(y.reshape(y.shape[1], y.shape[2]) if y.ndim == 4 else np.squeeze(y))
    probs = np.stack(results).astype(np.float32, copy=False)
    return probs[0] if single else probs


def output_ceiling(interpreter):
    """The largest probability the model's output can express.

    1.0 for a float output. An 8-bit output, or a float output that a DEQUANTIZE makes from
    an 8-bit tensor (a full-integer model with float I/O), can express only its top code:
    ``(qmax - zero_point) * scale``, computed in float32 as ``run_model`` computes every
    output, e.g. 255/256 = 0.99609375 for the int8 sigmoid (scale 1/256, zero point -128). A
    threshold or peak-probability gate above it can never be reached: such a bundle would
    say "no tumour" on every scan. -> (ceiling, detail) where detail names the tensor's type,
    scale and zero point (or is None for a float output).
    """
    out = interpreter.get_output_details()[0]
    quantized = out if out["dtype"] in (np.int8, np.uint8) else None
    if quantized is None:
        ops = getattr(interpreter, "_get_ops_details", None)
        tensors = {d["index"]: d for d in interpreter.get_tensor_details()}
        for op in (ops() if ops is not None else []):
            if op.get("op_name") == "DEQUANTIZE" and out["index"] in list(op["outputs"]):
                src = tensors.get(int(op["inputs"][0]))
                if src is not None and src["dtype"] in (np.int8, np.uint8):
                    quantized = src
                break
    if quantized is None:
        return 1.0, None
    scale, zero = quantized.get("quantization", (0.0, 0))
    if not scale:
        return 1.0, None
    top = np.iinfo(quantized["dtype"]).max
    ceiling = float(min(np.float32(1.0), (np.float32(top) - np.float32(zero)) * np.float32(scale)))
    return ceiling, (f"{np.dtype(quantized['dtype']).name} output, scale {scale:.7g}, "
                     f"zero point {int(zero)}")


def settings_above(ceiling, threshold, min_peak_probability):
    """-> [(name, value)] of ``threshold`` / ``min_peak_probability`` above ``ceiling``."""
    return [(name, float(value)) for name, value in
            (("threshold", threshold), ("min_peak_probability", min_peak_probability))
            if float(value) > ceiling]


def unreachable_setting(interpreter, threshold, min_peak_probability):
    """-> None, or a one-line problem when ``threshold`` or ``min_peak_probability`` lies above
    ``output_ceiling``: the model could never report a tumour with that setting."""
    ceiling, detail = output_ceiling(interpreter)
    over = [f"{name} {value:g}"
            for name, value in settings_above(ceiling, threshold, min_peak_probability)]
    if not over:
        return None
    return (f"{' and '.join(over)} above {ceiling:.8g}, the largest probability this model can "
            f"output ({detail}): it could never report a tumour; use a setting <= {ceiling:.8g}")


def refuse_unreachable(interpreter, threshold, min_peak_probability, label, hint=""):
    """Raise ``BundleError`` ("LABEL: problem") when ``unreachable_setting`` finds one."""
    problem = unreachable_setting(interpreter, threshold, min_peak_probability)
    if problem:
        from edge_runtime.safeio import shown
        raise BundleError(f"{shown(label)}: {problem}{hint}")
