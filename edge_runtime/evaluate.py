"""The one evaluation loop: scans on disk -> model -> full-resolution masks -> scores.

Used by ``edge-seg eval``, by training's final report and by conversion's accuracy gate, so
that "Dice" means the same number everywhere:

1. each scan is read with ``imageio.load_scan`` (its mask too; non-zero = tumour; a sample
   without a mask is tumour-free and its right answer is an empty mask);
2. ``preprocess.prepare_image`` makes the model input; ``predict_fn`` gives probabilities;
3. ``preprocess.restore`` brings them back to the scan's own size, and
   ``postprocess.postprocess(prob, threshold, min_area_fraction, min_peak_probability)``
   makes the mask (``sweep`` scores a whole grid of these settings from one model pass);
4. the mask is scored against the truth **at the scan's full resolution**
   (``edge_runtime.metrics``).

``predict_fn`` maps a float32 batch ``(N, S, S, 1)`` to probabilities ``(N, S, S, 1)`` (or
``(N, S, S)``). ``predict_fn_for_interpreter`` and ``predict_fn_for_keras`` make one.
A scan that cannot be read or scored becomes a row with ``status="failed"`` and its reason;
the others go on.
"""

import csv
import io
import json
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_runtime import metrics
from edge_runtime.errors import InputImageError
from edge_runtime.imageio import load_scan
from edge_runtime.preprocess import Preprocessing, prepare_image, restore

# Per-scan CSV columns, in order.
ROW_FIELDS = (
    "key", "image", "mask", "label", "label_name", "family", "has_tumour", "status", "error",
    "height", "width", "truth_px", "pred_px", "tp", "fp", "fn", "tn",
    "dice", "iou", "precision", "recall", "miou_2class", "hd95_px", "hd95_mm",
    "any_tumour_predicted", "max_probability", "source",
)

# What each summary number means (copied into summary.json as "definitions").
DEFINITIONS = {
    "dice_mean": "mean over scans of the per-scan Dice 2TP/(2TP+FP+FN)",
    "iou_mean": "mean over scans of the per-scan tumour IoU TP/(TP+FP+FN)",
    "dice_pooled": "Dice of the pixel counts pooled over all scans of the group",
    "iou_pooled": "tumour IoU of the pixel counts pooled over all scans of the group",
    "miou_2class_pooled": "2-class mean IoU, (background IoU + tumour IoU)/2 from one confusion "
                          "matrix pooled over every pixel of the group: "
                          "keras.metrics.MeanIoU(num_classes=2) on thresholded masks, the paper's "
                          "'mean IoU'",
    "background_iou_pooled": "IoU of the background class, pooled",
    "precision_pooled": "TP/(TP+FP), pooled pixel counts",
    "recall_pooled": "TP/(TP+FN), pooled pixel counts",
    "precision_mean": "mean over scans of per-scan precision (0 when nothing is predicted "
                      "on a scan with a tumour, 1 when both masks are empty)",
    "recall_mean": "mean over scans of per-scan recall",
    "hd95_px_median": "median over scans where both masks are non-empty of the symmetric 95th "
                      "percentile boundary Hausdorff distance, pixels at full resolution",
    "hd95_px_mean": "mean of the same",
    "hd95_mm_median": "as hd95_px_median in mm, over scans whose pixel spacing is known",
    "hd95_n": "number of scans where HD95 (pixels) is defined",
    "missed_scans": "scans with a tumour where nothing was predicted",
    "fp_scan_rate": "tumour-free scans: share with any predicted tumour (after postprocessing)",
    "pred_fraction_mean": "tumour-free scans: mean share of the image predicted as tumour",
    "fp_scan_rate_ci95": "Wilson 95 % interval of fp_scan_rate (each scan one trial; too narrow if "
                         "several scans come from one patient)",
    "by_patient": "scans with a tumour grouped by patient family: each patient's mean Dice, "
                  "and 95 % intervals of dice_mean and miou_2class_pooled from a bootstrap "
                  "that resamples whole patients (their scans are not independent)",
    "by_source": "the same numbers for each source (the data folder a scan came from: "
                 "figshare, brisc, notumor, ...): tumour, by_class, by_patient, tumour_free",
    "worst_source": "the lowest dice_mean of the sources with tumour scans and the highest "
                    "fp_scan_rate of the sources with tumour-free scans: a model is judged "
                    "on its worst source",
}

# Patient-level bootstrap: resamples and seed (fixed, so a summary is reproducible).
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0

# The headline numbers repeated at the top level of the summary (from the "tumour" group).
HEADLINE = ("dice_mean", "iou_mean", "dice_pooled", "iou_pooled", "miou_2class_pooled",
            "precision_pooled", "recall_pooled", "hd95_px_median", "hd95_px_mean")


@dataclass
class EvalResult:
    rows: list                      # one dict per scan, keys ROW_FIELDS
    summary: dict                   # aggregate numbers (see ``summarise``)
    failures: list = field(default_factory=list)   # [(path, problem)] for failed scans

    @property
    def ok(self):
        return not self.failures


def _nan_to_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_none(v) for v in value]
    return value


def _mean(values):
    values = [v for v in values if v is not None and math.isfinite(v)]
    return float(statistics.fmean(values)) if values else math.nan


def _median(values):
    values = [v for v in values if v is not None and math.isfinite(v)]
    return float(statistics.median(values)) if values else math.nan


def _base_row(sample):
    return {
        "key": sample.key, "image": str(sample.image),
        "mask": "" if sample.mask is None else str(sample.mask),
        "label": sample.label, "label_name": sample.label_name, "family": sample.family,
        "has_tumour": sample.mask is not None, "status": "ok", "error": "",
        "source": getattr(sample, "source", "") or "",
    }


def _load_truth(sample, scan):
    """The truth mask (bool, same size as the scan) of a sample."""
    if sample.mask is None:
        return np.zeros(scan.pixels.shape, dtype=bool)
    mask = load_scan(sample.mask).pixels
    if mask.shape != scan.pixels.shape:
        raise InputImageError(sample.mask, f"mask is {mask.shape[1]}x{mask.shape[0]} but the "
                                           f"scan {scan.path.name} is "
                                           f"{scan.pixels.shape[1]}x{scan.pixels.shape[0]}")
    return mask != 0


def _postprocess_fn():
    from edge_runtime.postprocess import postprocess
    return postprocess


def score(pred_mask, truth_mask, spacing_mm=None):
    """Per-scan scores of one predicted mask against its truth (both full resolution)."""
    return metrics.scan_metrics(pred_mask, truth_mask, spacing_mm)


def iter_predictions(samples, predict_fn, preprocessing, batch_size, fail, progress=False,
                 label="evaluating"):
    """Yield ``(row, sample, scan, truth, prob)`` for each scan that reads and predicts.

    ``prob`` is the probability map restored to the scan's own size. A scan that cannot be
    read, or a batch the model fails on, goes to ``fail(row, path, problem)`` instead.
    """
    pending = []

    def flush():
        batch = np.stack([p[4] for p in pending])[..., None].astype(np.float32)
        try:
            probs = np.asarray(predict_fn(batch), dtype=np.float32)
            if probs.ndim == 4:
                probs = probs[..., 0]
            if probs.shape != batch.shape[:3]:
                raise ValueError(f"predict_fn returned shape {probs.shape} for input "
                                 f"{batch.shape}")
        except Exception as exc:  # noqa: BLE001 - the model failed on these scans
            for row, sample, *_ in pending:
                fail(row, sample.image, f"model failed ({exc})")
            return []
        return [(row, sample, scan, truth, restore(prob, geo))
                for (row, sample, scan, truth, _x, geo), prob in zip(pending, probs)]

    def loop(items):
        for sample in items:
            row = _base_row(sample)
            row["_sample"] = id(sample)
            try:
                scan = load_scan(sample.image)
                truth = _load_truth(sample, scan)
                x, geo = prepare_image(scan.pixels, preprocessing)
            except InputImageError as exc:
                fail(row, exc.path, exc.problem)
                continue
            except Exception as exc:  # noqa: BLE001
                fail(row, sample.image, str(exc))
                continue
            pending.append((row, sample, scan, truth, x, geo))
            if len(pending) >= batch_size:
                yield from flush()
                pending.clear()
        if pending:
            yield from flush()
            pending.clear()

    if progress:
        import sys

        import click
        with click.progressbar(samples, label=label, file=sys.stderr,
                               item_show_func=lambda s: s.key if s else "") as bar:
            yield from loop(bar)
    else:
        yield from loop(samples)


def _check_threshold(threshold):
    if not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold!r}")
    return float(threshold)


def _check_args(preprocessing, batch_size, samples, limit):
    if isinstance(preprocessing, dict):
        preprocessing = Preprocessing.from_dict(preprocessing)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    samples = list(samples)
    if limit is not None:
        samples = samples[:int(limit)]
    return preprocessing, samples


def evaluate(samples, predict_fn, preprocessing, threshold=0.5, min_area_fraction=0.0,
             progress=False, batch_size=1, limit=None, label="evaluating",
             min_peak_probability=0.0):
    """Score ``predict_fn`` on ``samples`` (``datasets.Sample``) -> ``EvalResult``.

    ``preprocessing``: a ``Preprocessing`` (or its dict). ``batch_size``: scans per
    ``predict_fn`` call (TFLite models are batch 1; a Keras model can take more).
    ``limit``: score only the first N samples. ``progress``: a click progress bar on stderr.
    ``threshold``, ``min_area_fraction``, ``min_peak_probability``: see
    ``postprocess.postprocess``.
    """
    _check_threshold(threshold)
    preprocessing, samples = _check_args(preprocessing, batch_size, samples, limit)
    postprocess = _postprocess_fn()
    rows, failures = [], []
    start = time.perf_counter()

    def fail(row, path, problem):
        row.update(status="failed", error=problem)
        rows.append(row)
        failures.append((str(path), problem))

    for row, sample, scan, truth, full in iter_predictions(samples, predict_fn, preprocessing,
                                                           batch_size, fail, progress, label):
        try:
            pred = postprocess(full, threshold, min_area_fraction,
                               min_peak_probability=min_peak_probability)
            row.update(score(pred, truth, scan.spacing_mm))
            row.update(height=int(truth.shape[0]), width=int(truth.shape[1]),
                       any_tumour_predicted=bool(pred.any()),
                       max_probability=float(full.max()))
            rows.append(row)
        except Exception as exc:  # noqa: BLE001 - one bad scan does not stop the rest
            fail(row, sample.image, f"cannot score ({exc})")
    order = {id(s): i for i, s in enumerate(samples)}
    rows.sort(key=lambda r: order.get(r.pop("_sample"), 0))   # the samples' order
    summary = summarise(rows)
    summary.update(threshold=float(threshold), min_area_fraction=float(min_area_fraction),
                   min_peak_probability=float(min_peak_probability),
                   preprocessing=preprocessing.to_dict(),
                   seconds=round(time.perf_counter() - start, 3))
    return EvalResult(rows, summary, failures)


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
    preprocessing, samples = _check_args(preprocessing, batch_size, samples, limit)
    thresholds = [_check_threshold(t) for t in thresholds]
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
            "dice_mean": _mean(acc["dice"]), "iou_mean": _mean(acc["iou"]),
            "miou_2class_pooled": acc["acc"].mean_iou_2class() if acc["dice"] else math.nan,
            "fp_scan_rate": acc["fp_scans"] / acc["free"] if acc["free"] else math.nan,
            "missed_scans": acc["missed"],
            "by_source": {name: {
                "n_tumour": len(s["dice"]), "dice_mean": _mean(s["dice"]),
                "missed_scans": s["missed"], "n_tumour_free": s["free"],
                "fp_scans": s["fp_scans"],
                "fp_scan_rate": s["fp_scans"] / s["free"] if s["free"] else math.nan}
                for name, s in sorted(acc["sources"].items())}})
    return points, failures


# The name used in docs/DESIGN.md.
evaluate_predictions = evaluate


def group_summary(rows):
    """Aggregate numbers for a list of scored rows (status ok)."""
    acc = metrics.ConfusionAccumulator()
    for r in rows:
        acc.add_counts(r["tp"], r["fp"], r["fn"], r["tn"])
    hd_px = [r["hd95_px"] for r in rows]
    hd_mm = [r["hd95_mm"] for r in rows]
    return {
        "n": len(rows),
        "dice_mean": _mean(r["dice"] for r in rows),
        "iou_mean": _mean(r["iou"] for r in rows),
        "precision_mean": _mean(r["precision"] for r in rows),
        "recall_mean": _mean(r["recall"] for r in rows),
        "dice_pooled": acc.dice() if rows else math.nan,
        "iou_pooled": acc.iou() if rows else math.nan,
        "precision_pooled": acc.precision() if rows else math.nan,
        "recall_pooled": acc.recall() if rows else math.nan,
        "background_iou_pooled": acc.background_iou() if rows else math.nan,
        "miou_2class_pooled": acc.mean_iou_2class() if rows else math.nan,
        "hd95_px_median": _median(hd_px),
        "hd95_px_mean": _mean(hd_px),
        "hd95_mm_median": _median(hd_mm),
        "hd95_mm_mean": _mean(hd_mm),
        "hd95_n": sum(1 for v in hd_px if math.isfinite(v)),
        "missed_scans": sum(1 for r in rows if r["truth_px"] > 0 and r["pred_px"] == 0),
        "confusion": {"tp": acc.tp, "fp": acc.fp, "fn": acc.fn, "tn": acc.tn},
    }


def tumour_free_summary(rows):
    n = len(rows)
    fp_scans = sum(1 for r in rows if r["any_tumour_predicted"])
    return {
        "n": n,
        "fp_scans": fp_scans,
        "fp_scan_rate": fp_scans / n if n else math.nan,
        "fp_scan_rate_ci95": wilson_interval(fp_scans, n),
        "pred_fraction_mean": _mean(r["pred_px"] / (r["height"] * r["width"]) for r in rows),
    }


def wilson_interval(k, n, z=1.959964):
    """95 % Wilson score interval of k successes in n trials -> [low, high] (NaN if n = 0)."""
    if n <= 0:
        return [math.nan, math.nan]
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def family_of(row):
    """The patient family a scored row belongs to (its key when the family is unknown)."""
    return str(row.get("family") or row.get("key"))


def family_totals(groups):
    """{family: rows} -> (per-scan Dice sums, scan counts, [tp, fp, fn, tn] sums), one row of
    each array per family in ``groups``' order: what a patient-level bootstrap adds up."""
    fams = list(groups)
    dice_sum = np.array([sum(r["dice"] for r in groups[f]) for f in fams], np.float64)
    n = np.array([len(groups[f]) for f in fams], np.float64)
    conf = np.array([[sum(int(r[k]) for r in groups[f]) for k in ("tp", "fp", "fn", "tn")]
                     for f in fams], np.float64).reshape(len(fams), 4)
    return dice_sum, n, conf


def patient_draws(n_families, resamples=BOOTSTRAP_RESAMPLES, seed=BOOTSTRAP_SEED):
    """(resamples, n_families) family indices drawn with replacement: one bootstrap draw of
    whole patients per row, reproducible from ``seed``."""
    return np.random.default_rng(seed).integers(0, n_families,
                                                size=(int(resamples), n_families))


def patient_summary(rows, resamples=BOOTSTRAP_RESAMPLES, seed=BOOTSTRAP_SEED):
    """Scans with a tumour (status ok) grouped by patient family -> dict.

    Slices of one patient are alike, so a scan-level interval would be too narrow: the 95 %
    intervals here come from a bootstrap that draws whole patients with replacement
    (``resamples`` draws, fixed ``seed``) and recomputes the mean per-scan Dice and the pooled
    2-class mIoU of each draw (2.5th and 97.5th percentiles). Also each patient's mean Dice
    (``patients``, worst first) and how many patients average below 0.5.
    """
    groups = {}
    for r in rows:
        if r.get("status") == "ok" and r.get("has_tumour"):
            groups.setdefault(family_of(r), []).append(r)
    patients = sorted(
        ({"family": fam, "label_name": rs[0].get("label_name") or "", "n": len(rs),
          "dice_mean": float(np.mean([r["dice"] for r in rs]))} for fam, rs in groups.items()),
        key=lambda d: (d["dice_mean"], d["family"]))
    out = {"n_patients": len(patients),
           "dice_mean_of_patients": _mean(d["dice_mean"] for d in patients),
           "dice_median_of_patients": _median([d["dice_mean"] for d in patients]),
           "patients_dice_below_0_5": sum(1 for d in patients if d["dice_mean"] < 0.5),
           "bootstrap": {"resamples": int(resamples), "seed": int(seed),
                         "dice_mean_ci95": [math.nan, math.nan],
                         "miou_2class_pooled_ci95": [math.nan, math.nan]},
           "patients": patients}
    if len(groups) < 2 or resamples < 1:
        return out
    dice_sum, n, conf = family_totals(groups)
    draw = patient_draws(len(groups), resamples, seed)
    dice_means = dice_sum[draw].sum(1) / n[draw].sum(1)
    mious = [metrics.mean_iou_2class(*counts) for counts in conf[draw].sum(1)]
    out["bootstrap"]["dice_mean_ci95"] = [float(v) for v in np.percentile(dice_means, [2.5, 97.5])]
    out["bootstrap"]["miou_2class_pooled_ci95"] = [float(v) for v in
                                                   np.percentile(mious, [2.5, 97.5])]
    return out


def summarise(rows):
    """Summary dict from per-scan rows (failed rows are counted, not scored).

    Keys: n_scans, n_scored, n_failed, n_tumour, n_tumour_free; the HEADLINE numbers (over
    scans with a tumour mask, the paper's setting); "tumour" (same, in full), "by_class"
    ({label_name: group}), "by_patient" (``patient_summary``: per-patient Dice and 95 %
    intervals from a patient-level bootstrap), "tumour_free" (fp_scan_rate and its interval
    ...), "all" (every scored scan, tumour-free ones included), "definitions".
    """
    ok = [r for r in rows if r["status"] == "ok"]
    tumour = [r for r in ok if r["has_tumour"]]
    free = [r for r in ok if not r["has_tumour"]]
    by_class = {}
    for r in tumour:
        by_class.setdefault(r["label_name"] or "tumour", []).append(r)
    tumour_group = group_summary(tumour)
    summary = {
        "n_scans": len(rows),
        "n_scored": len(ok),
        "n_failed": len(rows) - len(ok),
        "n_tumour": len(tumour),
        "n_tumour_free": len(free),
    }
    summary.update({k: tumour_group[k] for k in HEADLINE})
    summary["fp_scan_rate"] = tumour_free_summary(free)["fp_scan_rate"]
    summary.update({
        "tumour": tumour_group,
        "by_class": {name: group_summary(rs) for name, rs in sorted(by_class.items())},
        "by_patient": patient_summary(tumour),
        "tumour_free": tumour_free_summary(free),
        "all": group_summary(ok),
    })
    by_source = source_summaries(ok)
    if by_source:
        summary["by_source"] = by_source
        summary["worst_source"] = worst_source(by_source)
    summary["definitions"] = DEFINITIONS
    return summary


def source_summaries(rows):
    """Scored rows -> {source: {n_tumour, n_tumour_free, tumour, by_class, by_patient,
    tumour_free}}, one entry per source that has scans; {} when no row names a source (rows
    written before sources were recorded)."""
    if not any(r.get("source") for r in rows):
        return {}
    out = {}
    for name in sorted({r.get("source") or "" for r in rows}):
        rs = [r for r in rows if (r.get("source") or "") == name]
        tumour = [r for r in rs if r["has_tumour"]]
        free = [r for r in rs if not r["has_tumour"]]
        entry = {"n_tumour": len(tumour), "n_tumour_free": len(free)}
        if tumour:
            classes = {}
            for r in tumour:
                classes.setdefault(r["label_name"] or "tumour", []).append(r)
            entry.update(tumour=group_summary(tumour),
                         by_class={c: group_summary(g) for c, g in sorted(classes.items())},
                         by_patient=patient_summary(tumour))
        if free:
            entry["tumour_free"] = tumour_free_summary(free)
        out[name or "unknown"] = entry
    return out


def worst_source(by_source):
    """{source: summary} (``source_summaries``) -> the worst source for Dice (lowest mean
    per-scan Dice) and for false alarms (highest share of tumour-free scans flagged):
    {"dice_mean": {"source", "value"} or None, "fp_scan_rate": {...} or None}."""
    dice = [(s["tumour"]["dice_mean"], name) for name, s in by_source.items()
            if s.get("tumour") and math.isfinite(s["tumour"]["dice_mean"])]
    fp = [(s["tumour_free"]["fp_scan_rate"], name) for name, s in by_source.items()
          if s.get("tumour_free")]
    lo, hi = min(dice, default=None), max(fp, default=None)
    return {"dice_mean": {"source": lo[1], "value": lo[0]} if lo else None,
            "fp_scan_rate": {"source": hi[1], "value": hi[0]} if hi else None}


# ---------------------------------------------------------------- model adapters

def predict_fn_for_interpreter(interpreter):
    """``predict_fn`` for a TFLite interpreter (from ``interpreter.make_interpreter``)."""
    from edge_runtime.interpreter import run_model

    def predict(batch):
        return run_model(interpreter, batch)
    return predict


def predict_fn_for_keras(model):
    """``predict_fn`` for an in-memory Keras model (no TensorFlow import here)."""
    def predict(batch):
        return np.asarray(model.predict_on_batch(batch), dtype=np.float32)
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
    from edge_runtime.interpreter import interpreter_info, make_interpreter
    if not hasattr(bundle, "model_bytes"):
        from edge_runtime.bundle import load_bundle
        bundle = load_bundle(bundle)
    interp = make_interpreter(bundle.model_bytes, threads)
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


# ---------------------------------------------------------------- writing results

def _csv_value(v):
    if isinstance(v, float):
        return "" if not math.isfinite(v) else f"{v:.6g}"
    if v is None:
        return ""
    return v


def rows_to_csv(rows, fields=ROW_FIELDS):
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fields), extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: _csv_value(r.get(k)) for k in fields})
    return buf.getvalue()


_INT_FIELDS = ("height", "width", "truth_px", "pred_px", "tp", "fp", "fn", "tn")
_FLOAT_FIELDS = ("dice", "iou", "precision", "recall", "miou_2class", "hd95_px", "hd95_mm",
                 "max_probability")
_BOOL_FIELDS = ("has_tumour", "any_tumour_predicted")


def rows_from_csv(text):
    """Rows written by ``rows_to_csv`` -> list of dicts with their types back (an empty float
    cell is NaN, an empty int cell None), so ``summarise`` and ``patient_summary`` can be
    recomputed from a saved ``*_scans.csv``."""
    rows = []
    for raw in csv.DictReader(io.StringIO(text)):
        r = dict(raw)
        for k in _INT_FIELDS:
            if k in r:
                r[k] = int(r[k]) if r[k] not in ("", None) else None
        for k in _FLOAT_FIELDS:
            if k in r:
                r[k] = float(r[k]) if r[k] not in ("", None) else math.nan
        for k in _BOOL_FIELDS:
            if k in r:
                r[k] = r[k] == "True"
        rows.append(r)
    return rows


def to_json(obj):
    return json.dumps(_nan_to_none(obj), indent=2, sort_keys=False) + "\n"


def write_results(result, out_dir, stem="eval"):
    """Write ``{stem}_scans.csv`` and ``{stem}_summary.json`` atomically -> (csv, json) paths."""
    from edge_runtime import atomic
    out_dir = Path(out_dir)
    csv_path = atomic.write_text(out_dir / f"{stem}_scans.csv", rows_to_csv(result.rows),
                                 parents=True)
    json_path = atomic.write_text(out_dir / f"{stem}_summary.json", to_json(result.summary),
                                  parents=True)
    return csv_path, json_path


# ---------------------------------------------------------------- a training run's split

def _resolve_dir(d, run_dir):
    p = Path(d).expanduser()
    if p.is_absolute() or p.exists():
        return p
    for base in (run_dir, *run_dir.parents):     # recorded relative to the project root
        if (base / p).exists():
            return base / p
    return p


def run_validation_samples(run_dir, data_dirs=None):
    """The validation scans of a training run ``runs/NAME/`` -> (samples, info dict).
    See ``run_split_samples``."""
    _train, val, info = run_split_samples(run_dir, data_dirs)
    return val, info


def run_split_samples(run_dir, data_dirs=None):
    """Both sides of a training run's split -> (training samples, validation samples, info).
    The training side leaves out the tumour-free scans that training left out as twins of
    validation scans (``split.json`` ``train_negatives_left_out``).

    Uses the run's ``split.json`` (``val_keys``, ``val_negative_keys``) when present, else
    re-creates the split from ``config.json`` (``val_fraction``, ``seed``) with
    ``datasets.split_by_family``, exactly as training did. The data folders are the run's own
    (``config.json`` ``data`` and ``negatives``) unless ``data_dirs`` is given.
    Raises ``EdgeSegError`` (one line) when the run folder cannot be used.
    """
    from edge_runtime.datasets import discover, split_by_family
    from edge_runtime.errors import EdgeSegError
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EdgeSegError(f"{run_dir}: not a training run (no config.json)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EdgeSegError(f"{cfg_path}: cannot read JSON ({exc})") from None
    split = None
    if (run_dir / "split.json").is_file():
        try:
            split = json.loads((run_dir / "split.json").read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise EdgeSegError(f"{run_dir / 'split.json'}: cannot read JSON ({exc})") from None
    if data_dirs:
        dirs = [Path(d) for d in data_dirs]
    else:
        recorded = list(config.get("data") or []) + list(config.get("negatives") or [])
        dirs = [_resolve_dir(d, run_dir) for d in recorded]
    if not dirs:
        raise EdgeSegError(f"{cfg_path}: no data folders recorded; pass --data DIR")
    labelled, negatives = [], []
    for d in dirs:
        try:
            layout, found = discover(d)
        except ValueError as exc:
            raise EdgeSegError(f"--data {d}: {exc}") from None
        (negatives if layout == "negatives" else labelled).extend(found)
    if split is not None and "val_keys" in split:
        val_keys = set(map(str, split.get("val_keys") or ()))
        neg_keys = set(map(str, split.get("val_negative_keys") or ()))
        val = ([s for s in labelled if s.key in val_keys]
               + [s for s in negatives if s.key in neg_keys])
        left_out = {str(t.get("train")) for t in split.get("train_negatives_left_out") or ()}
        train = ([s for s in labelled if s.key not in val_keys]
                 + [s for s in negatives if s.key not in neg_keys | left_out])
        source = "split.json"
        expected = len(val_keys) + len(neg_keys)
    else:
        fraction, seed = float(config.get("val_fraction", 0.2)), int(config.get("seed", 0))
        train, val = split_by_family(labelled, fraction, seed) if labelled else ([], [])
        if negatives:
            train_neg, val_neg = split_by_family(negatives, fraction, seed)
            train, val = train + train_neg, val + val_neg
        source = f"split_by_family(val_fraction={fraction}, seed={seed})"
        expected = len(val)
    if not val:
        raise EdgeSegError(f"{run_dir}: none of the run's validation scans were found in "
                           f"{', '.join(map(str, dirs))}")
    info = {"run": str(run_dir), "split_from": source, "data": [str(d) for d in dirs],
            "val_scans": len(val), "val_scans_recorded": expected}
    return train, val, info
