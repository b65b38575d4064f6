"""Summaries of scored rows: per group (tumour scans, each class, tumour-free scans), per
patient (``stats.patient_summary``), per source and the worst source; ``DEFINITIONS`` says
what each number means."""

import math

from edge_runtime import metrics
from edge_runtime.evaluation.stats import (mean_finite, median_finite, patient_summary,
                                           wilson_interval)

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

# The headline numbers repeated at the top level of the summary (from the "tumour" group).
HEADLINE = ("dice_mean", "iou_mean", "dice_pooled", "iou_pooled", "miou_2class_pooled",
            "precision_pooled", "recall_pooled", "hd95_px_median", "hd95_px_mean")


def group_summary(rows):
    """Aggregate numbers for a list of scored rows (status ok)."""
    acc = metrics.ConfusionAccumulator()
    for r in rows:
        acc.add_counts(r["tp"], r["fp"], r["fn"], r["tn"])
    hd_px = [r["hd95_px"] for r in rows]
    hd_mm = [r["hd95_mm"] for r in rows]
    return {
        "n": len(rows),
        "dice_mean": mean_finite(r["dice"] for r in rows),
        "iou_mean": mean_finite(r["iou"] for r in rows),
        "precision_mean": mean_finite(r["precision"] for r in rows),
        "recall_mean": mean_finite(r["recall"] for r in rows),
        "dice_pooled": acc.dice() if rows else math.nan,
        "iou_pooled": acc.iou() if rows else math.nan,
        "precision_pooled": acc.precision() if rows else math.nan,
        "recall_pooled": acc.recall() if rows else math.nan,
        "background_iou_pooled": acc.background_iou() if rows else math.nan,
        "miou_2class_pooled": acc.mean_iou_2class() if rows else math.nan,
        "hd95_px_median": median_finite(hd_px),
        "hd95_px_mean": mean_finite(hd_px),
        "hd95_mm_median": median_finite(hd_mm),
        "hd95_mm_mean": mean_finite(hd_mm),
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
        "pred_fraction_mean": mean_finite(r["pred_px"] / (r["height"] * r["width"]) for r in rows),
    }


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
