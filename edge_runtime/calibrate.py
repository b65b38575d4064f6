"""Site calibration: check a bundle on a clinic's own tumour-free scans and re-choose its
"tumour present" setting so that false alarms stay at or under a target.

    edge-seg calibrate BUNDLE --negatives DIR [--labelled DIR] --target-fpr 0.05 --out SITE.zip

A clinic's scanner is a source the model never saw: on a third source of tumour-free scans
the shipped model flags about one in eight (docs/ROBUST.md). ``calibrate``:

1. runs the bundle once over every scan in ``--negatives`` (and ``--labelled``), keeping the
   connected components of each probability map at every candidate threshold, with their
   area and peak probability (``gate_components``);
2. reports the bundle's false-alarm rate at its own setting (tumour-free scans with any kept
   component) with a 95 % Wilson interval;
3. among the candidate settings (threshold, min_area_fraction, min_peak_probability) whose
   false alarms meet the target, chooses the one that loses the least sensitivity: on the
   labelled scans when given (fewest tumour scans missed, then the best mean Dice, then the
   lightest filters); without them, the first setting that meets the target along a chain of
   ever stricter filters starting at the bundle's own (``filter_chain``): every step keeps a
   subset of the components the step before kept, so on any scans the first passing step
   loses the least. The bundle's recorded validation numbers (manifest ``metrics``) hold for
   the original setting only, and the manifest says so;
4. writes a NEW bundle (``write_site_bundle``; never the original, never over an existing
   file; atomically, with ``bundle.write_bundle``) whose manifest carries the setting and
   the calibration evidence: counts, the interval, the criterion, the date, and a digest of
   the negatives folder (``folder_digest``: its file list and every file's contents).

**The criterion is the Wilson upper bound** (``criterion="upper"``, the default): a setting
passes only when the 95 % upper bound of its false-alarm rate is <= the target, i.e. when the
site's scans show, beyond their sampling noise, that the rate is that low. The point estimate
(``criterion="point"``) would accept 5 of 100 at a 5 % target, where the true rate could be
11 %. It follows that a folder of fewer than ``min_scans_for(target)`` scans cannot show the
target even with no false alarm at all (73 at 5 %: the upper bound of 0 of n is
z^2/(n + z^2)), and is refused as too few for a meaningful interval.

Research software, not a medical device: a calibrated bundle is still not for diagnosis.
"""

import datetime
import hashlib
import math
from pathlib import Path

import numpy as np

from edge_runtime.bundle import sha256_file
from edge_runtime.errors import EXIT_GATE, EXIT_USAGE, EdgeSegError

# The candidate settings (the bundle's own values are always added).
THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
MIN_AREA_FRACTIONS = (0.0, 0.0005, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.006, 0.01)
MIN_PEAK_PROBABILITIES = (0.0, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999)
CRITERIA = ("upper", "point")
Z95 = 1.959964


class CalibrationError(EdgeSegError):
    """The inputs cannot be calibrated on (too few scans, an unreadable folder, ...)."""

    exit_code = EXIT_USAGE


class TargetNotMet(CalibrationError):
    """No candidate setting keeps the false alarms at or under the target."""

    exit_code = EXIT_GATE


def min_scans_for(target, z=Z95):
    """The fewest tumour-free scans whose 95 % Wilson upper bound can be <= ``target`` at
    all (with no false alarm): the upper bound of 0 of n is z^2 / (n + z^2)."""
    target = float(target)
    if not 0.0 < target < 1.0:
        raise CalibrationError(f"--target-fpr must be between 0 and 1, got {target}")
    return int(math.ceil(z * z * (1.0 - target) / target - 1e-9))


def folder_digest(root):
    """sha256 over a folder's file list and contents -> {"sha256", "files", "bytes"}.

    Every regular file under ``root`` (recursively, hidden ones too), in sorted order of its
    path relative to ``root``: the path, a NUL, the sha256 of its bytes, a newline. A file
    added, removed, renamed or changed changes the digest."""
    root = Path(root)
    outer, n, size = hashlib.sha256(), 0, 0
    for path in sorted((p for p in root.rglob("*") if p.is_file()),
                       key=lambda p: p.relative_to(root).as_posix()):
        size += path.stat().st_size
        outer.update(f"{path.relative_to(root).as_posix()}\0{sha256_file(path)}\n".encode())
        n += 1
    return {"sha256": outer.hexdigest(), "files": n, "bytes": size}


def gate_components(samples, predict_fn, preprocessing, thresholds, batch_size=1,
                    progress=False, label="scoring"):
    """One model pass over ``samples`` -> (kept, failures).

    ``kept``: one entry per scan that read and predicted, in order: {"sample", "size" (pixels),
    "truth_px", "components": {threshold: (area px array, peak probability array,
    truth px inside array)}}. ``failures``: [(path, problem)]."""
    from edge_runtime.evaluate import iter_predictions
    from edge_runtime.postprocess import component_stats
    failures, kept = [], []

    def fail(_row, path, problem):
        failures.append((str(path), problem))

    for _row, sample, _scan, truth, full in iter_predictions(
            samples, predict_fn, preprocessing, batch_size, fail, progress, label):
        kept.append({"sample": sample, "size": int(truth.size), "truth_px": int(truth.sum()),
                     "components": {t: component_stats(full, t, truth) for t in thresholds}})
    return kept, failures


def _kept(scan, setting):
    """Boolean mask over a scan's components at ``setting`` (threshold, area, peak)."""
    from edge_runtime.postprocess import min_pixels_for
    t, a, p = setting
    area, peak, _inside = scan["components"][t]
    return (area >= min_pixels_for(a, scan["size"])) & (peak >= p)


def flagged_count(scans, setting):
    """How many of ``scans`` (``gate_components``) have any component kept at ``setting``."""
    return int(sum(bool(_kept(s, setting).any()) for s in scans))


def detection_scores(scans, setting):
    """Per tumour scan at ``setting``: (missed, Dice) summed -> (missed scans, mean Dice)."""
    from edge_runtime import metrics
    missed, dice = 0, []
    for s in scans:
        keep = _kept(s, setting)
        area, _peak, inside = s["components"][setting[0]]
        pred_px, tp = int(area[keep].sum()), int(inside[keep].sum())
        missed += pred_px == 0
        dice.append(metrics.dice_from_counts(tp, pred_px - tp, s["truth_px"] - tp))
    return missed, float(np.mean(dice)) if dice else math.nan


def grid(own, thresholds=THRESHOLDS, areas=MIN_AREA_FRACTIONS, peaks=MIN_PEAK_PROBABILITIES,
         ceiling=1.0):
    """Every candidate (threshold, min_area_fraction, min_peak_probability), the bundle's own
    values ``own`` included; thresholds and peak gates above ``ceiling`` (the largest
    probability the model can output, ``interpreter.output_ceiling``) are left out: with them
    the model could never report a tumour, which would "meet" any false-alarm target."""
    t0, a0, p0 = own
    ts = sorted(t for t in set(thresholds) | {t0} if t <= ceiling)
    As = sorted(set(areas) | {a0})
    ps = sorted(p for p in set(peaks) | {p0} if p <= ceiling)
    return [(t, a, p) for t in ts for a in As for p in ps]


def filter_chain(own, areas=MIN_AREA_FRACTIONS, peaks=MIN_PEAK_PROBABILITIES, ceiling=1.0):
    """Ever stricter settings from ``own``: the peak gate raised step by step (threshold and
    area kept; never above ``ceiling``, see ``grid``), then, at the strictest gate, the
    smallest area raised step by step. Each step keeps a subset of the components the
    previous one kept."""
    t0, a0, p0 = own
    chain = [own] + [(t0, a0, p) for p in sorted(peaks) if p0 < p <= ceiling]
    p_top = chain[-1][2]
    return chain + [(t0, a, p_top) for a in sorted(areas) if a > a0]


def false_alarms(k, n, target, criterion):
    """{"flagged", "n", "rate", "ci95", "meets"} of k flagged of n at ``target``."""
    from edge_runtime.evaluate import wilson_interval
    lo, hi = wilson_interval(k, n)
    value = hi if criterion == "upper" else k / n
    return {"flagged": int(k), "n": int(n), "rate": k / n, "ci95": [lo, hi],
            "meets": bool(value <= target)}


def _read(folder, what, want_labelled):
    from edge_runtime.datasets import discover
    folder = Path(folder)
    if not folder.is_dir():
        raise CalibrationError(f"{what} {folder}: not a folder (or not readable)")
    try:
        layout, samples = discover(folder)
    except (ValueError, OSError) as exc:
        raise CalibrationError(f"{what} {folder}: {exc}") from None
    if want_labelled and layout == "negatives":
        raise CalibrationError(f"{what} {folder}: no masks found (expected metadata.csv, "
                               f"images/ + masks/, or scans with a truth/ subfolder)")
    if not want_labelled and layout != "negatives":
        raise CalibrationError(f"{what} {folder}: holds scans with masks ({layout} layout); "
                               f"tumour-free scans go in --negatives, labelled ones in "
                               f"--labelled")
    return samples


def _setting_dict(setting):
    t, a, p = setting
    return {"threshold": float(t), "min_area_fraction": float(a),
            "min_peak_probability": float(p)}


def calibrate(bundle, negatives, labelled=(), target_fpr=0.05, criterion="upper",
              threads=None, progress=False):
    """Calibrate a loaded ``bundle.Bundle`` on a folder of tumour-free scans -> result dict
    (see the module docstring). Raises ``CalibrationError`` (exit 2) for unusable inputs or
    too few readable scans, ``TargetNotMet`` (exit 5) when no setting meets the target."""
    from edge_runtime.evaluate import predict_fn_for_interpreter
    from edge_runtime.interpreter import make_interpreter, output_ceiling, refuse_unreachable

    if criterion not in CRITERIA:
        raise CalibrationError(f"criterion must be one of {', '.join(CRITERIA)}, got "
                               f"{criterion!r}")
    need = min_scans_for(target_fpr)
    neg_samples = _read(negatives, "--negatives", want_labelled=False)
    if len(neg_samples) < need:
        raise CalibrationError(
            f"--negatives {negatives}: {len(neg_samples)} scans; at least {need} tumour-free "
            f"scans are needed to show a false-alarm rate <= {target_fpr:.1%} (95 % Wilson "
            f"upper bound; with fewer, even no false alarm cannot show it)")
    lab_samples = [s for d in labelled for s in _read(d, "--labelled", want_labelled=True)]
    digest = folder_digest(negatives)
    own = (bundle.threshold, bundle.min_area_fraction, bundle.min_peak_probability)
    interp = make_interpreter(bundle.model_bytes, threads)
    refuse_unreachable(interp, bundle.threshold, bundle.min_peak_probability, bundle.path,
                       hint=" (convert it again: the converter lowers such a setting and "
                            "records it)")
    ceiling, _detail = output_ceiling(interp)
    candidates = grid(own, ceiling=ceiling)
    thresholds = sorted({c[0] for c in candidates})
    predict = predict_fn_for_interpreter(interp)
    neg, neg_fail = gate_components(neg_samples, predict, bundle.preprocessing, thresholds,
                                    progress=progress, label="tumour-free scans")
    if len(neg) < need:
        first = neg_fail[0] if neg_fail else ("?", "?")
        raise CalibrationError(
            f"--negatives {negatives}: only {len(neg)} of {len(neg_samples)} scans could be "
            f"read; at least {need} are needed ({len(neg_fail)} failed, e.g. {first[0]}: "
            f"{first[1]})")
    lab, lab_fail = (gate_components(lab_samples, predict, bundle.preprocessing, thresholds,
                                     progress=progress, label="labelled scans")
                     if lab_samples else ([], []))
    lab = [s for s in lab if s["truth_px"] > 0]
    if lab_samples and not lab:
        raise CalibrationError(f"--labelled {', '.join(map(str, labelled))}: no scan with a "
                               f"tumour could be scored")
    n = len(neg)
    before = false_alarms(flagged_count(neg, own), n, target_fpr, criterion)

    def evidence(setting):
        out = dict(_setting_dict(setting),
                   false_alarms=false_alarms(flagged_count(neg, setting), n, target_fpr,
                                             criterion))
        if lab:
            missed, dice = detection_scores(lab, setting)
            out.update(tumour_scans=len(lab), missed=missed, sensitivity=1 - missed / len(lab),
                       dice_mean=dice)
        return out

    if lab:
        scored = [evidence(c) for c in candidates]
        passing = [e for e in scored if e["false_alarms"]["meets"]]
        chosen = min(passing, key=lambda e: (e["missed"], -e["dice_mean"],
                                             e["min_area_fraction"], e["min_peak_probability"],
                                             e["threshold"])) if passing else None
        how = ("the fewest labelled tumour scans missed, then the best mean Dice, then the "
               "lightest filters, among the settings that meet the target")
        strictest = min(scored, key=lambda e: e["false_alarms"]["flagged"])
    else:
        chain = [evidence(c) for c in filter_chain(own, ceiling=ceiling)]
        chosen = next((e for e in chain if e["false_alarms"]["meets"]), None)
        how = ("no labelled scans: the first setting meeting the target along a chain of "
               "ever stricter filters from the bundle's own (peak gate, then smallest area); "
               "each step keeps a subset of the previous step's regions, so it loses the "
               "least sensitivity of the chain, but the loss is not measured here")
        strictest = chain[-1]
    result = {
        "target_fpr": float(target_fpr), "criterion": criterion,
        "criterion_meaning": ("95 % Wilson upper bound of the false-alarm rate <= target"
                              if criterion == "upper" else
                              "false-alarm rate (point estimate) <= target"),
        "min_scans": need,
        "negatives": {"folder": str(negatives), "scans": len(neg_samples), "scored": n,
                      "failed": len(neg_fail), "digest": digest},
        "labelled": {"folders": [str(d) for d in labelled], "scans": len(lab_samples),
                     "tumour_scans_scored": len(lab), "failed": len(lab_fail)},
        "original": evidence(own), "before": before, "chosen": chosen, "selection": how,
        "failures": [{"path": p, "problem": q} for p, q in neg_fail + lab_fail],
        "date": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
        "bundle": {"name": bundle.name, "model_sha256": bundle.sha256,
                   "path": str(getattr(bundle, "path", ""))},
    }
    if chosen is None:
        fa = strictest["false_alarms"]
        raise TargetNotMet(
            f"--target-fpr {target_fpr:g}: no setting keeps false alarms at or under it on "
            f"{negatives} ({criterion} criterion); the bundle flags {before['flagged']} of "
            f"{n}, the strictest setting tried {fa['flagged']} ({fa['rate']:.1%}, 95 % upper "
            f"bound {fa['ci95'][1]:.1%}): this bundle cannot be calibrated for this site")
    return result


def site_manifest(bundle, result, name=None):
    """The new bundle's manifest: the original's, with the chosen setting, a new name and
    date, ``calibration`` (the evidence) and ``derived_from`` (the original bundle)."""
    chosen = result["chosen"]
    manifest = {k: v for k, v in bundle.manifest.items()
                if k not in ("model_sha256", "created", "calibration", "derived_from")}
    manifest.update(
        name=name or f"{bundle.name}_site",
        threshold=chosen["threshold"], min_area_fraction=chosen["min_area_fraction"],
        min_peak_probability=chosen["min_peak_probability"],
        derived_from={"name": bundle.name, "model_sha256": bundle.sha256,
                      "created": bundle.manifest.get("created"),
                      "setting": _setting_dict((bundle.threshold, bundle.min_area_fraction,
                                                bundle.min_peak_probability))},
        calibration={k: result[k] for k in (
            "date", "target_fpr", "criterion", "criterion_meaning", "min_scans", "negatives",
            "labelled", "before", "original", "chosen", "selection")}
        | {"failed_scans": len(result["failures"]),
           "note": "manifest 'metrics' were measured at the original setting "
                   "(derived_from.setting), not at this one"})
    return manifest


def site_model_card(bundle, result):
    c, b = result["chosen"], result["before"]
    lines = [(bundle.model_card or "").rstrip(), "", "## Site calibration", "",
             f"Calibrated on {result['negatives']['scored']} tumour-free scans of "
             f"`{result['negatives']['folder']}` (digest "
             f"{result['negatives']['digest']['sha256'][:16]}...) on {result['date']}.",
             f"Before: {b['flagged']} flagged ({b['rate']:.1%}, 95 % interval "
             f"{b['ci95'][0]:.1%}-{b['ci95'][1]:.1%}).",
             f"Setting: threshold {c['threshold']}, min_area_fraction "
             f"{c['min_area_fraction']}, min_peak_probability {c['min_peak_probability']}: "
             f"{c['false_alarms']['flagged']} flagged ({c['false_alarms']['rate']:.1%}, 95 % "
             f"interval {c['false_alarms']['ci95'][0]:.1%}-{c['false_alarms']['ci95'][1]:.1%}"
             f"), target {result['target_fpr']:.1%} ({result['criterion_meaning']}).",
             "The validation numbers above were measured at the original setting.",
             "Research software, not a medical device.", ""]
    return "\n".join(lines)


def write_site_bundle(bundle, result, out, name=None):
    """Write the calibrated bundle to ``out`` (a new file; never the original bundle, never
    over an existing file), atomically -> its Path."""
    from edge_runtime.bundle import write_bundle
    out = Path(out)
    if out.exists():
        raise CalibrationError(f"--out {out}: already exists; nothing is overwritten (give a "
                               f"new file name)")
    src = Path(getattr(bundle, "path", "") or "")
    if src and src.exists() and out.resolve() == src.resolve():
        raise CalibrationError(f"--out {out}: is the original bundle; it is never changed")
    if not out.parent.is_dir():
        raise CalibrationError(f"--out {out}: the folder {out.parent} does not exist")
    return write_bundle(out, bundle.model_bytes, site_manifest(bundle, result, name),
                        site_model_card(bundle, result))


def trust_site_bundle(path, trust_file=None):
    """Make a newly written site bundle trusted, through the same mechanism as every other
    bundle (``edge_runtime.trust.trust_bundle``: its digest into the trust list) -> (digest,
    trust list path). ``edge-seg calibrate`` calls this after writing the bundle: the site
    bundle is made from a trusted one by this package, on this machine."""
    from edge_runtime.trust import trust_bundle
    return trust_bundle(path, trust_file)
