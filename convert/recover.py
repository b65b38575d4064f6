"""A trainable Keras model back from a bundle: the inverse of ``edge-seg convert``.

    python -m edge_seg.convert.recover BUNDLE --data DIR [--negatives DIR] --out runs/NAME \\
        [--split-from RUN] [--calibration-scans 32]
    edge-seg train --out runs/NAME --report                    # score it like any run
    edge-seg train ... --init-from runs/NAME/best.keras        # fine-tune it

Training checkpoints are not kept (they are not committed, and a machine does not outlive
its session), but the bundle is: this makes it the checkpoint. It is how the shipped model is
fine-tuned further, here or on a lent GPU, and how a clinic can fine-tune it on its own scans.

Export folds every BatchNormalization into the convolution before it (kernel
``W * g / sqrt(v + eps)``, bias ``b - m * g / sqrt(v + eps)``), and DRQ, fp16 and int8 store
that kernel quantised. Recovery rebuilds the network from the registry (the manifest's
variant and preset), gives each convolution the bundle's dequantised kernel (matched by
layer name; every weight of the network must be found, with its shape), and re-makes each
folded BatchNormalization so that:

- in inference it adds back the folded bias exactly, whatever its statistics: moving mean
  ``mu``, moving variance ``var``, ``gamma = sqrt(var + eps)``, ``beta = mu + bias``;
- in training, where it normalises with the batch's own statistics, it starts from the same
  function: ``mu`` and ``var`` are the mean and variance of the convolution's output over
  ``--calibration-scans`` training-side scans (the bundle's own function computes them).

The recovered model is then checked against the bundle's interpreter on those scans (the
largest and mean probability difference, and the share of pixels on the other side of the
bundle's threshold are recorded in ``config.json`` under ``recovered``); a mean difference
above ``MAX_MEAN_ABS_DIFF`` means the weights were not put back right, and nothing is written.
The new run folder gets ``best.keras``, ``config.json`` (the manifest's variant, preset,
preprocessing and split seed, the data folders given), ``state.json`` and, with
``--split-from RUN``, that run's ``split.json`` (else the split is re-made from the seed, as
``edge-seg train`` made it). An existing folder is never overwritten.
"""

import argparse
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

MAX_MEAN_ABS_DIFF = 0.01
DEFAULT_CALIBRATION_SCANS = 32


class RecoverError(ValueError):
    """The bundle's weights cannot be put back into the registry's network (one line)."""


def _dequantised(interp, detail):
    """The float32 value of a constant tensor, undoing per-tensor or per-channel quantisation."""
    value = np.asarray(interp.get_tensor(detail["index"]))
    q = detail.get("quantization_parameters") or {}
    scales = np.asarray(q.get("scales", []), dtype=np.float64)
    if scales.size and np.issubdtype(value.dtype, np.integer):
        zero = np.asarray(q.get("zero_points", np.zeros_like(scales)), dtype=np.float64)
        shape = [1] * value.ndim
        if scales.size > 1:
            shape[int(q.get("quantized_dimension", 0))] = -1
        value = (value.astype(np.float64) - zero.reshape(shape)) * scales.reshape(shape)
    return np.asarray(value, dtype=np.float32)


def bundle_convolutions(model_bytes):
    """-> [(tensor name, kernel HWIO float32, bias float32 or None)] of the CONV_2D ops of a
    converted model in graph order, weights dequantised (int8 scales, fp16 DEQUANTIZE ops
    undone); a kernel that several ops share (a layer called twice) is listed once."""
    from edge_seg.convert.verify import litert_interpreter
    interp = litert_interpreter(model_bytes, default_delegates=False)
    details = {t["index"]: t for t in interp.get_tensor_details()}
    ops = interp._get_ops_details()   # noqa: SLF001 - the graph; public in litert and tflite
    made_by = {o["outputs"][0]: o for o in ops if o["op_name"] == "DEQUANTIZE"}

    def constant(index):
        if index < 0:
            return None
        if index in made_by:     # fp16: a float16 constant dequantised at run time
            index = made_by[index]["inputs"][0]
        return _dequantised(interp, details[index])

    convs, seen = [], set()
    for op in ops:
        if op["op_name"] != "CONV_2D" or op["inputs"][1] in seen:
            continue
        filt = op["inputs"][1]
        seen.add(filt)
        kernel = constant(filt)                        # (out, h, w, in)
        bias = constant(op["inputs"][2]) if len(op["inputs"]) > 2 else None
        name = details[made_by[filt]["inputs"][0] if filt in made_by else filt]["name"]
        convs.append((name, np.transpose(kernel, (1, 2, 3, 0)), bias))
    return convs


def _match(layer_name, tensor_names):
    """Indices of the tensor names that belong to Keras layer ``layer_name`` (the converter
    names a kernel ``model/LAYER_1/convolution`` or ``model/LAYER/...``)."""
    pat = re.compile(rf"(^|/){re.escape(layer_name)}(_\d+)?/")
    return [i for i, n in enumerate(tensor_names) if pat.search(n.split(";")[0])]


def _assign(model, convs):
    """-> [(Conv2D layer, index into ``convs``)]: by layer name where the converter kept it,
    else (a shared layer's kernel loses its name: CBAM's MLP) the remaining layers and the
    remaining kernels in order, shape for shape."""
    from keras import layers
    names = [c[0] for c in convs]
    pairs, unnamed = [], []
    for layer in model.layers:
        if not layer.weights or isinstance(layer, layers.BatchNormalization):
            continue   # a batch norm is set with its convolution
        if not isinstance(layer, layers.Conv2D):
            raise RecoverError(f"layer {layer.name} ({type(layer).__name__}) has weights but "
                               "only Conv2D and BatchNormalization can be recovered")
        hits = _match(layer.name, names)
        if len(hits) > 1:
            raise RecoverError(f"layer {layer.name}: {len(hits)} convolutions of that name in "
                               "the bundle, expected 1")
        (pairs if hits else unnamed).append((layer, hits[0] if hits else None))
    taken = [i for _l, i in pairs]
    if len(set(taken)) != len(taken):
        twice = next(names[i] for i in taken if taken.count(i) > 1)
        raise RecoverError(f"the bundle's {twice} matches two layers of the network by name")
    left = sorted(set(range(len(convs))) - set(taken))
    if len(left) != len(unnamed):
        first = unnamed[0][0].name if unnamed else names[left[0]]
        raise RecoverError(f"the bundle has {len(convs)} convolutions, the network "
                           f"{len(pairs) + len(unnamed)}; first not matched: {first} (another "
                           "variant or preset?)")
    for (layer, _none), i in zip(unnamed, left):
        if tuple(convs[i][1].shape) != tuple(layer.kernel.shape):
            raise RecoverError(f"layer {layer.name}: not found by name in the bundle, and "
                               f"the next unnamed kernel is {tuple(convs[i][1].shape)}, not "
                               f"{tuple(layer.kernel.shape)} (another variant?)")
        pairs.append((layer, i))
    return pairs


def put_back(model, convs):
    """Set every Conv2D of ``model`` from ``convs`` (``bundle_convolutions``); each folded
    BatchNormalization is set to add the folded bias (identity statistics).
    -> [(conv layer, batch-norm layer, folded bias)] for ``calibrate_batchnorm``.
    Raises ``RecoverError`` when a weight is missing, ambiguous or of the wrong shape."""
    from keras import layers

    from edge_seg.train.models.surgery import next_batchnorm
    folded = []
    for layer, i in _assign(model, convs):
        _name, kernel, bias = convs[i]
        if tuple(kernel.shape) != tuple(layer.kernel.shape):
            raise RecoverError(f"layer {layer.name}: the bundle's kernel is "
                               f"{tuple(kernel.shape)}, the network's "
                               f"{tuple(layer.kernel.shape)} (another preset or width?)")
        bias = np.zeros(kernel.shape[-1], np.float32) if bias is None else bias
        bn = next_batchnorm(model, layer)
        if bn is not None:
            layer.kernel.assign(kernel)
            _set_batchnorm(bn, bias, np.zeros_like(bias), np.ones_like(bias))
            folded.append((layer, bn, bias))
        elif layer.use_bias:
            layer.set_weights([kernel, bias])
        elif np.abs(bias).max(initial=0.0) > 1e-6:
            raise RecoverError(f"layer {layer.name} has no bias but the bundle's has one")
        else:
            layer.kernel.assign(kernel)
    for bn in (layer for layer in model.layers
               if isinstance(layer, layers.BatchNormalization)):
        if not any(bn is b for _c, b, _f in folded):
            raise RecoverError(f"layer {bn.name}: a BatchNormalization that follows no "
                               "convolution cannot be recovered")
    return folded


def _set_batchnorm(bn, bias, mean, var):
    """Statistics ``mean``/``var``, and gamma/beta so that inference adds ``bias`` exactly."""
    eps = float(bn.epsilon)
    weights = {"gamma": np.sqrt(var + eps), "beta": mean + bias,
               "moving_mean": mean, "moving_variance": var}
    bn.set_weights([weights[w.name].astype(np.float32) for w in bn.weights])


def calibrate_batchnorm(model, folded, images, batch_size=8):
    """Give each folded BatchNormalization the statistics of its convolution's output over
    ``images`` (N, S, S, 1); the model's inference function does not change."""
    import keras
    if not folded:
        return
    probe = keras.Model(model.inputs[0], [conv.output for conv, _bn, _b in folded])
    total = [0.0] * len(folded)
    sums = [np.zeros(conv.filters, np.float64) for conv, _bn, _b in folded]
    squares = [np.zeros(conv.filters, np.float64) for conv, _bn, _b in folded]
    for start in range(0, len(images), batch_size):
        outs = probe(images[start:start + batch_size], training=False)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        for k, out in enumerate(outs):
            a = np.asarray(out, np.float64).reshape(-1, sums[k].shape[0])
            total[k] += a.shape[0]
            sums[k] += a.sum(0)
            squares[k] += (a * a).sum(0)
    for k, (_conv, bn, bias) in enumerate(folded):
        mean = sums[k] / total[k]
        var = np.maximum(squares[k] / total[k] - mean * mean, 0.0)
        _set_batchnorm(bn, bias, mean.astype(np.float32), var.astype(np.float32))


def agreement(model, model_bytes, images, threshold):
    """How closely the recovered ``model`` computes what the bundle does on ``images``."""
    from edge_seg.convert.verify import litert_interpreter, run_interpreter
    # the reference kernels: XNNPACK refuses some small int8 graphs, and the weights are
    # what is checked here, not the delegate
    want = run_interpreter(litert_interpreter(model_bytes, default_delegates=False), images)
    got = np.asarray(model.predict(images, batch_size=8, verbose=0), np.float32)
    diff = np.abs(got - want)
    return {"scans": int(len(images)), "max_abs_prob_diff": float(diff.max()),
            "mean_abs_prob_diff": float(diff.mean()),
            "pixels_across_threshold": float(np.mean((got >= threshold) != (want >= threshold)))}


def recover_model(bundle, images):
    """-> (Keras model, agreement dict) rebuilt from ``bundle`` (an ``edge_runtime.bundle.
    Bundle``); ``images`` (N, S, S, 1) calibrate the batch norms and check the result."""
    from edge_seg.train.models import build_model
    m = bundle.manifest
    if not m.get("variant") or not m.get("preset"):
        raise RecoverError(f"{bundle.path}: the manifest names no variant and preset")
    try:
        model = build_model(m["variant"], m["preset"], input_size=bundle.input_size,
                            dynamic_size=True)
    except ValueError as exc:
        raise RecoverError(f"{bundle.path}: {exc}") from None
    folded = put_back(model, bundle_convolutions(bundle.model_bytes))
    calibrate_batchnorm(model, folded, images)
    check = agreement(model, bundle.model_bytes, images, bundle.threshold)
    if not check["mean_abs_prob_diff"] <= MAX_MEAN_ABS_DIFF:
        raise RecoverError(f"{bundle.path}: the recovered network differs from the bundle by "
                           f"{check['mean_abs_prob_diff']:.4f} on average (allowed "
                           f"{MAX_MEAN_ABS_DIFF}): the weights were not put back right")
    return model, check


def recover(bundle_path, out_dir, data, negatives=(), split_from=None,
            calibration_scans=DEFAULT_CALIBRATION_SCANS, log=print):
    """Write ``out_dir`` (a new run folder) holding the network of the bundle at
    ``bundle_path``. -> the new config dict. Raises ``RecoverError``, ``FileExistsError``,
    ``FileNotFoundError`` or ``edge_runtime.errors.EdgeSegError`` (all one line)."""
    from edge_seg.convert.gate import evenly_spaced
    from edge_seg.convert.pipeline import _load_inputs
    from edge_runtime.bundle import load_bundle
    from edge_runtime.evaluate import run_split_samples
    from edge_seg.train.trainer import save_model, write_record

    out = Path(out_dir)
    if out.exists():
        raise FileExistsError(f"{out}: already exists; a recovered model goes to a new folder")
    if not data:
        raise RecoverError("--data is needed: the calibration scans and the run's split")
    if split_from and not (Path(split_from) / "split.json").is_file():
        raise FileNotFoundError(f"{split_from}: no split.json")
    bundle = load_bundle(bundle_path)
    training = bundle.manifest.get("training") or {}
    config = {"variant": bundle.manifest.get("variant"), "preset": bundle.manifest.get("preset"),
              "data": [str(d) for d in data], "negatives": [str(d) for d in negatives],
              "seed": int(training.get("split_seed", 0)),
              "val_fraction": float(training.get("val_fraction", 0.2)),
              "preprocessing": bundle.manifest["preprocessing"]}
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        write_record(stage / "config.json", config)
        if split_from:
            shutil.copyfile(Path(split_from) / "split.json", stage / "split.json")
        train_side, _val, _info = run_split_samples(stage)
        images = _load_inputs(evenly_spaced(train_side, calibration_scans),
                              bundle.preprocessing)
        if images is None:
            raise RecoverError(f"no readable training-side scans in {', '.join(config['data'])}")
        log(f"recover: {bundle.name} ({bundle.format}); batch norms calibrated on "
            f"{len(images)} training-side scans")
        model, check = recover_model(bundle, images[..., None])
        config["recovered"] = {"bundle": str(bundle_path), "name": bundle.name,
                               "format": bundle.format, "model_sha256": bundle.sha256,
                               "threshold": bundle.threshold,
                               "min_area_fraction": bundle.min_area_fraction,
                               "min_peak_probability": bundle.min_peak_probability, **check}
        save_model(model, stage / "best.keras")
        write_record(stage / "config.json", config)
        write_record(stage / "state.json", {"epoch": 0, "best_val_dice": None,
                                            "best_epoch": None, "finished": True})
        stage.rename(out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return config


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m edge_seg.convert.recover",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", help="a bundle (.zip, folder) made by edge-seg convert")
    ap.add_argument("--data", action="append", required=True,
                    help="labelled scans the bundle was trained on (repeatable)")
    ap.add_argument("--negatives", action="append", default=[],
                    help="tumour-free scans it was trained with (repeatable)")
    ap.add_argument("--out", required=True, help="new run folder")
    ap.add_argument("--split-from", default=None,
                    help="a run folder whose split.json the new run takes")
    ap.add_argument("--calibration-scans", type=int, default=DEFAULT_CALIBRATION_SCANS,
                    help=f"training-side scans for the batch norms "
                         f"(default {DEFAULT_CALIBRATION_SCANS})")
    args = ap.parse_args(argv)
    from edge_runtime.errors import EdgeSegError
    if args.calibration_scans < 1:
        print(f"recover: --calibration-scans must be >= 1, got {args.calibration_scans}",
              file=sys.stderr)
        return 2
    try:
        config = recover(args.bundle, args.out, args.data, args.negatives, args.split_from,
                         args.calibration_scans, log=lambda m: print(m, file=sys.stderr))
    except (RecoverError, FileExistsError, FileNotFoundError) as exc:
        print(f"recover: {exc}", file=sys.stderr)
        return 2
    except EdgeSegError as exc:
        print(f"recover: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 3)
    print(json.dumps({"written": str(Path(args.out) / "best.keras"),
                      "agreement": {k: config["recovered"][k] for k in (
                          "scans", "max_abs_prob_diff", "mean_abs_prob_diff",
                          "pixels_across_threshold")},
                      "next": f"edge-seg train --out {args.out} --report"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
