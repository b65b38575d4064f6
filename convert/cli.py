"""``edge-seg convert``: a trained model -> gated, verified TFLite bundles.

TensorFlow is imported only when the command runs (inside ``convert.pipeline``'s calls).
"""

import os

import click

from edge_runtime.errors import EXIT_MISSING_EXTRA, EXIT_USAGE, EdgeSegError
from edge_runtime.formats import DEFAULT_FORMAT, FORMAT_NAMES, FORMATS

from edge_seg.convert.verify import TFLITE_RUNTIME_ENV

_FORMAT_HELP = "; ".join(f"{f.name}: {f.description}" for f in FORMATS)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("source", type=click.Path(exists=True, path_type=str))
@click.option("--format", "-f", "formats", multiple=True, type=click.Choice(FORMAT_NAMES),
              help=f"Export format (repeatable; default {DEFAULT_FORMAT}). {_FORMAT_HELP}.")
@click.option("--all", "all_formats", is_flag=True, help="Export every format.")
@click.option("--out", "-o", "out_dir", required=True,
              type=click.Path(file_okay=False, path_type=str),
              help="Folder for the bundles <name>_<format>.zip.")
@click.option("--name", default=None, help="Bundle name (default: the run folder's name).")
@click.option("--max-drop", type=float, default=0.01, show_default=True,
              help="Largest allowed Dice drop (Keras minus converted) on validation scans.")
@click.option("--allow-drop", is_flag=True,
              help="Write the bundles even when the Dice drop exceeds --max-drop (recorded).")
@click.option("--no-gate", is_flag=True,
              help="Skip the accuracy gate (tests/development; the manifest says 'not gated').")
@click.option("--gate-scans", type=click.IntRange(min=1), default=None,
              help="Gate on N validation scans spread over the split (default: all).")
@click.option("--calibration-scans", type=click.IntRange(min=1), default=100, show_default=True,
              help="Training scans used to calibrate int8.")
@click.option("--threshold", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=None, help="Probability threshold (default: the run's, else 0.5).")
@click.option("--min-area-fraction", type=click.FloatRange(0, 1, max_open=True), default=None,
              help="Drop predicted components smaller than this share of the image "
                   "(default: the run's, else 0.0005).")
@click.option("--min-peak-probability", type=click.FloatRange(0, 1, max_open=True),
              default=None,
              help="Drop predicted components whose highest probability is below this "
                   "(default: the run's, else 0: off).")
@click.option("--data", "data_dirs", multiple=True,
              type=click.Path(exists=True, file_okay=False, path_type=str),
              help="Scan folders to split into validation/calibration scans "
                   "(default: the folders in the run's config.json).")
@click.option("--tflite-runtime-python", default=None, envvar=TFLITE_RUNTIME_ENV,
              type=click.Path(exists=True, dir_okay=False, path_type=str),
              help="Python of a numpy<2 environment with tflite-runtime 2.14, to check that "
                   f"the model loads there (env {TFLITE_RUNTIME_ENV}; default: not checked).")
def convert(source, formats, all_formats, out_dir, name, max_drop, allow_drop, no_gate,
            gate_scans, calibration_scans, threshold, min_area_fraction, min_peak_probability,
            data_dirs, tflite_runtime_python):
    """Convert a training run folder (or a .keras file) to TFLite bundles.

    Each format is exported at batch 1, checked for XNNPACK delegation and interpreter
    support, and scored against the Keras model on the run's validation scans. If the Dice
    drop exceeds --max-drop, nothing is written and the exit code is 5.

    Exit codes: 0 written, 2 bad arguments or source, 4 TensorFlow missing, 5 gate refused.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if all_formats and formats:
        raise click.UsageError("give either --format ... or --all, not both")
    chosen = list(FORMAT_NAMES) if all_formats else (list(formats) or [DEFAULT_FORMAT])
    if not (-1.0 <= max_drop <= 1.0):
        raise click.BadParameter(f"must be in [-1, 1], got {max_drop}", param_hint="--max-drop")
    from edge_seg.convert.pipeline import convert_run

    def log(msg):
        click.echo(f"convert: {msg}", err=True)

    try:
        results = convert_run(source, chosen, out_dir, name=name, max_drop=max_drop,
                              allow_drop=allow_drop, gate=not no_gate, gate_scans=gate_scans,
                              calibration_scans=calibration_scans, threshold=threshold,
                              min_area_fraction=min_area_fraction,
                              min_peak_probability=min_peak_probability,
                              data_dirs=list(data_dirs) or None,
                              tflite_runtime_python=tflite_runtime_python, log=log)
    except EdgeSegError as exc:
        click.echo(f"edge-seg convert: {exc}", err=True)
        raise SystemExit(exc.exit_code) from None
    except ImportError as exc:
        top = (exc.name or "").split(".")[0]
        if top not in ("tensorflow", "keras"):
            raise
        click.echo(f"edge-seg convert: needs {top}, which is not installed; install it with: "
                   "pip install 'edge-seg[train]'", err=True)
        raise SystemExit(EXIT_MISSING_EXTRA) from None
    except (ValueError, RuntimeError, OSError) as exc:
        msg = " ".join(str(exc).split()) or type(exc).__name__
        click.echo(f"edge-seg convert: {msg}", err=True)
        raise SystemExit(EXIT_USAGE) from None
    for r in results:
        click.echo(summary_line(r))


def summary_line(r):
    x = r.xnnpack
    if x.get("error"):
        xnn = f"XNNPACK failed ({x['error']})"
    else:
        missing = "" if x["whole_graph"] else f", not delegated: {','.join(x['undelegated_ops'])}"
        xnn = (f"XNNPACK {x['delegated_nodes']}/{x['total_nodes']} nodes in "
               f"{x['partitions']} partition(s){missing}")
    interps = ", ".join(f"{i['package']} {i['status']}" for i in r.interpreters)
    if r.gate:
        g = r.gate
        gate = (f"{g['metric']} {g['float']:.4f} -> {g['converted']:.4f} (drop {g['drop']:+.4f}"
                f", {'ok' if g['passed'] else 'OVER --max-drop, allowed'})")
    else:
        gate = "not gated"
    return (f"{r.path}  {r.size_bytes / 1e6:.2f} MB  {xnn}  {interps}  {gate}")
