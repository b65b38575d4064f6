"""Is run B really better than run A? A paired comparison over the same validation patients.

    python -m bench.compare_runs runs/A runs/B [--out bench/results] [--name NAME]

Each argument is a run folder (its ``val_scans.csv``, written by ``edge-seg train --report``)
or a ``*_scans.csv`` from ``edge-seg eval``. Both must hold the same scans (the same split);
anything else is refused with one line and exit code 2.

Two runs scored on the same patients are not independent samples, so comparing their two
95 % intervals is too cautious, and comparing their two means is too hopeful. Here the
difference B - A is bootstrapped over whole patient families, with the SAME draw for both
runs (2000 draws, seed 0, as ``edge_runtime.evaluate.patient_summary``):

- mean per-scan Dice and pooled 2-class mIoU over scans with a tumour, and per tumour class:
  A, B, B - A, its 95 % interval and the share of draws in which B is ahead;
- patients whose mean Dice went up or down by more than 0.01;
- tumour-free scans flagged by A, by B, and the discordant ones (flagged by one run only).

Writes ``compare_NAME.md`` and ``compare_NAME.json`` into ``--out`` (atomically).
"""

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from edge_runtime import metrics
from edge_runtime.evaluate import (BOOTSTRAP_RESAMPLES as RESAMPLES, BOOTSTRAP_SEED as SEED,
                                   family_of, family_totals, patient_draws, rows_from_csv)

PATIENT_CHANGE = 0.01


class CompareError(Exception):
    """Bad input: one line naming the file and the problem."""


def load_rows(path):
    """Run folder or scans CSV -> (label, rows)."""
    p = Path(path)
    csv_path = p / "val_scans.csv" if p.is_dir() else p
    if not csv_path.is_file():
        raise CompareError(f"{csv_path}: not found (expected a run folder with val_scans.csv, "
                           f"from 'edge-seg train --out RUN --report', or a *_scans.csv)")
    try:
        rows = rows_from_csv(csv_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise CompareError(f"{csv_path}: cannot read ({e})") from None
    need = {"key", "family", "has_tumour", "status", "dice", "tp", "fp", "fn", "tn",
            "any_tumour_predicted"}
    missing = need - set(rows[0] if rows else ())
    if missing:
        raise CompareError(f"{csv_path}: not a per-scan results CSV (missing columns: "
                           f"{', '.join(sorted(missing))})")
    return (p.name if p.is_dir() else p.stem), rows


def scan_row(sample, pred, truth):
    """The row ``compare`` needs of one scored scan (``datasets.Sample``, bool masks)."""
    tp, fp, fn, tn = metrics.confusion(pred, truth)
    return {"key": sample.key, "family": sample.family, "label_name": sample.label_name,
            "has_tumour": sample.has_tumour, "status": "ok",
            "dice": metrics.dice_from_counts(tp, fp, fn),
            "tp": tp, "fp": fp, "fn": fn, "tn": tn, "any_tumour_predicted": bool(pred.any())}


def _paired(rows_a, rows_b):
    """Match two row lists by scan key; only scans scored ok in both count."""
    # A scan is its source and its key (two sources may reuse keys), when both runs record
    # sources; a results file written before sources were recorded pairs by key alone.
    sourced = (any(r.get("source") for r in rows_a) and any(r.get("source") for r in rows_b))

    def key(r):
        return (r.get("source") or "" if sourced else "", str(r["key"]))
    a = {key(r): r for r in rows_a}
    b = {key(r): r for r in rows_b}
    if set(a) != set(b):
        only_a, only_b = len(set(a) - set(b)), len(set(b) - set(a))
        raise CompareError(f"the two runs scored different scans ({only_a} only in the first, "
                           f"{only_b} only in the second): compare runs on the same split")
    keys = sorted(k for k in a if a[k]["status"] == "ok" and b[k]["status"] == "ok")
    return [(a[k], b[k]) for k in keys]


def paired_difference(pairs, resamples=RESAMPLES, seed=SEED):
    """Pairs of rows (A, B) with a tumour -> dict of A, B, B - A and 95 % intervals.

    The bootstrap draws whole patient families with replacement; each draw's Dice is the
    mean over its scans (the headline per-scan mean) and its mIoU the pooled 2-class mIoU.
    """
    groups = {}
    for pair in pairs:
        groups.setdefault(family_of(pair[0]), []).append(pair)
    fams = sorted(groups)
    dice_a, n, conf_a = family_totals({f: [a for a, _ in groups[f]] for f in fams})
    dice_b, _, conf_b = family_totals({f: [b for _, b in groups[f]] for f in fams})
    out = {"n_scans": int(n.sum()), "n_patients": len(fams)}
    if not fams:
        return out
    full = {"dice_a": dice_a.sum() / n.sum(), "dice_b": dice_b.sum() / n.sum(),
            "miou_a": metrics.mean_iou_2class(*conf_a.sum(0)),
            "miou_b": metrics.mean_iou_2class(*conf_b.sum(0))}
    out.update({k: float(v) for k, v in full.items()})
    out["dice_diff"] = out["dice_b"] - out["dice_a"]
    out["miou_diff"] = out["miou_b"] - out["miou_a"]
    out.update({"dice_diff_ci95": [math.nan, math.nan], "miou_diff_ci95": [math.nan, math.nan],
                "dice_b_ahead": math.nan, "miou_b_ahead": math.nan})
    if len(fams) < 2 or resamples < 1:
        return out
    draw = patient_draws(len(fams), resamples, seed)
    scans = n[draw].sum(1)
    d_dice = (dice_b[draw].sum(1) - dice_a[draw].sum(1)) / scans
    ca, cb = conf_a[draw].sum(1), conf_b[draw].sum(1)
    d_miou = np.array([metrics.mean_iou_2class(*y) - metrics.mean_iou_2class(*x)
                       for x, y in zip(ca, cb)])
    out["dice_diff_ci95"] = [float(v) for v in np.percentile(d_dice, [2.5, 97.5])]
    out["miou_diff_ci95"] = [float(v) for v in np.percentile(d_miou, [2.5, 97.5])]
    out["dice_b_ahead"] = float(np.mean(d_dice > 0))
    out["miou_b_ahead"] = float(np.mean(d_miou > 0))
    return out


def compare(rows_a, rows_b, resamples=RESAMPLES, seed=SEED):
    """-> dict: overall and per-class paired differences, patients, tumour-free flags."""
    pairs = _paired(rows_a, rows_b)
    tumour = [p for p in pairs if p[0]["has_tumour"]]
    free = [p for p in pairs if not p[0]["has_tumour"]]
    classes = sorted({p[0].get("label_name") or "tumour" for p in tumour})
    by_class = {c: paired_difference([p for p in tumour if (p[0].get("label_name") or "tumour") == c],
                                     resamples, seed) for c in classes}
    fam = {}
    for ra, rb in tumour:
        fam.setdefault(family_of(ra), []).append((ra["dice"], rb["dice"]))
    changes = [float(np.mean([b for _, b in v]) - np.mean([a for a, _ in v])) for v in fam.values()]
    flag_a = sum(1 for a, _ in free if a["any_tumour_predicted"])
    flag_b = sum(1 for _, b in free if b["any_tumour_predicted"])
    return {
        "tumour": paired_difference(tumour, resamples, seed),
        "by_class": by_class,
        "patients": {"n": len(changes),
                      "better": sum(1 for c in changes if c > PATIENT_CHANGE),
                      "worse": sum(1 for c in changes if c < -PATIENT_CHANGE),
                      "within": sum(1 for c in changes if abs(c) <= PATIENT_CHANGE),
                      "threshold": PATIENT_CHANGE},
        "tumour_free": {"n": len(free), "flagged_a": flag_a, "flagged_b": flag_b,
                        "only_a": sum(1 for a, b in free if a["any_tumour_predicted"]
                                      and not b["any_tumour_predicted"]),
                        "only_b": sum(1 for a, b in free if b["any_tumour_predicted"]
                                      and not a["any_tumour_predicted"])},
        "bootstrap": {"resamples": int(resamples), "seed": int(seed), "unit": "patient family"},
        "by_source": by_source(pairs, resamples, seed),
    }


def by_source(pairs, resamples=RESAMPLES, seed=SEED):
    """{source: {"tumour": paired_difference, "by_class": ..., "tumour_free": {n, flagged_a,
    flagged_b}}} for rows that name their source (``source`` column); {} otherwise. A model
    is judged on its worst source, so each source gets its own paired interval."""
    names = sorted({a.get("source") or "" for a, _ in pairs})
    if names in ([], [""]):
        return {}
    out = {}
    for name in names:
        ps = [p for p in pairs if (p[0].get("source") or "") == name]
        tumour = [p for p in ps if p[0]["has_tumour"]]
        free = [p for p in ps if not p[0]["has_tumour"]]
        entry = {}
        if tumour:
            classes = sorted({p[0].get("label_name") or "tumour" for p in tumour})
            entry["tumour"] = paired_difference(tumour, resamples, seed)
            entry["by_class"] = {c: paired_difference(
                [p for p in tumour if (p[0].get("label_name") or "tumour") == c], resamples,
                seed) for c in classes}
            entry["missed_a"] = sum(1 for a, _ in tumour if a.get("pred_px") == 0)
            entry["missed_b"] = sum(1 for _, b in tumour if b.get("pred_px") == 0)
        if free:
            entry["tumour_free"] = {
                "n": len(free), "flagged_a": sum(1 for a, _ in free if a["any_tumour_predicted"]),
                "flagged_b": sum(1 for _, b in free if b["any_tumour_predicted"])}
        out[name or "unknown"] = entry
    return out


def _row(name, d):
    if "dice_a" not in d:
        return f"| {name} | 0 | | | | | | |"
    lo, hi = d["dice_diff_ci95"]
    mlo, mhi = d["miou_diff_ci95"]
    return (f"| {name} | {d['n_scans']} ({d['n_patients']}) | {d['dice_a']:.3f} | {d['dice_b']:.3f} "
            f"| {d['dice_diff']:+.3f} [{lo:+.3f}, {hi:+.3f}] | {d['dice_b_ahead']:.0%} "
            f"| {d['miou_a']:.3f} → {d['miou_b']:.3f} | {d['miou_diff']:+.3f} [{mlo:+.3f}, {mhi:+.3f}] |")


def to_markdown(result, name_a, name_b):
    t, pt, tf = result["tumour"], result["patients"], result["tumour_free"]
    lines = [
        f"# {name_b} against {name_a}, paired over the same validation patients",
        "",
        "Generated by `python -m bench.compare_runs` (do not edit by hand). A = "
        f"`{name_a}`, B = `{name_b}`. Intervals: 95 %, from a bootstrap over whole patient "
        f"families with the same draw for both runs ({result['bootstrap']['resamples']} draws, "
        f"seed {result['bootstrap']['seed']}). 'B ahead': share of draws with B - A > 0.",
        "",
        "| scans with a tumour | scans (patients) | Dice A | Dice B | B - A [95 %] | B ahead "
        "| mIoU A → B | mIoU B - A [95 %] |",
        "|---|---|---|---|---|---|---|---|",
        _row("all", t),
        *(_row(c, d) for c, d in result["by_class"].items()),
        "",
        f"Patients (mean Dice per patient): {pt['better']} of {pt['n']} better by more than "
        f"{pt['threshold']}, {pt['worse']} worse, {pt['within']} within.",
        "",
        f"Tumour-free scans flagged: A {tf['flagged_a']} of {tf['n']}, B {tf['flagged_b']} of "
        f"{tf['n']}; flagged by A only {tf['only_a']}, by B only {tf['only_b']}.",
        "",
    ]
    if result.get("by_source"):
        lines += ["Per source (the paired interval within each source; a model is judged on "
                  "its worst source):", "",
                  "| source: scans with a tumour | scans (groups) | Dice A | Dice B | "
                  "B - A [95 %] | B ahead | mIoU A → B | mIoU B - A [95 %] |",
                  "|---|---|---|---|---|---|---|---|"]
        free_lines = []
        for name, src in result["by_source"].items():
            if "tumour" in src:
                lines.append(_row(f"{name}", src["tumour"]))
                lines += [_row(f"{name}: {c}", d) for c, d in src["by_class"].items()]
            if "tumour_free" in src:
                f = src["tumour_free"]
                free_lines.append(f"- {name}: tumour-free scans flagged A {f['flagged_a']} of "
                                  f"{f['n']}, B {f['flagged_b']} of {f['n']}")
        lines += ["", *free_lines, ""]
    if "dice_diff_ci95" in t and all(math.isfinite(v) for v in t["dice_diff_ci95"]):
        lo, hi = t["dice_diff_ci95"]
        verdict = ("B is ahead beyond the patient-level noise" if lo > 0 else
                   "A is ahead beyond the patient-level noise" if hi < 0 else
                   "the interval includes 0: no evidence of a difference on these patients")
        lines += [f"Dice: {verdict}.", ""]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.compare_runs",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("a", help="baseline: run folder or *_scans.csv")
    parser.add_argument("b", help="challenger: run folder or *_scans.csv")
    parser.add_argument("--out", default=None, help="folder for compare_NAME.md/.json")
    parser.add_argument("--name", default=None, help="NAME (default: A_vs_B)")
    parser.add_argument("--resamples", type=int, default=RESAMPLES)
    args = parser.parse_args(argv)
    try:
        name_a, rows_a = load_rows(args.a)
        name_b, rows_b = load_rows(args.b)
        result = compare(rows_a, rows_b, resamples=args.resamples)
    except CompareError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    md = to_markdown(result, name_a, name_b)
    print(md)
    if args.out:
        from bench.samples import write_results
        stem = f"compare_{args.name or f'{name_b}_vs_{name_a}'}"
        write_results(args.out, stem, md, dict(result, a=name_a, b=name_b))
        print(f"wrote {Path(args.out) / stem}.md and .json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
