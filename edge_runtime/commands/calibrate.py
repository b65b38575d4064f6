"""``edge-seg calibrate``: check a bundle on a site's tumour-free scans and write a site bundle
whose setting keeps false alarms at or under a target (``edge_runtime.calibrate``)."""

from pathlib import Path

import click

from edge_runtime.commands.options import trust_options
from edge_runtime.errors import EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EdgeSegError
from edge_runtime.safeio import one_line


def _pct(v):
    return f"{100 * v:.1f} %"


def _fa(fa):
    return (f"{fa['flagged']}/{fa['n']} flagged = {_pct(fa['rate'])} (95 % interval "
            f"{_pct(fa['ci95'][0])} to {_pct(fa['ci95'][1])})")


def report_lines(result, out):
    c, o = result["chosen"], result["original"]
    lines = [f"bundle {result['bundle']['name']} on {result['negatives']['scored']} tumour-free "
             f"scans of {result['negatives']['folder']}: {_fa(result['before'])}",
             f"setting chosen (target {_pct(result['target_fpr'])}, "
             f"{result['criterion_meaning']}): threshold {c['threshold']}, min_area_fraction "
             f"{c['min_area_fraction']}, min_peak_probability {c['min_peak_probability']}: "
             f"{_fa(c['false_alarms'])}"]
    if "missed" in c:
        lines.append(f"cost on {c['tumour_scans']} labelled tumour scans: missed "
                     f"{o['missed']} -> {c['missed']}, mean Dice {o['dice_mean']:.4f} -> "
                     f"{c['dice_mean']:.4f}")
    else:
        lines.append("no --labelled scans: the loss of sensitivity is not measured (the "
                     "setting is the least strict of a chain of nested filters that meets "
                     "the target)")
    lines.append(f"wrote {out} (the original bundle is unchanged). Research software, not a "
                 f"medical device.")
    return lines


@click.command("calibrate")
@click.argument("bundle_path", metavar="BUNDLE", type=click.Path(path_type=Path))
@click.option("--negatives", "negatives", required=True, type=click.Path(path_type=Path),
              help="A folder of the site's own tumour-free scans (at least 73 for a 5 % "
                   "target).")
@click.option("--labelled", "labelled", multiple=True, type=click.Path(path_type=Path),
              help="Optional labelled scans of the site (figshare layout, images/ + masks/, "
                   "or scans with a truth/ subfolder), to measure the loss of sensitivity. "
                   "Repeatable.")
@click.option("--target-fpr", default=0.05, show_default=True,
              type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Largest share of tumour-free scans allowed to be flagged.")
@click.option("--criterion", type=click.Choice(["upper", "point"]), default="upper",
              show_default=True,
              help="upper: the 95 % Wilson upper bound must meet the target (safe with few "
                   "scans); point: the observed rate must.")
@click.option("--out", "out_path", required=True, type=click.Path(path_type=Path),
              help="The new site bundle (.zip); never an existing file.")
@click.option("--name", default=None, help="Name of the new bundle (default: NAME_site).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Interpreter threads (default: CPU count, at most 4).")
@click.option("--json", "as_json", is_flag=True, help="Print the calibration JSON to stdout.")
@trust_options
@click.pass_context
def calibrate(ctx, bundle_path, negatives, labelled, target_fpr, criterion, out_path, name,
              threads, as_json, allow_untrusted, trust_file):
    """Check BUNDLE on a site's own tumour-free scans and write a site bundle.

    Reports the bundle's false-alarm rate on --negatives with a Wilson interval, chooses the
    setting (threshold, smallest area, peak probability) that keeps false alarms at or under
    --target-fpr with the least loss of sensitivity (on --labelled when given), and writes a
    NEW bundle with that setting and the evidence in its manifest.

    Exit codes: 0 written, 1 written but some scans failed (listed), 2 bad input (too few
    scans, unreadable folder, existing --out), 3 bundle problem, 5 target cannot be met.
    """
    from edge_runtime.calibrate import calibrate as run_calibration
    from edge_runtime.calibrate import trust_site_bundle, write_site_bundle
    from edge_runtime.evaluate import to_json

    try:
        if out_path.exists():
            raise EdgeSegError(f"--out {out_path}: already exists; nothing is overwritten "
                               f"(give a new file name)")
        from edge_runtime.trust import load_trusted_bundle
        bundle = load_trusted_bundle(bundle_path, allow_untrusted=allow_untrusted,
                                     trust_file=trust_file)
        for warning in bundle.warnings:
            click.echo(f"warning: {one_line(warning)}", err=True)
        result = run_calibration(bundle, negatives, labelled, target_fpr, criterion,
                                 threads=threads, progress=False)
        written = write_site_bundle(bundle, result, out_path, name)
        result["trusted"] = trust_site_bundle(written, trust_file) is not None
    except EdgeSegError as exc:
        click.echo(f"edge-seg calibrate: {exc}", err=True)
        ctx.exit(exc.exit_code)
    except OSError as exc:
        click.echo(f"edge-seg calibrate: {exc.filename or out_path}: "
                   f"{exc.strerror or exc}", err=True)
        ctx.exit(EXIT_USAGE)
    if as_json:
        click.echo(to_json(result), nl=False)
    else:
        for line in report_lines(result, written):
            click.echo(line)
    for f in result["failures"]:
        click.echo(f"  failed: {f['path']}: {f['problem']}", err=True)
    ctx.exit(EXIT_SOME_FAILED if result["failures"] else EXIT_OK)
