"""What inference-time tricks buy: flip test-time augmentation and the threshold.

    python -m bench.inference_tricks BUNDLE --run runs/NAME [--data DIR ...] [--out DIR]
    python -m bench.inference_tricks BUNDLE --data DIR [--data DIR ...] [--out DIR]

The bundle runs over the scans twice: as it is, and with left-right flip test-time
augmentation (TTA: the mean of the probability map of the scan and the flipped-back map of
its mirror image; twice the inference time). Each pass is swept over ``--thresholds`` at the
bundle's own smallest area and peak filter (``edge_runtime.evaluate.sweep``: one model pass
per mode). ``--run`` scores the run's validation split (its ``split.json``), as every other
number in the README; ``--data`` alone scores every scan in those folders. Writes
``inference_tricks.md`` and ``inference_tricks.json`` into ``--out``.

Thresholds picked here would be picked on the validation patients themselves: the table says
how much there is to gain, it is not a way to choose.
"""

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_THRESHOLDS = (0.4, 0.45, 0.5, 0.55, 0.6)


def flip_tta(predict_fn):
    """``predict_fn`` -> one that averages it with its left-right mirror (flipped back)."""
    def predict(batch):
        batch = np.asarray(batch, np.float32)
        plain = np.asarray(predict_fn(batch), np.float32)
        mirrored = np.asarray(predict_fn(np.ascontiguousarray(batch[:, :, ::-1])), np.float32)
        return (plain + mirrored[:, :, ::-1]) / 2.0
    return predict


def measure(bundle, samples, thresholds=DEFAULT_THRESHOLDS, threads=None, limit=None,
            log=print):
    """-> dict: the bundle's own setting, and every (mode, threshold) point with its change
    from the bundle as shipped."""
    from edge_runtime.evaluate import predict_fn_for_interpreter, sweep
    from edge_runtime.interpreter import make_interpreter

    thresholds = sorted(set(float(t) for t in thresholds) | {float(bundle.threshold)})
    plain = predict_fn_for_interpreter(make_interpreter(bundle.model_bytes, threads))
    points, failures = [], []
    for mode, fn in (("as shipped", plain), ("flip TTA", flip_tta(plain))):
        t = time.perf_counter()
        got, failed = sweep(samples, fn, bundle.preprocessing, thresholds,
                            [bundle.min_area_fraction], [bundle.min_peak_probability],
                            limit=limit)
        log(f"{mode}: {len(thresholds)} thresholds in {time.perf_counter() - t:.0f} s")
        failures += failed
        points += [dict(p, mode=mode) for p in got]
    base = next(p for p in points if p["mode"] == "as shipped"
                and p["threshold"] == float(bundle.threshold))
    for p in points:
        for k in ("dice_mean", "miou_2class_pooled", "fp_scan_rate"):
            p[f"{k}_change"] = p[k] - base[k]
    return {"bundle": bundle.name, "threshold": bundle.threshold,
            "min_area_fraction": bundle.min_area_fraction,
            "min_peak_probability": bundle.min_peak_probability,
            "points": points, "failures": failures}


def _f(v, digits=4, sign=False):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


def render_markdown(result, source):
    lines = [f"# Inference-time tricks on {result['bundle']}", "",
             f"Scans: {source}. Smallest area {result['min_area_fraction']} and peak filter "
             f"{result['min_peak_probability']} as in the bundle; the bundle's own threshold is "
             f"{result['threshold']}. Changes are against the bundle as shipped. Flip TTA "
             "doubles the inference time. Command: `python -m bench.inference_tricks`.", "",
             "| mode | threshold | Dice | change | mIoU (2-class) | change | tumour-free flagged "
             "| change | missed |", "|---|---|---|---|---|---|---|---|---|"]
    for p in result["points"]:
        lines.append(
            f"| {p['mode']} | {p['threshold']:.2f} | {_f(p['dice_mean'])} | "
            f"{_f(p['dice_mean_change'], sign=True)} | {_f(p['miou_2class_pooled'])} | "
            f"{_f(p['miou_2class_pooled_change'], sign=True)} | {_f(p['fp_scan_rate'], 3)} | "
            f"{_f(p['fp_scan_rate_change'], 3, sign=True)} | {p['missed_scans']} |")
    for path, problem in result["failures"]:
        lines.append(f"\n> failed: {path}: {problem}")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.inference_tricks", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle")
    ap.add_argument("--run", default=None, help="training run whose validation split to score")
    ap.add_argument("--data", action="append", default=[], help="scan folders (repeatable)")
    ap.add_argument("--out", default="bench/results")
    ap.add_argument("--thresholds", default=",".join(map(str, DEFAULT_THRESHOLDS)))
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--limit", type=int, default=None, help="score only the first N scans")
    args = ap.parse_args(argv)

    from edge_runtime.bundle import load_bundle
    from edge_runtime.datasets import discover
    from edge_runtime.errors import EdgeSegError
    from edge_runtime.evaluate import run_validation_samples, to_json
    from edge_runtime.outputs import atomic_write_bytes

    try:
        thresholds = [float(t) for t in args.thresholds.split(",") if t.strip()]
        if not thresholds or not all(0.0 < t < 1.0 for t in thresholds):
            raise ValueError
    except ValueError:
        ap.error(f"--thresholds must be numbers in (0, 1) separated by commas, got "
                 f"{args.thresholds!r}")
    if not args.run and not args.data:
        ap.error("give --run RUN (its validation split) or --data DIR")
    try:
        bundle = load_bundle(args.bundle)
        if args.run:
            samples, _ = run_validation_samples(args.run, args.data or None)
            source = f"the validation split of {Path(args.run).name} ({len(samples)} scans)"
        else:
            samples = [s for d in args.data for s in discover(d)[1]]
            source = f"{', '.join(args.data)} ({len(samples)} scans)"
    except (EdgeSegError, ValueError, OSError) as exc:
        print(f"inference_tricks: {exc}", file=sys.stderr)
        return 2
    result = measure(bundle, samples, thresholds, args.threads, args.limit,
                     log=lambda m: print(f"inference_tricks: {m}", file=sys.stderr))
    result["scans"] = source
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "inference_tricks.json", to_json(result).encode())
    atomic_write_bytes(out / "inference_tricks.md", render_markdown(result, source).encode())
    print(json.dumps({"written": [str(out / "inference_tricks.md"),
                                  str(out / "inference_tricks.json")]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
