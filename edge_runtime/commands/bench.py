"""``edge-seg bench``: latency, memory, size and arithmetic rate of models on this machine."""

import sys
from pathlib import Path

import click

from edge_runtime.commands.options import trust_options
from edge_runtime.errors import EXIT_OK, EXIT_SOME_FAILED, BundleError, EdgeSegError


def parse_threads(text):
    """'1,2,4' -> [1, 2, 4]; raises EdgeSegError naming the bad value."""
    out = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit() or int(part) < 1:
            raise EdgeSegError(f"--threads must be positive integers separated by commas, "
                               f"got {text!r}")
        if int(part) not in out:
            out.append(int(part))
    if not out:
        raise EdgeSegError(f"--threads must name at least one thread count, got {text!r}")
    return out


def _write(dest, text, what):
    """Write ``text`` to ``dest`` ('-' = stdout) atomically."""
    if str(dest) == "-":
        click.echo(text, nl=False)
        return
    from edge_runtime.evaluate import _atomic_write_text
    try:
        _atomic_write_text(dest, text)
    except OSError as exc:
        raise EdgeSegError(f"{dest}: cannot write the {what} ({exc.strerror or exc})") from None
    click.echo(f"wrote {dest}", err=True)


def check_trusted(models, allow_untrusted, trust_file):
    """Refuse (``UntrustedBundleError``) the first model that loads but is not trusted; a model
    that does not load is left to its FAILED row."""
    from edge_runtime.safeio import one_line
    from edge_runtime.trust import UntrustedBundleError, load_trusted_bundle
    for model in models:
        try:
            bundle = load_trusted_bundle(model, allow_untrusted=allow_untrusted,
                                         trust_file=trust_file)
        except UntrustedBundleError:
            raise
        except BundleError:
            continue
        for warning in bundle.warnings:
            if "UNTRUSTED" in warning:
                click.echo(f"warning: {one_line(warning)}", err=True)


@click.command("bench")
@click.argument("models", nargs=-1, type=click.Path(path_type=Path, readable=False))
@click.option("--threads", "threads_text", default="1,2,4", show_default=True,
              help="Thread counts, comma separated.")
@click.option("--runs", type=click.IntRange(min=1), default=50, show_default=True,
              help="Timed inferences per model and thread count.")
@click.option("--warmup", type=click.IntRange(min=0), default=5, show_default=True,
              help="Untimed inferences before timing.")
@click.option("--image", type=click.Path(exists=True, dir_okay=False, path_type=Path,
                                         readable=False),
              default=None, help="A real scan: time the end-to-end pipeline on it and use it "
                                 "as the latency input (default: random input, no end-to-end).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, allow_dash=True),
              default=None, help="Write the full report as JSON to this file ('-': stdout).")
@click.option("--csv", "csv_out", type=click.Path(dir_okay=False, allow_dash=True),
              default=None, help="Write one CSV row per model and thread count ('-': stdout).")
@click.option("--no-memory", is_flag=True,
              help="Skip the RSS measurement (a fresh process per model and thread count).")
@click.option("--no-sgemm", is_flag=True, help="Skip the single-thread sgemm ceiling.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines on stderr.")
@trust_options
@click.pass_context
def bench(ctx, models, threads_text, runs, warmup, image, json_out, csv_out, no_memory,
          no_sgemm, quiet, allow_untrusted, trust_file):
    """Measure MODELS (bundle .zip, unpacked bundle folder or bare .tflite; default: the
    bundle installed with edge-seg) at each thread count: size, load time, first and warm
    latency (mean, std, p50, p90, p99, min), FPS, GFLOP per scan and GFLOP/s, RSS, and with
    --image the end-to-end time of a real scan.

    Several models are timed in turns in one run, so their ratio is fair. A model that fails
    gets a FAILED row with the reason; the others go on.

    Exit codes: 0 all models measured, 1 some failed, 2 usage, 3 no default bundle or a
    model that is not trusted (see --allow-untrusted).
    """
    from edge_runtime.benchmark import format_table, report_json, results_csv, run_benchmark

    def fail(exc):
        click.echo(f"edge-seg bench: {exc}", err=True)
        ctx.exit(exc.exit_code)

    try:
        threads = parse_threads(threads_text)
        if not models:
            from edge_runtime.bundle import default_bundle_path
            default = default_bundle_path()
            if not default.is_file():
                raise BundleError(f"no default model bundle is installed ({default} does not "
                                  "exist); name the models to measure")
            models = (default,)
        check_trusted(models, allow_untrusted, trust_file)
        log = None if quiet else (lambda msg: click.echo(f"bench: {msg}", err=True))
        report = run_benchmark([str(m) for m in models], threads=threads, runs=runs,
                               warmup=warmup, image=image, memory=not no_memory,
                               sgemm=not no_sgemm, log=log)
    except EdgeSegError as exc:
        fail(exc)
    except ValueError as exc:
        fail(EdgeSegError(str(exc)))
    to_stdout = "-" in (str(json_out), str(csv_out))
    click.echo(format_table(report), err=to_stdout)
    try:
        if json_out is not None:
            _write(json_out, report_json(report), "JSON report")
        if csv_out is not None:
            _write(csv_out, results_csv(report), "CSV results")
    except EdgeSegError as exc:
        fail(exc)
    failed = [r for r in report["results"] if r["status"] != "ok"]
    sys.stderr.flush()
    ctx.exit(EXIT_SOME_FAILED if failed else EXIT_OK)
