"""The accuracy gate: the converted model must segment the validation scans as well as Keras.

Both models are scored by the one evaluation loop, ``edge_runtime.evaluate.evaluate``: the
same scans, preprocessing, threshold and small-component removal, masks scored at each
scan's full resolution. The gate compares the **mean per-scan Dice over scans with a tumour**
(``dice_mean``; when the gate scans hold no tumour, the share of tumour-free scans left clean,
``1 - fp_scan_rate``). The drop is ``float - converted``: positive means the converted model is
worse. The converted model runs in ai-edge-litert with its default XNNPACK delegate, as on the
device.
"""

import math

import numpy as np

from edge_runtime.errors import EXIT_GATE, EdgeSegError


class AccuracyGateError(EdgeSegError):
    """The converted model lost more Dice than allowed (exit code 5)."""

    exit_code = EXIT_GATE


def evenly_spaced(items, n):
    """``n`` items spread evenly over ``items`` (all of them when n is None or >= len)."""
    items = list(items)
    if n is None or n >= len(items):
        return items
    if n <= 0:
        return []
    idx = np.linspace(0, len(items) - 1, n).round().astype(int)
    return [items[i] for i in sorted(set(idx.tolist()))]


class ProbabilityRecorder:
    """Wraps predict functions to measure how far the converted probabilities are from Keras."""

    def __init__(self):
        self.reference = []
        self.max_abs = 0.0
        self._pos = 0
        self._sum = 0.0
        self._count = 0

    def recording(self, predict):
        def wrapped(batch):
            out = np.asarray(predict(batch), dtype=np.float32)
            self.reference.extend(out)
            return out
        return wrapped

    def comparing(self, predict):
        self._pos, self.max_abs, self._sum, self._count = 0, 0.0, 0.0, 0

        def wrapped(batch):
            out = np.asarray(predict(batch), dtype=np.float32)
            for one in out:
                if self._pos < len(self.reference):
                    ref = self.reference[self._pos].reshape(one.shape)
                    diff = np.abs(one - ref)
                    self.max_abs = max(self.max_abs, float(diff.max()))
                    self._sum += float(diff.sum())
                    self._count += diff.size
                self._pos += 1
            return out
        return wrapped

    @property
    def mean_abs(self):
        return self._sum / self._count if self._count else None


def keras_predict_fn(model, input_size):
    """predict_fn (N, S, S, 1) -> (N, S, S, 1) for a Keras model, any batch size."""
    from edge_seg.convert.export import fixed_batch_model
    dynamic = fixed_batch_model(model, batch_size=None, input_size=input_size)

    def predict(batch):
        return np.asarray(dynamic(batch, training=False), dtype=np.float32)
    return predict


def tflite_predict_fn(model_bytes):
    from edge_seg.convert.verify import litert_interpreter, run_interpreter
    interp = litert_interpreter(model_bytes, threads=None)
    return lambda batch: run_interpreter(interp, batch)


def _finite(v):
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def gate_value(summary):
    """The number the gate compares, and its name."""
    if summary.get("n_tumour") and _finite(summary.get("dice_mean")):
        return "dice_mean", float(summary["dice_mean"])
    rate = summary.get("fp_scan_rate")
    if summary.get("n_tumour_free") and _finite(rate):
        return "tumour_free_clean", 1.0 - float(rate)
    raise ValueError("no gate scans could be scored: nothing to compare")


def key_metrics(summary):
    """The manifest's view of an evaluation summary (plain floats, None for undefined)."""
    def f(v):
        return float(v) if _finite(v) else None
    by_class = {name: {"scans": g["n"], "dice": f(g["dice_mean"]), "iou": f(g["iou_mean"]),
                       "miou_2class": f(g["miou_2class_pooled"])}
                for name, g in (summary.get("by_class") or {}).items()}
    return {
        "scans": summary.get("n_scored"), "tumour_scans": summary.get("n_tumour"),
        "tumour_free_scans": summary.get("n_tumour_free"),
        "dice": f(summary.get("dice_mean")), "iou": f(summary.get("iou_mean")),
        "dice_pooled": f(summary.get("dice_pooled")),
        "miou_2class": f((summary.get("all") or {}).get("miou_2class_pooled")),
        "miou_2class_tumour_scans": f(summary.get("miou_2class_pooled")),
        "fp_scan_rate": f(summary.get("fp_scan_rate")),
        "by_class": by_class,
    }


def compare(float_summary, converted_summary, max_drop):
    """-> {metric, float, converted, drop, max_drop, passed}."""
    name, f = gate_value(float_summary)
    _name, c = gate_value(converted_summary)
    drop = f - c
    return {"metric": name, "float": f, "converted": c, "drop": drop,
            "max_drop": float(max_drop), "passed": bool(drop <= max_drop)}


def evaluate_float(model, samples, preprocessing, post, recorder=None, batch_size=8,
                   progress=False):
    """Evaluate the Keras model on ``samples`` -> EvalResult. ``post``: (threshold,
    min_area_fraction, min_peak_probability)."""
    from edge_runtime.evaluate import evaluate
    predict = keras_predict_fn(model, preprocessing.input_size)
    if recorder is not None:
        predict = recorder.recording(predict)
    return evaluate(samples, predict, preprocessing, post[0], post[1],
                    min_peak_probability=post[2], progress=progress, batch_size=batch_size,
                    label="gate: keras")


def evaluate_converted(model_bytes, samples, preprocessing, post, recorder=None,
                       progress=False, label="gate: tflite"):
    """Evaluate a converted model (bytes) on ``samples`` -> EvalResult (``post`` as in
    ``evaluate_float``)."""
    from edge_runtime.evaluate import evaluate
    predict = tflite_predict_fn(model_bytes)
    if recorder is not None:
        predict = recorder.comparing(predict)
    return evaluate(samples, predict, preprocessing, post[0], post[1],
                    min_peak_probability=post[2], progress=progress, batch_size=1, label=label)
