"""Did the validation scans leak into training? Near-twins across a run's split.

    python -m bench.lab.leakage --run runs/NAME [--scans CSV] [--threshold 0.98] [--out bench/results]
                            [--also runs/OTHER ...]

A split by patient family keeps a patient's slices on one side, but only where the data says
who the patient is. The tumour-free scans carry no patient id, so each is its own family, and
a set that holds the same image twice (re-encoded, resized) or neighbouring slices of one
patient can put one copy in training and the other in validation. A model then "validates"
on scans it has all but seen.

Every scan of the run's split is read as ``edge-seg run`` reads it, shrunk to 64x64 and
normalised (zero mean, unit norm); the similarity of two scans is the Pearson correlation of
those thumbnails (``edge_seg.train.twins``, which ``edge-seg train`` uses to keep such twins
out of the training side of new runs). For each validation scan: its most similar training scan. A validation scan
with a training scan at or above ``--threshold`` has a *training twin*. The tumour scans,
whose split is by patient family, are the control: their twins show how similar scans of
different patients get.

With the run's per-scan results (its ``val_scans.csv``, or ``--scans`` from ``edge-seg eval``)
the table also gives the share of tumour-free scans flagged, and the mean Dice, separately for
scans with and without a training twin: the numbers a scan from a new patient would see are
the ones without. ``--also`` adds other runs on the same split (their ``val_scans.csv``):
one row each in a table of tumour-free scans flagged with and without a twin. Writes
``leakage.md`` and ``leakage.json`` into ``--out``.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from edge_seg.train.twins import DEFAULT_THRESHOLD, THUMB, nearest, thumbnails


def _split_keys(run):
    """The validation keys of a run's split.json (what makes two runs' twins the same)."""
    from edge_runtime.errors import EdgeSegError
    try:
        split = json.loads((Path(run) / "split.json").read_text())
    except (OSError, ValueError) as exc:
        raise EdgeSegError(f"{run}: cannot read split.json ({exc})") from None
    return sorted(map(str, split.get("val_keys") or ())), sorted(
        map(str, split.get("val_negative_keys") or ()))


def _rate(k, n):
    from edge_runtime.evaluate import wilson_interval
    return {"k": int(k), "n": int(n), "rate": k / n if n else None,
            "ci95": wilson_interval(k, n) if n else None}


def summarise(val, best, match, train, threshold, scans=None):
    """-> dict: per group (tumour / tumour-free) the twin counts, and with ``scans``
    (per-scan result rows keyed by ``key``) the results with and without a twin."""
    by_key = {str(r["key"]): r for r in (scans or [])}
    out = {"threshold": threshold, "groups": {}, "twins": []}
    for group in ("tumour", "tumour-free"):
        idx = [i for i, s in enumerate(val) if (s.mask is not None) == (group == "tumour")]
        if not idx:
            continue
        sims = best[idx]
        twin = sims >= threshold
        g = {"scans": len(idx), "with_twin": int(twin.sum()),
             "similarity_quantiles": {q: float(np.quantile(sims, q / 100))
                                      for q in (10, 50, 90)}}
        if by_key:
            for name, sel in (("with_twin", twin), ("without_twin", ~twin)):
                rows = [by_key.get(val[i].key) for i, t in zip(idx, sel) if t]
                rows = [r for r in rows if r is not None and r.get("status") == "ok"]
                if group == "tumour":
                    dice = [float(r["dice"]) for r in rows]
                    g[f"dice_{name}"] = {"n": len(dice),
                                         "mean": float(np.mean(dice)) if dice else None}
                else:
                    flagged = sum(bool(r["any_tumour_predicted"]) for r in rows)
                    g[f"flagged_{name}"] = _rate(flagged, len(rows))
        out["groups"][group] = g
        out["twins"] += [{"val": val[i].key, "train": train[match[i]].key,
                          "similarity": round(float(best[i]), 5), "group": group}
                         for i in idx if best[i] >= threshold]
    return out


def _pct(r, interval):
    if r["rate"] is None:
        return ""
    ci = (f" [{100 * r['ci95'][0]:.1f}, {100 * r['ci95'][1]:.1f}]" if interval else "")
    return f" ({100 * r['rate']:.1f} %{ci})"


def to_markdown(result, source):
    t = result["threshold"]
    lines = ["# Validation scans with a training twin", "",
             f"Split: {source} (`python -m bench.lab.leakage`). Similarity: the correlation of "
             f"{THUMB}x{THUMB} thumbnails; a training twin: a training scan at ≥ {t}. The "
             "tumour scans (split by patient family) are the control.", "",
             "| validation scans | n | with a training twin | similarity to the nearest "
             "training scan: 10th / 50th / 90th percentile |", "|---|---|---|---|"]
    for name, g in result["groups"].items():
        q = g["similarity_quantiles"]
        lines.append(f"| {name} | {g['scans']} | {g['with_twin']} "
                     f"({100 * g['with_twin'] / g['scans']:.0f} %) | "
                     f"{q[10]:.3f} / {q[50]:.3f} / {q[90]:.3f} |")
    free = result["groups"].get("tumour-free", {})
    if "flagged_with_twin" in free:
        lines += ["", f"Results ({result.get('scans_source', 'per-scan results')}):", "",
                  "| tumour-free scans | n | flagged | rate [95 % Wilson interval] |",
                  "|---|---|---|---|"]
        for name in ("with_twin", "without_twin"):
            r = free[f"flagged_{name}"]
            rate = ("—" if r["rate"] is None else
                    f"{100 * r['rate']:.1f} % [{100 * r['ci95'][0]:.1f}, "
                    f"{100 * r['ci95'][1]:.1f}]")
            lines.append(f"| {name.replace('_', ' a training ')} | {r['n']} | {r['k']} | "
                         f"{rate} |")
    if result.get("runs"):
        lines += ["", "Tumour-free validation scans flagged, each run at the post-processing "
                  "its own report chose:", "",
                  "| run | all | with a training twin | without one [95 % Wilson interval] |",
                  "|---|---|---|---|"]
        for r in result["runs"]:
            w, wo = r["with_twin"], r["without_twin"]
            lines.append(f"| {r['run']} | {w['k'] + wo['k']} of {w['n'] + wo['n']} | "
                         f"{w['k']} of {w['n']}{_pct(w, False)} | {wo['k']} of "
                         f"{wo['n']}{_pct(wo, True)} |")
    tumour = result["groups"].get("tumour", {})
    if "dice_without_twin" in tumour:
        d = tumour["dice_without_twin"]
        w = tumour["dice_with_twin"]
        lines += ["", f"Tumour scans: mean Dice {d['mean']:.4f} over {d['n']} without a "
                  "training twin" + (f", {w['mean']:.4f} over {w['n']} with one" if w["n"]
                                     else "; none has one") + "."]
    lines.append("")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.lab.leakage", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="training run folder (its split.json)")
    ap.add_argument("--data", action="append", default=[],
                    help="the run's data folders, if not where its config.json says")
    ap.add_argument("--scans", default=None,
                    help="per-scan results CSV (default: the run's val_scans.csv)")
    ap.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    ap.add_argument("--also", action="append", default=[],
                    help="another run on the same split (its val_scans.csv); repeatable")
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args(argv)
    if not 0.0 < args.threshold <= 1.0:
        ap.error(f"--threshold must be in (0, 1], got {args.threshold}")

    from edge_runtime import atomic
    from edge_runtime.errors import EdgeSegError
    from edge_runtime.evaluate import rows_from_csv, run_split_samples, to_json

    def log(m):
        print(f"leakage: {m}", file=sys.stderr)
    try:
        train, val, _info = run_split_samples(args.run, args.data or None)
        scans_path = Path(args.scans) if args.scans else Path(args.run) / "val_scans.csv"
        scans = rows_from_csv(scans_path.read_text()) if scans_path.is_file() else None
        if args.scans and scans is None:
            raise EdgeSegError(f"{scans_path}: not found")
        split = _split_keys(args.run)
        others = []
        for other in args.also:
            if _split_keys(other) != split:
                raise EdgeSegError(f"{other}: not split as {args.run}; its twins would differ")
            csv_path = Path(other) / "val_scans.csv"
            if not csv_path.is_file():
                raise EdgeSegError(f"{csv_path}: not found (edge-seg train --out {other} "
                                   "--report writes it)")
            others.append((Path(other).name, rows_from_csv(csv_path.read_text())))
    except (EdgeSegError, OSError, ValueError) as exc:
        log(str(exc))
        return 2
    train_vecs, train, failed = thumbnails(train, log)
    val_vecs, val, failed_val = thumbnails(val, log)
    best, match = nearest(val_vecs, train_vecs)
    result = summarise(val, best, match, train, args.threshold, scans)
    result["scans_source"] = str(scans_path) if scans else None
    scored = ([(Path(args.run).name, result)] if scans else []) + [
        (name, summarise(val, best, match, train, args.threshold, rows)) for name, rows in others]
    frees = [(name, r["groups"].get("tumour-free", {})) for name, r in scored]
    result["runs"] = [{"run": name, "with_twin": free["flagged_with_twin"],
                       "without_twin": free["flagged_without_twin"]}
                      for name, free in frees if "flagged_with_twin" in free]
    result["unreadable"] = failed + failed_val
    source = f"{Path(args.run).name}: {len(train)} training and {len(val)} validation scans"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out / "leakage.md", to_markdown(result, source))
    atomic.write_text(out / "leakage.json", to_json(dict(result, split=source)))
    for path, problem in result["unreadable"]:
        log(f"{path}: {problem}")
    print(json.dumps({"written": [str(out / "leakage.md"), str(out / "leakage.json")]}))
    return 1 if result["unreadable"] else 0


if __name__ == "__main__":
    sys.exit(main())
