"""What inference-time tricks buy: flip test-time augmentation, the threshold, and keeping
fewer of the predicted regions.

    python -m bench.lab.inference_tricks BUNDLE --run runs/NAME [--data DIR ...] [--out DIR]
    python -m bench.lab.inference_tricks BUNDLE --data DIR [--data DIR ...] [--out DIR]

The bundle runs over the scans twice: as it is, and with left-right flip test-time
augmentation (TTA: the mean of the probability map of the scan and the flipped-back map of
its mirror image; twice the inference time). Each pass is swept over ``--thresholds`` at the
bundle's own smallest area and peak filter (``edge_runtime.evaluate.sweep``: one model pass
per mode). ``--run`` scores the run's validation split (its ``split.json``), as every other
number in the README; ``--data`` alone scores every scan in those folders. A third pass
keeps fewer of the regions the bundle reports (``COMPONENT_RULES``: only the largest, only
those at least a quarter of the largest, only the most confident) and scores each rule per
tumour class: it tells whether the errors are stray specks a rule could drop, or lie inside
the tumour region itself. The same pass also reshapes the bundle's mask (``SHAPE_RULES``:
holes filled, grown or shrunk by one pixel): it tells whether the outlines are hollow, or
too tight or too loose all round. Writes ``inference_tricks.md`` and ``inference_tricks.json`` into
``--out``.

Thresholds picked here would be picked on the validation patients themselves: the table says
how much there is to gain, it is not a way to choose.
"""

import math
import sys
import time

import numpy as np

from bench.samples import make_parser, run_measurement

DEFAULT_THRESHOLDS = (0.4, 0.45, 0.5, 0.55, 0.6)

# Which of the regions the bundle reports (after its area and peak filters) a rule keeps.
COMPONENT_RULES = {
    "all (as shipped)": "every region the bundle reports",
    "largest only": "only the largest region",
    "quarter of the largest": "regions with at least 25 % of the largest one's area",
    "most confident only": "only the region with the highest peak probability",
}


# How a rule reshapes the bundle's mask (at the scan's own size).
SHAPE_RULES = {
    "fill holes": "tumour-free pockets enclosed by a region (not touching the scan's edge) "
                  "filled",
    "grow 1 px": "every region grown by one pixel (4-neighbours)",
    "shrink 1 px": "every region shrunk by one pixel (4-neighbours)",
}


def reshape_mask(rule, mask):
    """-> bool mask: ``mask`` reshaped by ``rule`` (a key of ``SHAPE_RULES``)."""
    from edge_runtime.metrics import boundary
    from edge_runtime.postprocess import label_components
    if rule not in SHAPE_RULES:
        raise ValueError(f"unknown rule {rule!r}; allowed: {', '.join(SHAPE_RULES)}")
    mask = np.asarray(mask, bool)
    if rule == "grow 1 px":      # the scan's edge is not tumour-free: nothing grows past it
        return mask | boundary(~mask, edge_outside=False)
    if rule == "shrink 1 px":
        return mask & ~boundary(mask, edge_outside=False)
    labels, _count = label_components(~mask)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    return mask | (~np.isin(labels, edge) & (labels > 0))


def select_components(rule, area, peak, kept):
    """-> bool array: the components (of ``area``/``peak``, already ``kept`` by the bundle's
    filters) that ``rule`` (a key of ``COMPONENT_RULES``) keeps."""
    if rule not in COMPONENT_RULES:
        raise ValueError(f"unknown rule {rule!r}; allowed: {', '.join(COMPONENT_RULES)}")
    kept = np.asarray(kept, bool)
    if rule == "all (as shipped)" or not kept.any():
        return kept.copy()
    area, peak = np.asarray(area), np.asarray(peak)
    if rule == "largest only":
        return kept & (np.arange(len(area)) == np.argmax(np.where(kept, area, -1)))
    if rule == "quarter of the largest":
        return kept & (area >= 0.25 * area[kept].max())
    return kept & (np.arange(len(peak)) == np.argmax(np.where(kept, peak, -1.0)))


def measure_components(bundle, samples, predict_fn, limit=None):
    """One model pass; every ``COMPONENT_RULES`` and ``SHAPE_RULES`` rule scored on it ->
    (list of dicts: rule, meaning, dice_mean, dice per class, fp_scan_rate, missed_scans,
    dice_mean_change against the bundle as shipped; failures)."""
    from edge_runtime import metrics
    from edge_runtime.evaluate import iter_predictions
    from edge_runtime.postprocess import component_stats, min_pixels_for, postprocess

    samples = list(samples)[:limit] if limit else list(samples)
    rules = {**COMPONENT_RULES, **SHAPE_RULES}
    acc = {r: {"dice": [], "classes": [], "fp": 0, "free": 0, "missed": 0} for r in rules}
    failures = []
    for row, _s, _scan, truth, prob in iter_predictions(
            samples, predict_fn, bundle.preprocessing, 1,
            lambda _row, path, problem: failures.append((str(path), problem))):
        area, peak, inside = component_stats(prob, bundle.threshold, truth)
        kept = ((area >= min_pixels_for(bundle.min_area_fraction, truth.size))
                & (peak >= bundle.min_peak_probability))
        truth_px = int(truth.sum())
        shipped = postprocess(prob, bundle.threshold, bundle.min_area_fraction,
                              bundle.min_peak_probability)
        for rule, a in acc.items():
            if rule in COMPONENT_RULES:
                keep = select_components(rule, area, peak, kept)
                pred_px, tp = int(area[keep].sum()), int(inside[keep].sum())
            else:
                pred = reshape_mask(rule, shipped)
                pred_px, tp = int(pred.sum()), int((pred & (truth > 0)).sum())
            if truth_px:
                a["dice"].append(metrics.dice_from_counts(tp, pred_px - tp, truth_px - tp))
                a["classes"].append(row.get("label_name") or "tumour")
                a["missed"] += pred_px == 0
            else:
                a["free"] += 1
                a["fp"] += pred_px > 0
    out = []
    for rule, a in acc.items():
        dice, classes = np.array(a["dice"], float), np.array(a["classes"], dtype=object)
        out.append({"rule": rule, "meaning": rules[rule],
                    "dice_mean": float(dice.mean()) if dice.size else None,
                    "dice_by_class": {c: float(dice[classes == c].mean())
                                      for c in sorted(set(a["classes"]))},
                    "fp_scan_rate": a["fp"] / a["free"] if a["free"] else None,
                    "missed_scans": a["missed"]})
    base = out[0]["dice_mean"]
    for r in out:
        r["dice_mean_change"] = (r["dice_mean"] - base
                                 if r["dice_mean"] is not None and base is not None else None)
    return out, failures


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
    t = time.perf_counter()
    components, failed = measure_components(bundle, samples, plain, limit=limit)
    log(f"{len(COMPONENT_RULES) + len(SHAPE_RULES)} region and shape rules in "
        f"{time.perf_counter() - t:.0f} s")
    failures += failed
    return {"bundle": bundle.name, "threshold": bundle.threshold,
            "min_area_fraction": bundle.min_area_fraction,
            "min_peak_probability": bundle.min_peak_probability,
            "points": points, "components": components, "failures": failures}


def _f(v, digits=4, sign=False):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


def render_markdown(result, source):
    lines = [f"# Inference-time tricks on {result['bundle']}", "",
             f"Scans: {source}. Smallest area {result['min_area_fraction']} and peak filter "
             f"{result['min_peak_probability']} as in the bundle; the bundle's own threshold is "
             f"{result['threshold']}. Changes are against the bundle as shipped. Flip TTA "
             "doubles the inference time. Command: `python -m bench.lab.inference_tricks`.", "",
             "| mode | threshold | Dice | change | mIoU (2-class) | change | tumour-free flagged "
             "| change | missed |", "|---|---|---|---|---|---|---|---|---|"]
    for p in result["points"]:
        lines.append(
            f"| {p['mode']} | {p['threshold']:.2f} | {_f(p['dice_mean'])} | "
            f"{_f(p['dice_mean_change'], sign=True)} | {_f(p['miou_2class_pooled'])} | "
            f"{_f(p['miou_2class_pooled_change'], sign=True)} | {_f(p['fp_scan_rate'], 3)} | "
            f"{_f(p['fp_scan_rate_change'], 3, sign=True)} | {p['missed_scans']} |")
    comps = result.get("components") or []
    if comps:
        classes = sorted({c for r in comps for c in r["dice_by_class"]})
        lines += ["", f"Keeping fewer of the regions the bundle reports, or reshaping them "
                      f"(threshold {result['threshold']}, the same single pass; Dice per scan "
                      "with a tumour; the shape rules: "
                      + "; ".join(f"{k}: {v}" for k, v in SHAPE_RULES.items()) + "):", "",
                  "| rule | Dice | change | " + " | ".join(classes)
                  + " | tumour-free flagged | missed |",
                  "|---|---|---|" + "---|" * len(classes) + "---|---|"]
        for r in comps:
            lines.append(f"| {r['rule']} | {_f(r['dice_mean'])} | "
                         f"{_f(r['dice_mean_change'], sign=True)} | "
                         + " | ".join(_f(r["dice_by_class"].get(c)) for c in classes)
                         + f" | {_f(r['fp_scan_rate'], 3)} | {r['missed_scans']} |")
    for path, problem in result["failures"]:
        lines.append(f"\n> failed: {path}: {problem}")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = make_parser("bench.lab.inference_tricks", __doc__, limit=True)
    ap.add_argument("--thresholds", default=",".join(map(str, DEFAULT_THRESHOLDS)))
    args = ap.parse_args(argv)

    try:
        thresholds = [float(t) for t in args.thresholds.split(",") if t.strip()]
        if not thresholds or not all(0.0 < t < 1.0 for t in thresholds):
            raise ValueError
    except ValueError:
        ap.error(f"--thresholds must be numbers in (0, 1) separated by commas, got "
                 f"{args.thresholds!r}")
    return run_measurement(
        ap, args, "inference_tricks",
        lambda bundle, samples, log: measure(bundle, samples, thresholds, args.threads,
                                             args.limit, log=log),
        render_markdown, "inference_tricks")


if __name__ == "__main__":
    sys.exit(main())
