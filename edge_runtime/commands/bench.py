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
    from edge_runtime import atomic
    try:
        atomic.write_text(dest, text, parents=True)
    except OSError as exc:
        raise EdgeSegError(f"{dest}: cannot write the {what} ({exc.strerror or exc})") from None
    click.echo(f"wrote {dest}", err=True)


def _not_an_option(ctx, param, value):
    """Refuse an option value that looks like another option (``--json --threads 1`` would
    otherwise write a file named ``--threads``)."""
    if value is not None and str(value).startswith("-") and str(value) != "-":
        raise click.BadParameter(f"got {value!r}, which looks like an option; give a file "
                                 "name, or '-' for standard output", ctx=ctx, param=param)
    return value


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
              default=None, callback=_not_an_option, help="Write the full report as JSON to this file ('-': stdout).")
@click.option("--csv", "csv_out", type=click.Path(dir_okay=False, allow_dash=True),
              default=None, callback=_not_an_option, help="Write one CSV row per model and thread count ('-': stdout).")
@click.option("--no-memory", is_flag=True,
              help="Skip the RSS measurement (a fresh process per model and thread count).")
@click.option("--no-sgemm", is_flag=True, help="Skip the single-thread sgemm ceiling.")
@click.option("--suite", type=click.Choice(["paper"]), default=None,
              help="Measure every model of ONE benchmark kit folder (python -m bench.kit) and "
                   "write the paper's table (Markdown, CSV, JSON, plot) into --out.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("edge-seg-out"), show_default=True,
              help="With --suite: the folder for kit_paper.{md,csv,json,png}.")
@click.option("--no-plot", is_flag=True, help="With --suite: no plot (else drawn when "
                                                "matplotlib is installed).")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines on stderr.")
@trust_options
@click.pass_context
def bench(ctx, models, threads_text, runs, warmup, image, json_out, csv_out, no_memory,
          no_sgemm, suite, out_dir, no_plot, quiet, allow_untrusted, trust_file):
    """Measure MODELS (bundle .zip, unpacked bundle folder or bare .tflite; default: the
    bundle installed with edge-seg) at each thread count: size, load time, first and warm
    latency (mean, std, p50, p90, p99, min), FPS, GFLOP per scan and GFLOP/s, RSS, and with
    --image the end-to-end time of a real scan.

    Several models are timed in turns in one run, so their ratio is fair. A model that fails
    gets a FAILED row with the reason; the others go on.

    With --suite paper, MODELS is one kit folder: every model it lists is measured in one
    run and the paper's table is written into --out; a model the kit lacks gets a row saying
    why.

    Exit codes: 0 all models measured (with --suite: every model present in the kit), 1 some
    failed, 2 usage, 3 no default bundle or a model that is not trusted (see
    --allow-untrusted; the models of a kit are checked against the kit's own sha256 list).
    """
    if suite is not None:
        _bench_suite(ctx, suite, models, threads_text, runs, warmup, image, json_out, csv_out,
                     no_memory, no_sgemm, out_dir, no_plot, quiet)
        return
    from edge_runtime.bench import format_table, report_json, results_csv, run_benchmark

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
        from edge_runtime.kit import is_kit
        kits = [str(m) for m in models if is_kit(m)]
        if kits:
            raise EdgeSegError(f"{kits[0]} is a benchmark kit folder, not a model: measure "
                               "it with --suite paper")
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


def _bench_suite(ctx, suite, models, threads_text, runs, warmup, image, json_out, csv_out,
                 no_memory, no_sgemm, out_dir, no_plot, quiet):
    """``--suite paper``: a kit folder measured and written as the paper's table."""
    from edge_runtime.bench.suite import (render_markdown, run_paper_suite, shown_path,
                                          write_suite)

    def fail(exc):
        click.echo(f"edge-seg bench: {exc}", err=True)
        ctx.exit(exc.exit_code)

    try:
        threads = parse_threads(threads_text)
        if len(models) != 1:
            raise EdgeSegError(f"--suite {suite} takes one kit folder, got {len(models)} "
                               "paths (make a kit with python -m bench.kit --out DIR)")
        if json_out is not None or csv_out is not None:
            raise EdgeSegError(f"--suite {suite} writes its JSON and CSV into --out "
                               f"({out_dir}); --json/--csv are for a plain bench")
        log = None if quiet else (lambda msg: click.echo(f"bench: {msg}", err=True))
        table = run_paper_suite(models[0], threads=threads, runs=runs, warmup=warmup,
                                image=image, memory=not no_memory, sgemm=not no_sgemm, log=log)
        command = " ".join(["edge-seg bench", shown_path(models[0]), "--suite", suite,
                            "--threads", ",".join(map(str, threads)), "--runs", str(runs),
                            "--warmup", str(warmup)]
                           + (["--image", str(image)] if image is not None else [])
                           + (["--no-memory"] if no_memory else []))
        try:
            paths = write_suite(table, out_dir, command=command, plot=not no_plot)
        except OSError as exc:
            raise EdgeSegError(f"{out_dir}: cannot write the suite's results "
                               f"({exc.strerror or exc})") from None
    except EdgeSegError as exc:
        fail(exc)
    except ValueError as exc:
        fail(EdgeSegError(str(exc)))
    click.echo(render_markdown(table, command))
    for p in paths:
        click.echo(f"wrote {p}", err=True)
    rows = table["rows"]
    counts = {s: sum(r["status"] == s for r in rows) for s in ("ok", "missing", "FAILED")}
    click.echo(f"{counts['ok']} measured, {counts['missing']} missing, "
               f"{counts['FAILED']} failed", err=True)
    sys.stderr.flush()
    ctx.exit(EXIT_SOME_FAILED if counts["FAILED"] else EXIT_OK)
