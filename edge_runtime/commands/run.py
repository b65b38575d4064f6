"""``edge-seg run``: segment scans and write a mask, an overlay and findings for each."""

import json
import os
import sys
from pathlib import Path

import click

from edge_runtime.commands.options import postprocess_overrides, trust_options
from edge_runtime.dicom.options import META_KEY as SERIES_META
from edge_runtime.dicom.options import series_consistency_option
from edge_runtime.errors import (EXIT_INCOMPLETE, EXIT_INTERRUPTED, EXIT_OK, EXIT_SOME_FAILED,
                                 EXIT_USAGE, EdgeSegError)
from edge_runtime.safeio import one_line, shown

DEFAULT_OUT = "edge-seg-out"


def expand_inputs(paths):
    """Command-line paths -> (files in order, [(path, problem)] for paths that do not exist).

    Folders are listed non-recursively; hidden entries and sub-folders are skipped; every
    other file in a folder is an input (one that is not a scan fails with its own message).
    The same file named twice is processed once.
    """
    files, missing, seen = [], [], set()

    def add(p):
        key = os.path.realpath(p)
        if key not in seen:
            seen.add(key)
            files.append(p)

    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            try:
                entries = sorted(p.iterdir(), key=lambda e: e.name)
            except OSError as exc:
                missing.append((p, f"cannot list folder ({exc.strerror or one_line(exc)})"))
                continue
            for entry in entries:
                if entry.name.startswith(".") or entry.is_dir():
                    continue
                add(entry)
        elif p.exists() or p.is_symlink():
            add(p)
        else:
            missing.append((p, "no such file or folder"))
    return files, missing


def check_out_dir(out_dir, files):
    """Create the output folder and prove it is writable; refuse an input's own folder."""
    out_real = os.path.realpath(out_dir)
    for f in files:
        if os.path.realpath(os.path.dirname(os.path.abspath(f))) == out_real:
            raise EdgeSegError(f"--out {shown(out_dir)} is the folder of input {shown(f)}; "
                               "choose another "
                               "folder so that results never mix with (or replace) scans")
    from edge_runtime.atomic import ensure_writable_dir
    try:
        ensure_writable_dir(out_dir)
    except OSError as exc:
        raise EdgeSegError(f"{shown(out_dir)}: output folder is not writable "
                           f"({exc.strerror or exc})") from None


def _human_line(f):
    source = shown(f["source"])
    if not f["tumour_found"]:
        return f"{source}: no tumour found"
    mm2 = f", {f['area_mm2']:.1f} mm²" if f.get("area_mm2") is not None else ""
    return (f"{source}: tumour found, {f['area_px']} px "
            f"({100 * f['area_fraction']:.2f}%){mm2} -> {shown(f['outputs']['overlay'])}")


def _json_line(obj):
    # ensure_ascii: control characters and undecodable bytes of a name arrive escaped
    return json.dumps(obj, ensure_ascii=True)


class _Stdout:
    """Writes result lines to stdout; a closed or full stdout ends the batch (``StopBatch``)
    instead of a traceback, and later writes (Python's own flush at exit) go nowhere."""

    def __init__(self):
        self.broken = None

    def write(self, line):
        from edge_runtime.batch import StopBatch
        if self.broken:
            raise StopBatch(self.broken)
        try:
            click.echo(line)
        except (BrokenPipeError, OSError) as exc:
            reason = ("stdout was closed" if isinstance(exc, BrokenPipeError)
                      else f"cannot write to stdout ({exc.strerror or exc})")
            self.broken = reason
            _silence_stdout()
            raise StopBatch(reason) from None


def _silence_stdout():
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    except OSError:
        pass


def _err(line):
    try:
        click.echo(line, err=True)
    except OSError:
        pass


def _report(summary, as_json, stopped_by_stdout, series_done=0):
    """The end of a run on stderr: counts (a DICOM series counts as one), failures, and when
    it did not finish, why and which results were already written."""
    _err(f"{len(summary.done) + series_done} done, {len(summary.failed)} failed"
         + (f", {len(summary.pending)} not processed" if summary.pending else ""))
    for path, problem in summary.failed:
        _err(f"  failed: {shown(path)}: {one_line(problem)}")
    if summary.stopped is None:
        return
    if stopped_by_stdout:
        _err(f"edge-seg run: the run did not finish: {summary.stopped}")
    else:
        _err("edge-seg run: interrupted: the run did not finish")
    for path, outputs in summary.done:
        _err(f"  written: {shown(path)} -> {shown(outputs['findings'])}")
    if summary.pending:
        first = ", ".join(shown(p) for p in summary.pending[:3])
        more = f" and {len(summary.pending) - 3} more" if len(summary.pending) > 3 else ""
        _err(f"  not processed: {first}{more}")


@click.command("run")
@click.argument("paths", nargs=-1, required=True,
                type=click.Path(path_type=Path, readable=False))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=DEFAULT_OUT, show_default=True,
              help="Folder for <stem>_mask.png, <stem>_overlay.png, <stem>_findings.json "
                   "(created if needed; must not be the folder of an input).")
@click.option("--bundle", "bundle_path", type=click.Path(path_type=Path, readable=False),
              default=None,
              help="Model bundle: .zip, unpacked folder, or a bare .tflite (with a warning). "
                   "Default: the bundle installed with edge-seg.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Interpreter threads (default: CPU count, at most 4).")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON line per scan to stdout (failures too, with 'error').")
@click.option("--input-size", type=click.IntRange(min=8), default=None,
              help="Bare .tflite only: model input size (default: read from the model).")
@trust_options
@postprocess_overrides
@series_consistency_option  # DICOM series hook (edge_runtime.dicom), see below
@click.pass_context
def run(ctx, paths, out_dir, bundle_path, threads, as_json, input_size, allow_untrusted,
        trust_file, threshold, min_area_fraction, min_peak_probability):
    """Segment scans: PATHS are image files (PNG, JPEG, BMP, TIFF, WebP), DICOM files
    (needs the 'dicom' extra) or folders of them (not recursive; hidden files skipped).
    A folder holding DICOM is read as series (recursively): one answer per MR series, with
    a volume, a montage and a DICOM SEG (docs/DICOM.md).

    Writes a 0/255 mask, an overlay and a findings JSON per scan into --out. The batch goes
    on past bad files and ends with "N done, M failed" on stderr.

    Exit codes: 0 all scans done, 1 some inputs failed, 2 usage (or --out not writable),
    3 bundle problem (also: not trusted), 6 stdout closed or full (the run did not finish),
    130 interrupted (Ctrl-C).
    """
    from edge_runtime.batch import run_batch
    from edge_runtime.segment import Segmenter
    from edge_runtime.trust import load_trusted_bundle

    def fail(exc):
        _err(f"edge-seg run: {exc}")
        ctx.exit(exc.exit_code)

    try:
        files, failures = expand_inputs(paths)
        # >>> DICOM series hook (issue 24): folders holding DICOM are read as series trees by
        # edge_runtime.dicom.batch; their DICOM files leave the per-file list.
        from edge_runtime.dicom.batch import split_inputs
        files, series_trees = split_inputs(paths, files)
        # <<< DICOM series hook
        if not files and not failures and not series_trees:
            fail(EdgeSegError("no input files found in " + ", ".join(shown(p) for p in paths)))
        try:
            bundle = load_trusted_bundle(bundle_path, allow_untrusted=allow_untrusted,
                                         trust_file=trust_file, input_size=input_size,
                                         threshold=threshold,
                                         min_area_fraction=min_area_fraction,
                                         min_peak_probability=min_peak_probability)
            for warning in bundle.warnings:
                _err(f"warning: {one_line(warning)}")
            segmenter = Segmenter(bundle, threads=threads)
            if files:
                check_out_dir(out_dir, files)
        except EdgeSegError as exc:
            fail(exc)
    except KeyboardInterrupt:
        _err("edge-seg run: interrupted before any scan was processed")
        ctx.exit(EXIT_INTERRUPTED)

    stdout = _Stdout()
    show_bar = len(files) > 1 and sys.stderr.isatty() and not as_json
    bar = (click.progressbar(length=len(files), label="Segmenting", file=sys.stderr,
                             show_pos=True) if show_bar else None)
    held = []   # human lines are held back while a progress bar owns the terminal

    def on_result(path, findings):
        if bar is not None:
            bar.update(1)
        line = _json_line(findings) if as_json else _human_line(findings)
        if bar is not None:
            held.append(line)
        else:
            stdout.write(line)

    def on_failure(path, problem):
        if bar is not None and path in files:
            bar.update(1)
        if as_json:
            stdout.write(_json_line({"source": str(path), "error": problem}))

    def on_warning(path, line):
        _err(f"warning: {shown(path)}: {one_line(line)}")

    # >>> DICOM series hook (issue 24): one summary (or JSON) line per series, first.
    series_done, series_stopped, series_failures = 0, None, []
    if series_trees:
        from edge_runtime.batch import StopBatch
        from edge_runtime.dicom.batch import run_series_trees
        try:
            series_done, series_failures = run_series_trees(
                series_trees, segmenter, out_dir, stdout.write, _err, as_json=as_json,
                consistency=ctx.meta.get(SERIES_META), per_file=files)
        except StopBatch as exc:
            series_stopped = str(exc)
        except KeyboardInterrupt:
            series_stopped = "interrupted"
        except EdgeSegError as exc:
            fail(exc)
    # <<< DICOM series hook
    summary = run_batch(files if series_stopped is None else [], segmenter, out_dir,
                        on_result=on_result, on_failure=on_failure,
                        on_warning=on_warning, failures=failures)
    summary.failed.extend(series_failures)   # already reported per series above
    if series_stopped is not None:
        summary.stopped, summary.pending = series_stopped, list(files)
    if bar is not None:
        bar.render_finish()
    if summary.stopped is None:
        from edge_runtime.batch import StopBatch
        try:
            for line in held:
                stdout.write(line)
        except StopBatch as exc:
            summary.stopped = str(exc)
    for path in summary.cleaned:
        _err(f"removed a stale temporary file of an earlier run: {shown(path)}")
    _report(summary, as_json, stopped_by_stdout=stdout.broken is not None,
            series_done=series_done)
    if summary.stopped is not None:
        ctx.exit(EXIT_INCOMPLETE if stdout.broken else EXIT_INTERRUPTED)
    ctx.exit(EXIT_SOME_FAILED if summary.failed else EXIT_OK)


__all__ = ["run", "expand_inputs", "check_out_dir", "DEFAULT_OUT", "EXIT_USAGE"]
