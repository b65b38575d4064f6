"""``edge-seg eval``: score a bundle on labelled scans or tumour-free scans."""

import math
import sys
from pathlib import Path

import click

from edge_runtime.commands.options import postprocess_overrides, trust_options
from edge_runtime.errors import EXIT_OK, EXIT_SOME_FAILED, EdgeSegError
from edge_runtime.safeio import one_line, shown


def gather(data_dirs):
    """--data folders -> (samples, [{path, layout, scans}])."""
    from edge_runtime.datasets import discover
    samples, found = [], []
    for d in data_dirs:
        try:
            layout, s = discover(d)
        except (ValueError, OSError) as exc:
            raise EdgeSegError(f"--data {d}: {exc}") from None
        found.append({"path": str(d), "layout": layout, "scans": len(s)})
        samples.extend(s)
    return samples, found


def evenly_spaced(items, n):
    """``n`` items spread evenly over ``items`` in order (all of them when n is None)."""
    items = list(items)
    if n is None or n >= len(items):
        return items
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


def _pct(v):
    return "-" if v is None or not math.isfinite(v) else f"{v:.4f}"


def summary_lines(summary):
    """A short human summary of an evaluation."""
    s = summary
    lines = [f"scans: {s['n_scored']} scored ({s['n_tumour']} with a tumour, "
             f"{s['n_tumour_free']} tumour-free), {s['n_failed']} failed"]
    if s["n_tumour"]:
        lines.append(
            f"tumour scans: Dice {_pct(s['dice_mean'])} (mean per scan), "
            f"{_pct(s['dice_pooled'])} (pooled); IoU {_pct(s['iou_mean'])} (mean per scan); "
            f"2-class mIoU {_pct(s['miou_2class_pooled'])} (pooled, Keras MeanIoU); "
            f"precision {_pct(s['precision_pooled'])}, recall {_pct(s['recall_pooled'])}; "
            f"HD95 median {_pct(s['hd95_px_median'])} px")
        lines.append(f"  tumour missed (nothing predicted): {s['tumour']['missed_scans']} of "
                     f"{s['n_tumour']} scans")
        bp = s.get("by_patient") or {}
        if bp.get("n_patients"):
            d_lo, d_hi = bp["bootstrap"]["dice_mean_ci95"]
            m_lo, m_hi = bp["bootstrap"]["miou_2class_pooled_ci95"]
            lines.append(f"  {bp['n_patients']} patients: 95 % interval (patient bootstrap) "
                         f"Dice {_pct(d_lo)}-{_pct(d_hi)}, mIoU {_pct(m_lo)}-{_pct(m_hi)}; "
                         f"{bp['patients_dice_below_0_5']} of them average below Dice 0.5")
        for name, g in s["by_class"].items():
            lines.append(f"  {name:<12} n={g['n']:<5} Dice {_pct(g['dice_mean'])}  "
                         f"IoU {_pct(g['iou_mean'])}  mIoU {_pct(g['miou_2class_pooled'])}  "
                         f"HD95 {_pct(g['hd95_px_median'])} px  missed {g['missed_scans']}")
    tf = s["tumour_free"]
    if tf["n"]:
        lines.append(f"tumour-free scans: {tf['fp_scans']}/{tf['n']} with a predicted tumour "
                     f"(false-positive scan rate {_pct(tf['fp_scan_rate'])}, 95 % interval "
                     f"{_pct(tf['fp_scan_rate_ci95'][0])}-{_pct(tf['fp_scan_rate_ci95'][1])})")
    if len(s.get("by_source") or {}) > 1:
        lines.extend(source_lines(s["by_source"], s.get("worst_source") or {}))
    return lines


def source_lines(by_source, worst):
    """One line per source (Dice with its patient/group interval, per class; tumour-free
    scans flagged with their Wilson interval) and the worst source."""
    lines = ["per source (a model is judged on its worst source):"]
    for name, src in by_source.items():
        parts = []
        if src.get("tumour"):
            g, bp = src["tumour"], src["by_patient"]
            lo, hi = bp["bootstrap"]["dice_mean_ci95"]
            classes = ", ".join(f"{c} {_pct(v['dice_mean'])}"
                                for c, v in src["by_class"].items())
            ci = f" [{_pct(lo)}-{_pct(hi)}]" if lo is not None and math.isfinite(lo) else ""
            parts.append(f"Dice {_pct(g['dice_mean'])}{ci} over "
                         f"{g['n']} scans / {bp['n_patients']} groups ({classes}); missed "
                         f"{g['missed_scans']}")
        if src.get("tumour_free"):
            f = src["tumour_free"]
            lo, hi = f["fp_scan_rate_ci95"]
            parts.append(f"tumour-free flagged {f['fp_scans']}/{f['n']} = "
                         f"{_pct(f['fp_scan_rate'])} [{_pct(lo)}-{_pct(hi)}]")
        lines.append(f"  {name:<14} " + "; ".join(parts))
    d, f = worst.get("dice_mean"), worst.get("fp_scan_rate")
    if d:
        lines.append(f"  worst Dice: {d['source']} {_pct(d['value'])}")
    if f:
        lines.append(f"  worst false alarms: {f['source']} {_pct(f['value'])}")
    return lines


@click.command("eval")
@click.argument("bundle_path", metavar="BUNDLE", type=click.Path(path_type=Path, readable=False))
@click.option("--data", "data_dirs", multiple=True, type=click.Path(path_type=Path),
              help="Scans to score (repeatable): a figshare folder (metadata.csv), "
                   "images/ + masks/, scans with a truth/ (or masks/) subfolder such as "
                   "examples/, or a folder of tumour-free scans.")
@click.option("--split", type=click.Choice(["val"]), default=None,
              help="Score only a training run's validation split (needs --run).")
@click.option("--run", "run_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Training run folder (runs/NAME) whose split --split uses; "
                                 "its data folders are used unless --data is given.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Write eval_scans.csv (per scan) and eval_summary.json here.")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Score only N scans, spread evenly over all the scans found.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Interpreter threads (default: CPU count, at most 4).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary JSON to stdout.")
@trust_options
@postprocess_overrides
@click.pass_context
def evaluate(ctx, bundle_path, data_dirs, split, run_dir, out_dir, limit, threads, as_json,
             allow_untrusted, trust_file, threshold, min_area_fraction, min_peak_probability):
    """Score BUNDLE (.zip, unpacked folder or bare .tflite) on labelled scans (Dice, IoU,
    2-class mIoU, precision, recall, HD95, overall and per tumour class) and on tumour-free
    scans (the share with any predicted tumour). Masks are scored at each scan's full size,
    after the bundle's own threshold, small-component and peak filters (or those given).

    Exit codes: 0 all scans scored, 1 some scans failed (listed), 2 usage, 3 bundle problem
    (also: not trusted).
    """
    from edge_runtime.trust import load_trusted_bundle
    from edge_runtime.evaluate import evaluate_bundle, run_validation_samples, to_json, \
        write_results

    def fail(exc):
        click.echo(f"edge-seg eval: {exc}", err=True)
        ctx.exit(exc.exit_code)

    try:
        if split and run_dir is None:
            raise EdgeSegError("--split val needs --run RUN_DIR (the training run folder)")
        if run_dir is not None and not split:
            raise EdgeSegError("--run is only used with --split val")
        if split:
            samples, info = run_validation_samples(run_dir, data_dirs or None)
            sources = info
        else:
            if not data_dirs:
                raise EdgeSegError("nothing to score: pass --data DIR "
                                   "(or --split val --run RUN_DIR)")
            samples, sources = gather(data_dirs)
        if not samples:
            raise EdgeSegError("no scans found in " + ", ".join(map(str, data_dirs)))
        samples = evenly_spaced(samples, limit)
        bundle = load_trusted_bundle(bundle_path, allow_untrusted=allow_untrusted,
                                     trust_file=trust_file, threshold=threshold,
                                     min_area_fraction=min_area_fraction,
                                     min_peak_probability=min_peak_probability)
        for warning in bundle.warnings:
            click.echo(f"warning: {one_line(warning)}", err=True)
        if out_dir is not None:
            try:
                out_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise EdgeSegError(f"{out_dir}: cannot create the output folder "
                                   f"({exc.strerror or exc})") from None
        result = evaluate_bundle(bundle, samples, threads=threads,
                                 progress=sys.stderr.isatty() and not as_json)
    except EdgeSegError as exc:
        fail(exc)
    result.summary["data"] = sources
    result.summary["bundle_path"] = str(bundle_path)
    if as_json:
        click.echo(to_json(result.summary), nl=False)
    else:
        for line in summary_lines(result.summary):
            click.echo(line)
    if out_dir is not None:
        try:
            csv_path, json_path = write_results(result, out_dir)
        except OSError as exc:
            fail(EdgeSegError(f"{out_dir}: cannot write results ({exc.strerror or exc})"))
        click.echo(f"wrote {csv_path} and {json_path}", err=True)
    for path, problem in result.failures:
        click.echo(f"  failed: {shown(path)}: {one_line(problem)}", err=True)
    ctx.exit(EXIT_SOME_FAILED if result.failures else EXIT_OK)
