"""Statistics of scored rows: means and medians over finite values, the Wilson interval of a
proportion, and the patient-level bootstrap (scans of one patient are not independent, so the
bootstrap draws whole patient families)."""

import math
import statistics

import numpy as np

from edge_runtime import metrics

# Patient-level bootstrap: resamples and seed (fixed, so a summary is reproducible).
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0


def mean_finite(values):
    """Mean of the finite values (None and NaN left out); NaN when there are none."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    return float(statistics.fmean(values)) if values else math.nan


def median_finite(values):
    """Median of the finite values (None and NaN left out); NaN when there are none."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    return float(statistics.median(values)) if values else math.nan


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
           "dice_mean_of_patients": mean_finite(d["dice_mean"] for d in patients),
           "dice_median_of_patients": median_finite([d["dice_mean"] for d in patients]),
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
