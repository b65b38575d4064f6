"""``edge-seg run``: segment scans and write a mask, an overlay and findings for each."""

import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path

import click

from edge_runtime.commands.options import postprocess_overrides
from edge_runtime.dicom.options import META_KEY as SERIES_META, series_consistency_option
from edge_runtime.errors import EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EdgeSegError, InputImageError

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
                missing.append((p, f"cannot list folder ({exc.strerror or exc})"))
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
            raise EdgeSegError(f"--out {out_dir} is the folder of input {f}; choose another "
                               "folder so that results never mix with (or replace) scans")
    try:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as exc:
        raise EdgeSegError(f"{out_dir}: output folder is not writable "
                           f"({exc.strerror or exc})") from None


def _human_line(f):
    if not f["tumour_found"]:
        return f"{f['source']}: no tumour found"
    mm2 = f", {f['area_mm2']:.1f} mm²" if f.get("area_mm2") is not None else ""
    return (f"{f['source']}: tumour found, {f['area_px']} px "
            f"({100 * f['area_fraction']:.2f}%){mm2} -> {f['outputs']['overlay']}")


def _process(segmenter, path, stem, out_dir, protected):
    from edge_runtime.imageio import load_scan
    from edge_runtime.outputs import write_outputs
    scan = load_scan(path)
    result = segmenter.segment(scan)
    try:
        paths = write_outputs(out_dir, stem, scan.pixels, result.mask, result.findings,
                              protected=protected)
    except OSError as exc:
        raise InputImageError(path, f"cannot write results to {out_dir} "
                                    f"({exc.strerror or exc})") from None
    findings = dict(result.findings)
    findings["outputs"] = {k: str(v) for k, v in paths.items()}
    return findings


@click.command("run")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=DEFAULT_OUT, show_default=True,
              help="Folder for <stem>_mask.png, <stem>_overlay.png, <stem>_findings.json "
                   "(created if needed; must not be the folder of an input).")
@click.option("--bundle", "bundle_path", type=click.Path(path_type=Path), default=None,
              help="Model bundle: .zip, unpacked folder, or a bare .tflite (with a warning). "
                   "Default: the bundle installed with edge-seg.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Interpreter threads (default: CPU count, at most 4).")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON line per scan to stdout (failures too, with 'error').")
@click.option("--input-size", type=click.IntRange(min=8), default=None,
              help="Bare .tflite only: model input size (default: read from the model).")
@postprocess_overrides
@series_consistency_option  # DICOM series hook (edge_runtime.dicom), see below
@click.pass_context
def run(ctx, paths, out_dir, bundle_path, threads, as_json, input_size, threshold,
        min_area_fraction, min_peak_probability):
    """Segment scans: PATHS are image files (PNG, JPEG, BMP, TIFF, WebP), DICOM files
    (needs the 'dicom' extra) or folders of them (not recursive; hidden files skipped).
    A folder holding DICOM is read as series (recursively): one answer per MR series, with
    a volume, a montage and a DICOM SEG (docs/DICOM.md).

    Writes a 0/255 mask, an overlay and a findings JSON per scan into --out. The batch goes
    on past bad files and ends with "N done, M failed" on stderr.

    Exit codes: 0 all scans done, 1 some inputs failed, 2 usage (or --out not writable),
    3 bundle problem.
    """
    from edge_runtime.bundle import load_bundle
    from edge_runtime.outputs import output_stems
    from edge_runtime.segment import Segmenter

    def fail(exc):
        click.echo(f"edge-seg run: {exc}", err=True)
        ctx.exit(exc.exit_code)

    files, failures = expand_inputs(paths)
    # >>> DICOM series hook (issue 24): folders holding DICOM are read as series trees by
    # edge_runtime.dicom.batch; their DICOM files leave the per-file list.
    from edge_runtime.dicom.batch import split_inputs
    files, series_trees = split_inputs(paths, files)
    # <<< DICOM series hook
    if not files and not failures and not series_trees:
        fail(EdgeSegError("no input files found in " + ", ".join(str(p) for p in paths)))
    try:
        bundle = load_bundle(bundle_path, input_size=input_size, threshold=threshold,
                             min_area_fraction=min_area_fraction,
                             min_peak_probability=min_peak_probability)
        for warning in bundle.warnings:
            click.echo(f"warning: {warning}", err=True)
        segmenter = Segmenter(bundle, threads=threads)
        if files:
            check_out_dir(out_dir, files)
    except EdgeSegError as exc:
        fail(exc)

    failures = list(failures)
    for path, problem in failures:
        if as_json:
            click.echo(json.dumps({"source": str(path), "error": problem}))
    stems = output_stems(files)
    protected = [str(f) for f in files]
    done, lines = 0, []
    # >>> DICOM series hook (issue 24): one summary (or JSON) line per series.
    if series_trees:
        from edge_runtime.dicom.batch import run_series_trees
        try:
            n_series, series_failures = run_series_trees(
                series_trees, segmenter, out_dir, click.echo,
                lambda line: click.echo(line, err=True), as_json=as_json,
                consistency=ctx.meta.get(SERIES_META), per_file=files)
        except EdgeSegError as exc:
            fail(exc)
        done += n_series
        failures.extend(series_failures)
    # <<< DICOM series hook
    show_bar = len(files) > 1 and sys.stderr.isatty()
    bar = (click.progressbar(files, label="Segmenting", file=sys.stderr, show_pos=True)
           if show_bar else contextlib.nullcontext(files))
    with bar as items:
        for path in items:
            try:
                findings = _process(segmenter, path, stems[path], out_dir, protected)
            except InputImageError as exc:
                failures.append((path, exc.problem))
                if as_json:
                    click.echo(json.dumps({"source": str(path), "error": exc.problem}))
                continue
            except Exception as exc:  # noqa: BLE001 - one bad scan must not stop the batch
                problem = f"unexpected error: {type(exc).__name__}: {' '.join(str(exc).split())}"
                failures.append((path, problem[:300]))
                if as_json:
                    click.echo(json.dumps({"source": str(path), "error": problem[:300]}))
                continue
            done += 1
            line = json.dumps(findings) if as_json else _human_line(findings)
            if show_bar and not as_json:
                lines.append(line)
            else:
                click.echo(line)
    for line in lines:
        click.echo(line)
    click.echo(f"{done} done, {len(failures)} failed", err=True)
    for path, problem in failures:
        click.echo(f"  failed: {path}: {problem}", err=True)
    ctx.exit(EXIT_SOME_FAILED if failures else EXIT_OK)


__all__ = ["run", "expand_inputs", "check_out_dir", "DEFAULT_OUT", "EXIT_USAGE"]
