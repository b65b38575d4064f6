"""The ``edge-seg run`` side of DICOM series: which inputs are series, and running them.

``split_inputs`` takes the command line's paths and the files ``expand_inputs`` listed:
a folder that holds DICOM (a DICOMDIR, or a file with the DICM preamble or a .dcm suffix,
anywhere in its tree) is read as a tree of series, recursively; its top-level DICOM files
(and other files that are not plain images: an export's README, ...) leave the per-file
list, while its top-level plain images (PNG, JPEG, BMP, TIFF, WebP) stay there and keep
today's behaviour. A DICOMDIR named on the command line stands for its folder. DICOM files
named one by one are still read one by one (``edge_runtime.imageio``).

``run_series_trees`` finds the series in each tree (``series.scan_tree``) and runs
``process.process_series`` on each, printing one summary line (or one JSON line) per series.
"""

import json
import os
from pathlib import Path

from edge_runtime.errors import EdgeSegError
from edge_runtime.safeio import one_line, shown

DICOMDIR = "DICOMDIR"
PLAIN_IMAGES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
PROBE_LIMIT = 10_000     # files looked at to decide whether a folder holds DICOM


def looks_dicom(path):
    """A DICOMDIR, a .dcm/.dicom suffix, or the DICM preamble (nothing else is read)."""
    if path.name.upper() == DICOMDIR or path.suffix.lower() in (".dcm", ".dicom"):
        return True
    from edge_runtime.safeio import open_regular
    try:   # a FIFO or device is not opened for reading (it would block): not DICOM here
        with open_regular(path) as fh:
            return fh.read(132)[128:132] == b"DICM"
    except (OSError, ValueError):
        return False


def holds_dicom(folder):
    """True when a DICOM file is anywhere under ``folder`` (hidden entries skipped)."""
    seen = 0
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            if looks_dicom(Path(dirpath) / name):
                return True
            seen += 1
            if seen >= PROBE_LIMIT:
                return False
    return False


def split_inputs(paths, files):
    """-> (files for the per-file path, [folders to read as series trees])."""
    trees, keep_out = [], set()
    for raw in paths:
        p = Path(raw)
        if p.is_file() and p.name.upper() == DICOMDIR:
            p = p.parent
        elif not p.is_dir() or not holds_dicom(p):
            continue
        if os.path.realpath(p) not in {os.path.realpath(t) for t in trees}:
            trees.append(p)
        if Path(raw).is_file():
            keep_out.add(os.path.realpath(raw))
    tree_roots = {os.path.realpath(t) for t in trees}
    remaining = []
    for f in files:
        real = os.path.realpath(f)
        if real in keep_out:
            continue
        if os.path.realpath(os.path.dirname(os.path.abspath(f))) in tree_roots and \
                (looks_dicom(Path(f)) or Path(f).suffix.lower() not in PLAIN_IMAGES):
            continue
        remaining.append(f)
    return remaining, trees


def check_out_dir(out_dir, trees):
    """Refuse an output folder inside (or equal to) a series tree; create it, prove it is
    writable."""
    out_real = os.path.realpath(out_dir)
    for t in trees:
        root = os.path.realpath(t)
        if out_real == root or out_real.startswith(root + os.sep):
            raise EdgeSegError(f"--out {out_dir} is inside the DICOM folder {t}; choose a "
                               "folder outside it so that results never mix with the series")
    from edge_runtime.atomic import ensure_writable_dir
    try:
        ensure_writable_dir(out_dir)
    except OSError as exc:
        raise EdgeSegError(f"{out_dir}: output folder is not writable "
                           f"({exc.strerror or exc})") from None


def run_series_trees(trees, segmenter, out_dir, echo, err, as_json=False,
                     consistency=None, per_file=()):
    """Process every series under ``trees`` -> (series done, [(path, problem)] failed).

    ``echo(line)``: stdout (one summary or JSON line per series); ``err(line)``: stderr
    (skipped files and notes, one line each); ``per_file``: the files handled by the
    per-file path (not reported here as "not DICOM")."""
    from edge_runtime.dicom.consistency import DEFAULT_RULE
    from edge_runtime.dicom.process import process_series, series_stem, summary_line
    from edge_runtime.dicom.series import scan_tree
    consistency = consistency or DEFAULT_RULE
    check_out_dir(out_dir, trees)
    handled = {os.path.realpath(f) for f in per_file}
    done, failures, taken = 0, [], set()
    for tree in trees:
        series_list, skipped, failed = scan_tree(tree)
        for path, reason in skipped:
            if os.path.realpath(path) not in handled:
                err(f"skipped: {shown(path)}: {one_line(reason)}")
        failures.extend((str(p), problem) for p, problem in failed)
        if as_json:
            for p, problem in failed:
                echo(json.dumps({"source": str(p), "error": problem}))
        if not series_list:
            failures.append((str(tree), "no MR image series found in this folder"))
            continue
        protected = [str(s.path) for ser in series_list for s in ser.slices]
        for ser in series_list:
            for note in ser.notes:
                err(f"note: {ser.name}: {note}")
            stem = series_stem(ser, taken)
            try:
                report = process_series(ser, segmenter, out_dir, stem=stem,
                                        consistency=consistency, protected=protected,
                                        log=lambda line: err(f"failed slice: {line}"))
            except OSError as exc:
                failures.append((ser.name, f"cannot write results to {out_dir} "
                                           f"({exc.strerror or exc})"))
                continue
            echo(json.dumps(report) if as_json else summary_line(report))
            if report.get("error"):
                failures.append((ser.name, report["error"]))
                continue
            for f in report["failed_slices"]:
                failures.append((f["source"], f["problem"]))
            done += 1
    return done, failures
