"""Scoring a TFLite model (bytes or a path) or a bundle with the device's interpreter."""

from edge_runtime.evaluation.scoring import evaluate


def predict_fn_for_interpreter(interpreter):
    """``predict_fn`` for a TFLite interpreter (from ``interpreter.make_interpreter``)."""
    from edge_runtime.interpreter import run_model

    def predict(batch):
        return run_model(interpreter, batch)
    return predict


def evaluate_tflite(model, samples, preprocessing, threshold=0.5, min_area_fraction=0.0,
                    threads=None, progress=False, limit=None):
    """Evaluate a .tflite (path or bytes) before it is bundled (conversion's accuracy gate)."""
    from edge_runtime.interpreter import make_interpreter
    interp = make_interpreter(model, threads)
    return evaluate(samples, predict_fn_for_interpreter(interp), preprocessing, threshold,
                    min_area_fraction, progress=progress, limit=limit)


def evaluate_bundle(bundle, samples, threads=None, progress=False, limit=None):
    """Evaluate a bundle (a ``bundle.Bundle`` or a path to one) with the TFLite runtime."""
    from edge_runtime.interpreter import interpreter_info, make_interpreter, refuse_unreachable
    if not hasattr(bundle, "model_bytes"):
        from edge_runtime.bundle import load_bundle
        bundle = load_bundle(bundle)
    interp = make_interpreter(bundle.model_bytes, threads)
    refuse_unreachable(interp, bundle.threshold, bundle.min_peak_probability,
                       getattr(bundle, "path", bundle.name))
    result = evaluate(samples, predict_fn_for_interpreter(interp), bundle.preprocessing,
                      bundle.threshold, bundle.min_area_fraction, progress=progress,
                      limit=limit, label=f"evaluating {bundle.name}",
                      min_peak_probability=bundle.min_peak_probability)
    manifest = getattr(bundle, "manifest", {}) or {}
    result.summary["model"] = {
        "name": bundle.name, "format": manifest.get("format"), "variant": manifest.get("variant"),
        "sha256": getattr(bundle, "sha256", None), "threads": threads,
        "interpreter": interpreter_info(),
    }
    return result
