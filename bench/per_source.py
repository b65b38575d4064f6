"""A bundle scored per source and per tumour class: the table a model is judged by.

    python -m bench.per_source BUNDLE --run runs/robust_ft [--out bench/results] [--stem per_source]

Scores BUNDLE (at its own post-processing setting) on the validation split of a run trained
with ``--split-by-source`` (runs/ROBUST.md: figshare validation patients, the BRISC
validation groups, the notumor and brisc_notumor validation parts) with the one evaluation
loop (``edge_runtime.evaluate``): per source, Dice with its patient/group bootstrap interval,
per tumour class, scans missed, and tumour-free scans flagged with a Wilson interval; then
the worst source. Writes ``STEM.md``, ``STEM.json`` and ``STEM_scans.csv`` (per scan, for
``python -m bench.compare_runs``) into ``--out``, atomically.
"""

import math
import sys

from bench.samples import make_parser, run_measurement

PROG = "bench.per_source"


def _f(v, digits=3):
    return "–" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


def measure(bundle, samples, log, threads=None):
    from edge_runtime.evaluate import evaluate_bundle
    log(f"scoring {bundle.name} on {len(samples)} scans")
    result = evaluate_bundle(bundle, samples, threads=threads)
    s = result.summary
    return {"bundle": s["model"], "setting": {k: s[k] for k in (
                "threshold", "min_area_fraction", "min_peak_probability")},
            "by_source": s.get("by_source") or {}, "worst_source": s.get("worst_source"),
            "failures": result.failures, "_rows": result.rows}


def render(result, scans, command):
    lines = [f"# Per source: {result['bundle']['name']}", "",
             f"Command: `{command}`", "",
             f"Scans: {scans}. Setting: threshold {result['setting']['threshold']}, "
             f"min_area_fraction {result['setting']['min_area_fraction']}, "
             f"min_peak_probability {result['setting']['min_peak_probability']} (the "
             f"bundle's own). Dice: mean per scan, 95 % interval from a bootstrap over "
             f"patient families (figshare) or similarity groups (BRISC); flagged: tumour-free "
             f"scans with any predicted tumour, Wilson 95 % interval. Research software, not "
             f"a medical device.", "",
             "| source | scans | groups | Dice [95 %] | glioma | meningioma | pituitary | "
             "missed | tumour-free flagged [95 %] |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, src in result["by_source"].items():
        g, f = src.get("tumour"), src.get("tumour_free")
        cells = [name, str(src["n_tumour"] or src["n_tumour_free"])]
        if g:
            lo, hi = src["by_patient"]["bootstrap"]["dice_mean_ci95"]
            cls = src["by_class"]
            cells += [str(src["by_patient"]["n_patients"]),
                      f"{_f(g['dice_mean'])} [{_f(lo)}, {_f(hi)}]"]
            cells += [_f(cls[c]["dice_mean"]) + f" (n={cls[c]['n']})" if c in cls else "–"
                      for c in ("glioma", "meningioma", "pituitary")]
            cells.append(str(g["missed_scans"]))
        else:
            cells += ["–"] * 6
        if f:
            lo, hi = f["fp_scan_rate_ci95"]
            cells.append(f"{f['fp_scans']}/{f['n']} = {100 * f['fp_scan_rate']:.1f} % "
                         f"[{100 * lo:.1f}, {100 * hi:.1f}]")
        else:
            cells.append("–")
        lines.append("| " + " | ".join(cells) + " |")
    w = result.get("worst_source") or {}
    lines.append("")
    if w.get("dice_mean"):
        lines.append(f"Worst source for Dice: **{w['dice_mean']['source']}** "
                     f"({_f(w['dice_mean']['value'])}).")
    if w.get("fp_scan_rate"):
        lines.append(f"Worst source for false alarms: **{w['fp_scan_rate']['source']}** "
                     f"({100 * w['fp_scan_rate']['value']:.1f} % flagged).")
    if result["failures"]:
        lines.append(f"{len(result['failures'])} scans failed: see the JSON.")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = make_parser(PROG, __doc__)
    ap.add_argument("--stem", default="per_source", help="output file names (default per_source)")
    args = ap.parse_args(argv)
    command = "python -m " + PROG + " " + " ".join(sys.argv[1:] if argv is None else argv)
    rows = []

    def run(bundle, samples, log):
        result = measure(bundle, samples, log, args.threads)
        rows.extend(result.pop("_rows"))
        result["command"] = command
        return result

    code = run_measurement(ap, args, PROG, run, lambda r, s: render(r, s, command), args.stem)
    if rows:
        from pathlib import Path

        from edge_runtime import atomic
        from edge_runtime.evaluate import rows_to_csv
        atomic.write_text(Path(args.out) / f"{args.stem}_scans.csv", rows_to_csv(rows))
    return code


if __name__ == "__main__":
    sys.exit(main())
