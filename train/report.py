"""The final validation report of a training run, and the post-processing chosen on it.

The best checkpoint is scored at each scan's full resolution on the run's own validation
patients and tumour-free scans with ``edge_runtime.evaluate`` (the loop ``edge-seg eval``
and the conversion gate use). The post-processing (probability threshold, minimum tumour
area, minimum peak probability of a kept region) is chosen here, on validation only (the
independent test patients are never seen): among the candidates whose share of tumour-free
scans with a predicted tumour is at most ``max_fp_scan_rate``, the best mean per-scan Dice,
where a Dice within ``DICE_TIE`` of the best counts as a tie and ties go to the setting that
flags the fewest tumour-free scans (without it, any Dice gain however small bought false
alarms up to the limit: runs/RECOVER.md); if none qualifies, the one with the fewest
false-positive scans. The whole
grid is scored from one pass of the model (``evaluate.sweep``) and kept in ``report.json``;
the chosen setting is then scored in full (per class, HD95, per-scan rows).
"""

import json
import time
from pathlib import Path


THRESHOLDS = (0.5, 0.6, 0.7)
MIN_AREA_FRACTIONS = (0.0, 0.0002, 0.0005, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.006)
MIN_PEAK_PROBABILITIES = (0.0, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999)
MAX_FP_SCAN_RATE = 0.05
DICE_TIE = 0.001   # below the third decimal the README reports: no difference worth a false alarm


def _fp(point):
    v = point["fp_scan_rate"]
    return None if v is None or v != v else v   # None/NaN: no tumour-free scans


def meets_fp_limit(point, max_fp_scan_rate=MAX_FP_SCAN_RATE):
    """True if the point flags at most ``max_fp_scan_rate`` of tumour-free scans (or has none)."""
    return _fp(point) is None or _fp(point) <= max_fp_scan_rate


def choose(sweep, max_fp_scan_rate=MAX_FP_SCAN_RATE, dice_tie=DICE_TIE):
    """Pick a sweep entry: among those meeting the FP-scan limit, the fewest FP of those within
    ``dice_tie`` of the best Dice (then the best Dice, then the lightest filters); if none
    meets the limit, the fewest FP."""
    ok = [s for s in sweep if meets_fp_limit(s, max_fp_scan_rate)]
    if ok:
        best = max(s["dice_mean"] for s in ok)
        near = [s for s in ok if s["dice_mean"] >= best - dice_tie]
        return min(near, key=lambda s: (_fp(s) or 0.0, -s["dice_mean"], s["min_area_fraction"],
                                        s.get("min_peak_probability", 0.0)))
    return min(sweep, key=lambda s: (_fp(s), -s["dice_mean"]))


def _sources(point):
    """(tumour sources, tumour-free sources) of a sweep point's ``by_source``."""
    by = point.get("by_source") or {}
    return ([n for n, s in by.items() if s.get("n_tumour")],
            [n for n, s in by.items() if s.get("n_tumour_free")])


def worst_dice(point):
    """The lowest mean per-scan Dice over the point's sources with tumour scans."""
    tumour, _free = _sources(point)
    return min(point["by_source"][n]["dice_mean"] for n in tumour)


def worst_fp(point):
    """The highest share of tumour-free scans flagged over the point's tumour-free sources
    (0.0 when there are none)."""
    _tumour, free = _sources(point)
    return max((point["by_source"][n]["fp_scan_rate"] for n in free), default=0.0)


def is_multi_source(sweep):
    """True when the sweep's scans come from more than one source of either kind."""
    tumour, free = _sources(sweep[0]) if sweep else ([], [])
    return len(tumour) > 1 or len(free) > 1


def choose_per_source(sweep, max_fp_scan_rate=MAX_FP_SCAN_RATE, dice_tie=DICE_TIE):
    """``choose`` for scans from several sources, judged on the worst one: among the points
    that flag at most ``max_fp_scan_rate`` of the tumour-free scans of EACH tumour-free
    source, the fewest worst-source flags of those within ``dice_tie`` of the best
    worst-source Dice (then the lightest filters); if none qualifies, the fewest
    worst-source flags (best worst-source Dice among ties)."""
    ok = [s for s in sweep if worst_fp(s) <= max_fp_scan_rate]
    if ok:
        best = max(worst_dice(s) for s in ok)
        near = [s for s in ok if worst_dice(s) >= best - dice_tie]
        return min(near, key=lambda s: (worst_fp(s), -worst_dice(s), s["min_area_fraction"],
                                        s.get("min_peak_probability", 0.0)))
    return min(sweep, key=lambda s: (worst_fp(s), -worst_dice(s)))


def refuse_context_run(run_dir, config, what, error=None):
    """Raise ``error`` (default ``EdgeSegError``; one line) when the run in ``run_dir`` was
    trained with neighbouring slices (``--context``): ``what`` takes one slice, as the
    runtime does."""
    if config.get("context"):
        from edge_runtime.errors import EdgeSegError
        raise (error or EdgeSegError)(
            f"{run_dir}: trained with --context {config['context']} (neighbouring slices as "
            f"input); {what} takes one slice, as the device runtime does: score it with "
            f"python -m bench.lab.context_probe")


def final_report(run_dir, checkpoint="best.keras", thresholds=THRESHOLDS,
                 min_area_fractions=MIN_AREA_FRACTIONS,
                 min_peak_probabilities=MIN_PEAK_PROBABILITIES, max_fp_scan_rate=MAX_FP_SCAN_RATE,
                 limit=None, progress=False, log=print):
    """Evaluate ``run_dir/checkpoint`` on the run's validation split; write report.json."""
    import keras

    import edge_seg.train.models  # noqa: F401 - registers the custom layers for loading
    from edge_runtime.evaluate import predict_fn_for_keras

    model = keras.models.load_model(Path(run_dir) / checkpoint, compile=False)
    return report_predictions(run_dir, predict_fn_for_keras(model), checkpoint, thresholds,
                              min_area_fractions, min_peak_probabilities, max_fp_scan_rate,
                              limit=limit, progress=progress, log=log)


def report_predictions(run_dir, predict, checkpoint, thresholds=THRESHOLDS,
                       min_area_fractions=MIN_AREA_FRACTIONS,
                       min_peak_probabilities=MIN_PEAK_PROBABILITIES,
                       max_fp_scan_rate=MAX_FP_SCAN_RATE, limit=None, progress=False, log=print):
    """The report of any ``predict`` (a batch of preprocessed scans -> probability maps) on
    ``run_dir``'s validation split, with ``run_dir``'s preprocessing; ``checkpoint`` names
    what was scored. Writes ``report.json`` and ``val_scans.csv`` into ``run_dir``."""
    from edge_runtime.evaluate import evaluate, run_validation_samples, sweep, to_json

    run_dir = Path(run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    refuse_context_run(run_dir, config, "the full-resolution report")
    samples, info = run_validation_samples(run_dir)
    if limit:
        samples = samples[:limit]
    t0 = time.time()
    points, _failures = sweep(samples, predict, config["preprocessing"], thresholds,
                              min_area_fractions, min_peak_probabilities, progress=progress,
                              batch_size=8, label="validation sweep")
    per_source = is_multi_source(points)
    if per_source:
        best = choose_per_source(points, max_fp_scan_rate)
        limit_met = worst_fp(best) <= max_fp_scan_rate
    else:
        best = choose(points, max_fp_scan_rate)
        limit_met = meets_fp_limit(best, max_fp_scan_rate)
    if not limit_met:
        log(f"no setting keeps tumour-free scans flagged <= {max_fp_scan_rate:.0%}: "
            f"chose the fewest ({best['fp_scan_rate']:.1%})")
    log(f"scored {len(points)} post-processing settings in {time.time() - t0:.0f}s; chosen: "
        f"threshold {best['threshold']} min_area_fraction {best['min_area_fraction']} "
        f"min_peak_probability {best['min_peak_probability']}: dice {best['dice_mean']:.4f} "
        f"mIoU(2-class, pooled) {best['miou_2class_pooled']:.4f} "
        f"tumour-free scans flagged {best['fp_scan_rate']:.3f}")
    chosen = evaluate(samples, predict, config["preprocessing"], best["threshold"],
                      best["min_area_fraction"], min_peak_probability=best["min_peak_probability"],
                      progress=progress, batch_size=8, label="validation (chosen setting)")
    split = json.loads((run_dir / "split.json").read_text()) if (
        run_dir / "split.json").is_file() else {}
    report = {
        "run": run_dir.name, "checkpoint": checkpoint,
        "variant": config.get("variant"), "preset": config.get("preset"),
        "threshold": best["threshold"], "min_area_fraction": best["min_area_fraction"],
        "min_peak_probability": best["min_peak_probability"],
        "selection": (f"the best worst-source mean Dice among (threshold, min_area_fraction, "
                      f"min_peak_probability) with a tumour predicted on <= "
                      f"{max_fp_scan_rate:.0%} of the validation tumour-free scans of EACH "
                      f"source, a worst-source Dice within {DICE_TIE} of the best a tie settled "
                      "by fewer worst-source flags; chosen on validation only"
                      if per_source and limit_met else
                      f"NO setting met the limit of {max_fp_scan_rate:.0%} tumour-free scans "
                      "flagged on every source: the one flagging the fewest on its worst "
                      "source; chosen on validation only" if per_source else
                      f"best mean Dice among (threshold, min_area_fraction, "
                      f"min_peak_probability) with a tumour "
                      f"predicted on <= {max_fp_scan_rate:.0%} of validation tumour-free "
                      f"scans, Dice within {DICE_TIE} of the best a tie settled by fewer "
                      "tumour-free scans flagged; chosen on validation only" if limit_met else
                      f"NO setting met the limit of {max_fp_scan_rate:.0%} tumour-free scans "
                      "flagged: the one flagging the fewest (best Dice among ties); chosen on "
                      "validation only"),
        "fp_limit": max_fp_scan_rate, "fp_limit_met": limit_met,
        "selection_per_source": per_source,
        "split": split.get("counts", {}), "split_seed": split.get("seed", config.get("seed")),
        "data": info, "sweep": points,
        "summary": chosen.summary,
        "dice_mean": chosen.summary["dice_mean"],
        "miou_2class_pooled": chosen.summary["miou_2class_pooled"],
        "fp_scan_rate": chosen.summary["fp_scan_rate"],
        "seconds": round(time.time() - t0, 1),
    }
    from edge_runtime import atomic
    from edge_runtime.evaluate import rows_to_csv
    atomic.write_text(run_dir / "report.json", to_json(report))
    atomic.write_text(run_dir / "val_scans.csv", rows_to_csv(chosen.rows))
    return report
