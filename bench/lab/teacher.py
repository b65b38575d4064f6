"""A teacher for distillation, scored as a run's report: the mean of several BUNDLES.

    python -m bench.lab.teacher BUNDLE [BUNDLE ...] --split-from runs/robust_ft --out runs/NAME

The bundles' probability maps (each with the device interpreter, in the model's input
space) are averaged scan by scan, exactly as ``edge-seg train --teacher`` averages them for
its targets (``edge_seg.train.distill.load_teacher``), and the mean is scored on the
validation split of ``--split-from`` as a run's own report is (``train.report``: the
post-processing chosen on validation by the same rule, every scan at its own resolution).
``--out`` becomes a run folder (``config.json`` naming the teacher, ``split.json``,
``report.json``, ``val_scans.csv``), so ``python -m bench.compare_runs`` pairs it with any
run or bundle scored on the same split (runs/DISTILL.md).

A bundle that preprocesses otherwise than the run, an untrusted or unreadable bundle, a
missing run file, or an ``--out`` that exists: one line on stderr, exit code 2.
"""

import argparse
import json
import sys
from pathlib import Path

EXIT_USAGE = 2


def teacher_report(bundles, split_from, out_dir, threads=None, limit=None, log=print):
    """Score the mean of ``bundles`` into the new run folder ``out_dir`` -> report dict."""
    from edge_seg.train.distill import load_teacher
    from edge_seg.train.report import report_predictions
    from edge_seg.train.trainer import write_record

    src, out = Path(split_from), Path(out_dir)
    for name in ("config.json", "split.json"):
        if not (src / name).is_file():
            raise FileNotFoundError(f"{src}: no {name} (a training run folder has one)")
    if out.exists():
        raise FileExistsError(f"{out}: already exists; a teacher is scored into a new folder")
    config = json.loads((src / "config.json").read_text())
    predict, records = load_teacher(bundles, config["preprocessing"], threads=threads)
    out.mkdir(parents=True)
    write_record(out / "config.json", dict(config, teacher_bundles=records,
                                           teacher={"split_from": str(src),
                                                    "combine": "mean probability"}))
    write_record(out / "split.json", json.loads((src / "split.json").read_text()))
    return report_predictions(out, predict, f"mean of {len(records)} bundles",
                              limit=limit, log=log)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.lab.teacher",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("bundles", nargs="+", help="bundle zips (one preprocessing for all)")
    ap.add_argument("--split-from", required=True, help="the run whose validation split is scored")
    ap.add_argument("--out", required=True, help="the new run folder for the teacher")
    ap.add_argument("--threads", type=int, default=None, help="interpreter threads")
    ap.add_argument("--limit", type=int, default=None, help="score only the first N scans")
    args = ap.parse_args(argv)
    from edge_runtime.errors import EdgeSegError
    try:
        report = teacher_report(args.bundles, args.split_from, args.out, args.threads,
                                args.limit, log=lambda m: print(m, file=sys.stderr))
    except (ValueError, FileNotFoundError, FileExistsError, EdgeSegError) as e:
        print(f"teacher: {e}", file=sys.stderr)
        return EXIT_USAGE
    print(f"{args.out}: Dice {report['dice_mean']:.4f}, tumour-free flagged "
          f"{report['fp_scan_rate']:.3f} (threshold {report['threshold']}, min_area_fraction "
          f"{report['min_area_fraction']}, min_peak_probability "
          f"{report['min_peak_probability']})")
    by_source = (report.get("summary") or {}).get("by_source") or {}
    if by_source:
        from edge_runtime.commands.evaluate import source_lines
        for line in source_lines(by_source, report["summary"].get("worst_source") or {}):
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
