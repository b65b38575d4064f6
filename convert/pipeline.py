"""``convert_run``: a trained model -> verified, gated bundles, one per format.

Order of work, so that a refusal leaves nothing behind:

1. open the run folder (or .keras file), load the model, read preprocessing and the split;
2. for each format: export at batch 1, check the converted input/output shape, count XNNPACK
   partitions, check which interpreter packages run it, and score it against Keras on the
   validation scans (the accuracy gate);
3. if any format lost more Dice than ``max_drop`` and ``allow_drop`` is off: raise
   ``AccuracyGateError`` (exit code 5) and write nothing;
4. write ``<out>/<name>_<fmt>.zip`` for every format with ``edge_runtime.bundle.write_bundle``.
"""

import datetime
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_runtime import __version__
from edge_runtime.bundle import (DEFAULT_MIN_AREA_FRACTION, DEFAULT_MIN_PEAK_PROBABILITY,
                                 DEFAULT_THRESHOLD, SCHEMA_VERSION, sha256_file)
from edge_runtime.formats import FORMAT_NAMES, get_format
from edge_runtime.imageio import load_scan
from edge_runtime.preprocess import prepare_image

from edge_seg.convert.gate import (AccuracyGateError, ProbabilityRecorder, compare, evaluate_converted,
                          evaluate_float, evenly_spaced, key_metrics)
from edge_seg.convert.source import SourceError, open_source

DEFAULT_MAX_DROP = 0.01
DEFAULT_CALIBRATION_SCANS = 100


def bundle_filename(name, fmt):
    """``<name>_<fmt>.zip`` from the formats table's suffix (``_drq.tflite`` -> ``_drq.zip``)."""
    suffix = get_format(fmt).suffix
    return f"{name}{suffix[:-len('.tflite')] if suffix.endswith('.tflite') else suffix}.zip"


@dataclass
class Converted:
    fmt: str
    model_bytes: bytes = field(repr=False)
    xnnpack: dict
    interpreters: list
    gate: dict = None
    float_metrics: dict = None
    converted_metrics: dict = None
    prob_diff: tuple = (None, None)
    path: Path = None
    post: tuple = None          # the setting this format's bundle uses (see cap_setting)
    capped: dict = None         # what cap_setting changed, recorded in the manifest

    @property
    def size_bytes(self):
        return len(self.model_bytes)


def _load_inputs(samples, spec):
    """Preprocessed (N, S, S) float32 inputs of samples (unreadable ones skipped)."""
    xs = []
    for s in samples:
        try:
            xs.append(prepare_image(load_scan(s.image).pixels, spec)[0])
        except Exception:  # noqa: BLE001 - calibration skips scans it cannot read
            continue
    return np.stack(xs).astype(np.float32) if xs else None


def _converted_io_check(model_bytes, size, fmt):
    from edge_seg.convert.verify import litert_interpreter
    interp = litert_interpreter(model_bytes, threads=1, default_delegates=False)
    want = [1, size, size, 1]
    for kind, details in (("input", interp.get_input_details()),
                          ("output", interp.get_output_details())):
        if len(details) != 1:
            raise SourceError(f"{fmt}: converted model has {len(details)} {kind}s; expected 1")
        shape, dtype = [int(v) for v in details[0]["shape"]], np.dtype(details[0]["dtype"]).name
        if shape != want or dtype != "float32":
            raise SourceError(f"{fmt}: converted model {kind} is {shape} {dtype}; expected "
                              f"{want} float32 (is the model's output one sigmoid channel?)")



def _drop(f, c):
    out = {}
    for key in ("dice", "iou", "dice_pooled", "miou_2class", "fp_scan_rate"):
        a, b = f.get(key), c.get(key)
        out[key] = None if a is None or b is None else float(a - b)
    return out


def cap_setting(post, model_bytes):
    """The setting ``post`` (threshold, min_area_fraction, min_peak_probability) as this
    converted model can use it -> (post, capped or None).

    A full-integer model outputs at most ``interpreter.output_ceiling`` (255/256 for the int8
    sigmoid): a threshold or peak gate chosen above it on the float model could never be
    reached, and the bundle would say "no tumour" on every scan. Such a value is lowered to the
    ceiling (the top output code: what the float setting's components reach in this format),
    and ``capped`` records what was asked, what is used and why; the accuracy gate then scores
    the bundle at the setting it really uses against the float model at the asked one."""
    from edge_runtime.interpreter import make_interpreter, output_ceiling, settings_above
    ceiling, detail = output_ceiling(make_interpreter(model_bytes, threads=1))
    threshold, min_area, min_peak = post
    changed = {key: {"asked": value, "used": ceiling}
               for key, value in settings_above(ceiling, threshold, min_peak)}
    if not changed:
        return post, None
    capped = dict(changed, reason=f"above {ceiling:.8g}, the largest probability this model "
                                  f"can output ({detail})")
    return (min(threshold, ceiling), min_area, min(min_peak, ceiling)), capped


def convert_run(source, formats, out_dir, name=None, max_drop=DEFAULT_MAX_DROP,
                allow_drop=False, gate=True, gate_scans=None,
                calibration_scans=DEFAULT_CALIBRATION_SCANS, threshold=None,
                min_area_fraction=None, data_dirs=None, tflite_runtime_python=None,
                progress=False, log=None, min_peak_probability=None):
    """Convert, verify, gate and bundle; returns the list of ``Converted`` (paths set).

    source: a run folder or ``.keras`` file. formats: names from ``FORMATS``. Raises
    ``AccuracyGateError`` (nothing written) when a format's Dice drop exceeds ``max_drop``
    and ``allow_drop`` is False; ``SourceError``/``ValueError`` for bad inputs.
    """
    log = log or (lambda msg: None)
    formats = list(dict.fromkeys(formats))
    bad = [f for f in formats if f not in FORMAT_NAMES]
    if bad or not formats:
        raise ValueError(f"unknown format(s) {bad or formats}; allowed: {', '.join(FORMAT_NAMES)}")
    if gate_scans is not None and gate_scans < 1:
        raise ValueError(f"--gate-scans must be >= 1, got {gate_scans}")
    if calibration_scans < 1:
        raise ValueError(f"--calibration-scans must be >= 1, got {calibration_scans}")

    src = open_source(source)
    model = src.load_model()
    spec = src.preprocessing(model)
    name = name or src.name
    threshold = src.threshold(DEFAULT_THRESHOLD) if threshold is None else float(threshold)
    min_area = (src.min_area_fraction(DEFAULT_MIN_AREA_FRACTION) if min_area_fraction is None
                else float(min_area_fraction))
    min_peak = (src.min_peak_probability(DEFAULT_MIN_PEAK_PROBABILITY)
                if min_peak_probability is None else float(min_peak_probability))
    if not 0.0 <= min_peak < 1.0:
        raise ValueError(f"--min-peak-probability must be in [0, 1), got {min_peak}")
    post = (threshold, min_area, min_peak)
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"--threshold must be in (0, 1), got {threshold}")
    if not 0.0 <= min_area < 1.0:
        raise ValueError(f"--min-area-fraction must be in [0, 1), got {min_area}")

    needs_calibration = any(get_format(f).needs_calibration for f in formats)
    train, val, data_info = [], [], None
    if gate or needs_calibration or data_dirs or src.data_dirs():
        try:
            train, val, data_info = src.split(data_dirs)
        except SourceError:
            if gate or needs_calibration:
                raise
    gate_samples = evenly_spaced(val, gate_scans) if gate else []
    if gate and not gate_samples:
        raise SourceError(f"{source}: no validation scans for the accuracy gate; pass --data "
                          "or use --no-gate")
    calibration = None
    if needs_calibration:
        pool = train or val
        calibration = _load_inputs(evenly_spaced(pool, calibration_scans), spec)
        if calibration is None:
            raise SourceError(f"{source}: no readable training scans for int8 calibration")
        log(f"calibration: {len(calibration)} training scans")
    probe = _load_inputs(gate_samples[:1] or train[:1], spec) if (gate_samples or train) else None
    if probe is None:
        probe = np.random.default_rng(0).random((1, spec.input_size, spec.input_size),
                                                dtype=np.float32)
    probe = probe[..., None]

    float_metrics, recorder = None, ProbabilityRecorder()
    if gate:
        log(f"gate: scoring Keras on {len(gate_samples)} validation scans")
        float_result = evaluate_float(model, gate_samples, spec, post, recorder=recorder,
                                      progress=progress)
        float_summary = float_result.summary
        float_metrics = key_metrics(float_summary)

    from edge_seg.convert.export import export_tflite
    from edge_seg.convert.verify import check_interpreters, run_tflite, xnnpack_partitions

    results = []
    for fmt in formats:
        log(f"{fmt}: converting")
        model_bytes = export_tflite(model, fmt, calibration_images=calibration,
                                    input_size=spec.input_size)
        _converted_io_check(model_bytes, spec.input_size, fmt)
        xnn = xnnpack_partitions(model_bytes)
        reference = run_tflite(model_bytes, probe) if xnn["error"] is None else None
        interps = check_interpreters(model_bytes, probe, reference=reference,
                                     tflite_runtime_python=tflite_runtime_python)
        item_post, capped = cap_setting(post, model_bytes)
        if capped:
            log(f"{fmt}: " + ", ".join(f"{k} {v['asked']:g} -> {v['used']:.8g}"
                                      for k, v in capped.items() if k != "reason")
                + f" ({capped['reason']})")
        item = Converted(fmt, model_bytes, xnn, interps, post=item_post, capped=capped)
        if gate:
            conv = evaluate_converted(model_bytes, gate_samples, spec, item_post,
                                      recorder=recorder, progress=progress,
                                      label=f"gate: {fmt}")
            item.converted_metrics = key_metrics(conv.summary)
            item.float_metrics = float_metrics
            item.gate = compare(float_summary, conv.summary, max_drop)
            item.prob_diff = (recorder.max_abs, recorder.mean_abs)
        results.append(item)

    failed = [r for r in results if r.gate is not None and not r.gate["passed"]]
    if failed and not allow_drop:
        worst = ", ".join(f"{r.fmt} {r.gate['metric']} {r.gate['float']:.4f} -> "
                          f"{r.gate['converted']:.4f} (drop {r.gate['drop']:.4f})" for r in failed)
        raise AccuracyGateError(f"accuracy gate refused: {worst} exceeds --max-drop "
                                f"{max_drop:g} on {len(gate_samples)} validation scans; "
                                "nothing written (use --allow-drop to override)")

    from edge_runtime.bundle import write_bundle
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tools = _tool_versions()
    source_info = {"model_file": src.model_path.name, "model_file_sha256":
                   sha256_file(src.model_path), "run": src.name if src.run_dir else None}
    for item in results:
        manifest = build_manifest(item, src, spec, name, item.post, data_info,
                                  len(calibration) if calibration is not None else None,
                                  len(gate_samples), tools, source_info)
        manifest["model_sha256"] = hashlib.sha256(item.model_bytes).hexdigest()  # for the card
        from edge_seg.convert.card import model_card
        item.path = write_bundle(out_dir / bundle_filename(name, item.fmt), item.model_bytes,
                                 manifest, model_card(manifest, src.report))
    return results


def _tool_versions():
    out = {}
    for dist in ("tensorflow", "tensorflow-cpu", "keras", "ai-edge-litert"):
        from importlib import metadata
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def build_manifest(item, src, spec, name, post, data_info, n_calibration, n_gate, tools,
                   source_info):
    """The bundle manifest of one converted format. ``post``: (threshold, min_area_fraction,
    min_peak_probability)."""
    fmt = get_format(item.fmt)
    quant = {"method": fmt.quantization, "weights": fmt.weights, "io_dtype": fmt.io_dtype,
             "description": fmt.description, "batch": 1}
    if fmt.name == "int8":
        quant["activations"] = "int8"
        quant["calibration"] = {"scans": n_calibration,
                                "source": "training split (preprocessed, evenly spaced)"}
        quant["note"] = ("full integer: int8 weights and activations; float32 input and output "
                         "kept (QUANTIZE/DEQUANTIZE inside the graph)")
    elif fmt.name in ("drq", "fp16"):
        quant["activations"] = "float32"
    if item.gate is not None:
        metrics = {"gated": True, "split": "validation", "scans": n_gate,
                   "float": item.float_metrics, "converted": item.converted_metrics,
                   "drop": _drop(item.float_metrics, item.converted_metrics),
                   "gate": item.gate, "max_abs_prob_diff": item.prob_diff[0],
                   "mean_abs_prob_diff": item.prob_diff[1],
                   "interpreter": "ai-edge-litert (XNNPACK)"}
    else:
        metrics = {"gated": False, "reason": "converted with --no-gate",
                   "float": None, "converted": None, "drop": None}
    training = {"dataset": None, "patients": None, "families": None,
                "split_seed": src.split_seed, "val_fraction": src.val_fraction}
    if data_info:
        training.update(
            dataset=", ".join(f"{Path(f['path']).name} ({f['layout']}, {f['scans']} scans)"
                              for f in data_info["folders"]),
            patients=data_info["patients"], families=data_info["families"],
            tumour_free_scans=data_info["tumour_free_scans"],
            train_scans=data_info["train_scans"], val_scans=data_info["val_scans"],
            val_split_from=data_info["val_split_from"])
    for key in ("epochs", "loss", "patch_size", "batch_size", "trained_with"):
        if key in src.config:
            training[key] = src.config[key]
    if "epochs" in src.config:
        from edge_seg.train.recipe import training_recipe
        training["recipe"] = training_recipe(src.config, src.state)
    return {
        "schema_version": SCHEMA_VERSION,
        "name": f"{name}_{item.fmt}",
        "variant": src.variant,
        "preset": src.preset,
        "format": item.fmt,
        "quantization": quant,
        "preprocessing": spec.to_dict(),
        "threshold": post[0],
        "min_area_fraction": post[1],
        "min_peak_probability": post[2],
        **({"setting_capped": item.capped} if item.capped else {}),
        "metrics": metrics,
        "training": training,
        "interpreters_verified": item.interpreters,
        "xnnpack": item.xnnpack,
        "model_size_bytes": item.size_bytes,
        "source": source_info,
        "converter": tools,
        "created": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
        "edge_seg_version": __version__,
    }
