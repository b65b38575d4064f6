"""Scoring a whole grid of post-processing settings from one pass of the model."""

import math

from edge_runtime import metrics
from edge_runtime.evaluation.scoring import check_args, check_threshold, iter_predictions
from edge_runtime.evaluation.stats import mean_finite


def sweep(samples, predict_fn, preprocessing, thresholds, min_area_fractions,
          min_peak_probabilities=(0.0,), progress=False, batch_size=1, limit=None,
          label="sweeping"):
    """Headline numbers at every post-processing setting, from ONE pass of the model.

    For each scan the model runs once; for each threshold the connected components are
    labelled once, and every (min_area_fraction, min_peak_probability) is then a choice of
    components, so the whole grid costs about one ``evaluate``. Each point gives exactly
    what ``evaluate`` at that setting gives for: dice_mean, iou_mean, miou_2class_pooled
    (scans with a tumour), fp_scan_rate (tumour-free scans), missed_scans.
    -> (list of point dicts in grid order, failures [(path, problem)]).
    """
    from edge_runtime.postprocess import component_stats, min_pixels_for
    preprocessing, samples = check_args(preprocessing, batch_size, samples, limit)
    thresholds = [check_threshold(t) for t in thresholds]
    grid = [(t, float(a), float(p)) for t in thresholds for a in min_area_fractions
            for p in min_peak_probabilities]
    per_point = {g: {"dice": [], "iou": [], "acc": metrics.ConfusionAccumulator(),
                     "fp_scans": 0, "free": 0, "missed": 0, "sources": {}} for g in grid}
    failures = []

    def fail(_row, path, problem):
        failures.append((str(path), problem))

    for _row, sample, _scan, truth, full in iter_predictions(
            samples, predict_fn, preprocessing, batch_size, fail, progress, label):
        source = getattr(sample, "source", "") or ""
        truth_px = int(truth.sum())
        size = truth.size
        for t in thresholds:
            area, peak, tp_c = component_stats(full, t, truth)
            for a in min_area_fractions:
                big = area >= min_pixels_for(a, size)
                for p in min_peak_probabilities:
                    keep = big & (peak >= p)
                    pred_px, tp = int(area[keep].sum()), int(tp_c[keep].sum())
                    fp, fn = pred_px - tp, truth_px - tp
                    acc = per_point[(t, float(a), float(p))]
                    src = acc["sources"].setdefault(
                        source, {"dice": [], "fp_scans": 0, "free": 0, "missed": 0})
                    if truth_px:
                        d = metrics.dice_from_counts(tp, fp, fn)
                        acc["dice"].append(d)
                        acc["iou"].append(metrics.iou_from_counts(tp, fp, fn))
                        acc["acc"].add_counts(tp, fp, fn, size - tp - fp - fn)
                        acc["missed"] += pred_px == 0
                        src["dice"].append(d)
                        src["missed"] += pred_px == 0
                    else:
                        acc["free"] += 1
                        acc["fp_scans"] += pred_px > 0
                        src["free"] += 1
                        src["fp_scans"] += pred_px > 0
    points = []
    for (t, a, p) in grid:
        acc = per_point[(t, a, p)]
        points.append({
            "threshold": t, "min_area_fraction": a, "min_peak_probability": p,
            "dice_mean": mean_finite(acc["dice"]), "iou_mean": mean_finite(acc["iou"]),
            "miou_2class_pooled": acc["acc"].mean_iou_2class() if acc["dice"] else math.nan,
            "fp_scan_rate": acc["fp_scans"] / acc["free"] if acc["free"] else math.nan,
            "missed_scans": acc["missed"],
            "by_source": {name: {
                "n_tumour": len(s["dice"]), "dice_mean": mean_finite(s["dice"]),
                "missed_scans": s["missed"], "n_tumour_free": s["free"],
                "fp_scans": s["fp_scans"],
                "fp_scan_rate": s["fp_scans"] / s["free"] if s["free"] else math.nan}
                for name, s in sorted(acc["sources"].items())}})
    return points, failures
