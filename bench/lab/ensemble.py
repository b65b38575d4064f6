"""Would the mean of several models beat the best of them? The ensemble check of our runs.

    python -m bench.lab.ensemble runs/A runs/B [runs/C ...] --out runs/NAME [--results bench/results]

Each run's ``best.keras`` predicts every validation scan; the probability maps are averaged
scan by scan, and the mean is scored exactly as a run's own report is (``train.report``: the
post-processing chosen on validation by the same rule, every scan at its own resolution).
``--out`` becomes a run folder (``config.json`` naming the members, ``split.json``,
``report.json``, ``val_scans.csv``), so ``python -m bench.compare_runs runs/A runs/NAME``
pairs it with any member over the same patients. A table of the members and their mean is
printed and, with ``--results``, written there as ``ensemble_NAME.md`` / ``.json``.

An ensemble of N networks costs N times the latency, so it is not a model to ship under the
speed target. It is a measurement: if the mean is clearly better than its best member, the
members' errors are their own and distilling the mean into one edge network could help; if
it is not, the errors are shared, and a better teacher, more data or more context is needed.

The runs must share their validation split and their preprocessing (one input for all);
anything else, a missing file, or an ``--out`` that exists is refused with one line on
stderr and exit code 2.
"""

import argparse
import json
import sys
from pathlib import Path

EXIT_USAGE = 2


def mean_predictor(predict_fns):
    """``predict_fn``s -> one that returns the mean of their probability maps (the one
    helper of ``edge_seg.train.distill``, whose teacher is such a mean)."""
    from edge_seg.train.distill import mean_predictor as mean
    return mean(predict_fns)


class EnsembleError(ValueError):
    """The runs cannot be averaged into one validation report."""


def read_members(runs, checkpoint="best.keras"):
    """-> [(run Path, config, split)] for ``runs``; raises ``EnsembleError`` when they do not
    share a split and a preprocessing, or lack a file a run folder has."""
    if len(runs) < 2:
        raise EnsembleError(f"an ensemble needs at least 2 runs, got {len(runs)}")
    members = []
    for run in map(Path, runs):
        for name in ("config.json", "split.json", "report.json", checkpoint):
            if not (run / name).is_file():
                raise EnsembleError(f"{run}: no {name} (a reported training run folder has "
                                    "one)")
        members.append((run, json.loads((run / "config.json").read_text()),
                        json.loads((run / "split.json").read_text())))
    first, cfg0, split0 = members[0]
    for run, cfg, split in members[1:]:
        if split != split0:
            raise EnsembleError(f"{first} and {run} were split differently: their "
                                "probability maps are not of the same scans")
        if cfg.get("preprocessing") != cfg0.get("preprocessing"):
            raise EnsembleError(f"{first} and {run} differ in preprocessing "
                                f"({cfg0.get('preprocessing')!r} against "
                                f"{cfg.get('preprocessing')!r}): one input cannot feed both")
    if len({str(r.resolve()) for r, _, _ in members}) != len(members):
        raise EnsembleError("a run is named twice: " + ", ".join(str(r) for r, _, _ in members))
    return members


def summary_row(name, report):
    """One table row from a report.json dict."""
    s = report["summary"]
    return {"run": name, "dice_mean": report["dice_mean"],
            "dice_ci95": ((s.get("by_patient") or {}).get("bootstrap") or {}).get(
                "dice_mean_ci95"),
            "miou_2class_pooled": report["miou_2class_pooled"],
            "fp_scan_rate": report["fp_scan_rate"],
            "missed_scans": (s.get("tumour") or {}).get("missed_scans"),
            "dice_by_class": {c: v.get("dice_mean")
                              for c, v in (s.get("by_class") or {}).items()},
            "setting": [report["threshold"], report["min_area_fraction"],
                        report.get("min_peak_probability", 0.0)]}


def to_markdown(rows, name):
    classes = sorted({c for r in rows for c in r["dice_by_class"]})
    head = ["model", "Dice [95 % interval over patients]", "mIoU (2-class)",
            "tumour-free flagged", "missed"] + classes + ["threshold / min area / min peak"]
    lines = [f"# Ensemble check: {name}", "",
             "Validation split, every scan at its own resolution, each at the post-processing "
             "its own report chose (`python -m bench.lab.ensemble`). The last row averages the "
             "members' probability maps.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def f(v, d=4):
        return "—" if v is None else f"{v:.{d}f}"
    for r in rows:
        ci = r["dice_ci95"]
        cells = [r["run"], f(r["dice_mean"]) + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""),
                 f(r["miou_2class_pooled"]),
                 "—" if r["fp_scan_rate"] is None else f"{100 * r['fp_scan_rate']:.1f} %",
                 str(r["missed_scans"])] + [f(r["dice_by_class"].get(c), 3) for c in classes]
        cells.append(" / ".join(f"{v:g}" for v in r["setting"]))
        lines.append("| " + " | ".join(cells) + " |")
    best = max(rows[:-1], key=lambda r: r["dice_mean"])
    gain = rows[-1]["dice_mean"] - best["dice_mean"]
    lines += ["", f"Mean of {len(rows) - 1} against its best member ({best['run']}): "
              f"{gain:+.4f} Dice. Paired over patients: `python -m bench.compare_runs "
              f"runs/{best['run']} runs/{name}`.", ""]
    return "\n".join(lines)


def ensemble(runs, out_dir, checkpoint="best.keras", limit=None, log=print):
    """Score the mean of ``runs`` into the new run folder ``out_dir`` -> (rows, report)."""
    members = read_members(runs, checkpoint)
    out = Path(out_dir)
    if out.exists():
        raise EnsembleError(f"{out}: already exists; an ensemble is written to a new folder")

    import keras

    import edge_seg.train.models  # noqa: F401 - registers the custom layers for loading
    from edge_runtime.evaluate import predict_fn_for_keras
    from edge_seg.train.report import report_predictions
    from edge_seg.train.trainer import write_record

    fns = [predict_fn_for_keras(keras.models.load_model(run / checkpoint, compile=False))
           for run, _, _ in members]
    _, cfg0, split0 = members[0]
    names = [run.name for run, _, _ in members]
    config = dict(cfg0, ensemble={"members": [str(r) for r, _, _ in members],
                                  "checkpoint": checkpoint, "combine": "mean probability"})
    out.mkdir(parents=True)
    write_record(out / "config.json", config)
    write_record(out / "split.json", split0)
    report = report_predictions(out, mean_predictor(fns),
                                f"mean of {len(fns)} models' {checkpoint}", limit=limit, log=log)
    rows = [summary_row(n, json.loads((r / "report.json").read_text()))
            for n, (r, _, _) in zip(names, members)]
    rows.append(summary_row(out.name, report))
    return rows, report


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.lab.ensemble",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="reported run folders (runs/NAME)")
    ap.add_argument("--out", required=True, help="the new run folder for the ensemble")
    ap.add_argument("--results", default=None, help="folder for ensemble_NAME.md / .json")
    ap.add_argument("--checkpoint", default="best.keras")
    ap.add_argument("--limit", type=int, default=None, help="score only the first N scans")
    args = ap.parse_args(argv)
    try:
        rows, _ = ensemble(args.runs, args.out, args.checkpoint, args.limit)
    except (EnsembleError, FileExistsError) as e:
        print(f"ensemble: {e}", file=sys.stderr)
        return EXIT_USAGE
    name = Path(args.out).name
    md = to_markdown(rows, name)
    print(md)
    if args.results:
        from bench.samples import write_results
        write_results(args.results, f"ensemble_{name}", md, {"name": name, "rows": rows})
        print(f"wrote {Path(args.results) / ('ensemble_' + name)}.md and .json",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
