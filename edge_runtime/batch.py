"""The one batch loop: a bundle over many scans, for every front end.

``edge-seg run`` is a thin shell over ``run_batch``; a web view or a DICOM node calls the same
function with its own callbacks::

    from edge_runtime.batch import run_batch
    from edge_runtime.segment import Segmenter
    from edge_runtime.trust import load_trusted_bundle

    seg = Segmenter(load_trusted_bundle("site.zip"), threads=4)
    summary = run_batch(paths, seg, "out/",
                        on_result=lambda path, findings: ...,    # after its files are written
                        on_failure=lambda path, problem: ...)    # one line, the file named apart
    summary.done, summary.failed, summary.pending, summary.stopped

Guarantees: every path is tried in order; a bad scan is a failure with a one-line problem and
the batch goes on; nothing is written for a failed scan; each scan's three files are written
atomically into ``out_dir`` under names unique within the batch (``outputs.output_stems``),
never over an input; warnings that libraries raise while a scan is read or segmented come to
``on_warning(path, line)``, not to the terminal. A callback may raise ``StopBatch(reason)`` to
end the batch (the CLI does when stdout is closed); Ctrl-C (``KeyboardInterrupt``) also ends
it. Either way ``run_batch`` returns what was done, with ``stopped`` saying why and
``pending`` listing the paths not processed. Memory does not grow with the number of scans
(``python -m bench.batch_memory``): the findings go to ``on_result`` and are not kept; the
summary keeps each done scan's output paths only.
"""

import warnings
from dataclasses import dataclass, field

from edge_runtime.errors import InputImageError
from edge_runtime.safeio import one_line

__all__ = ["BatchSummary", "StopBatch", "run_batch", "segment_file"]


class StopBatch(Exception):
    """Raised by a ``run_batch`` callback to end the batch; the message says why."""


@dataclass
class BatchSummary:
    done: list = field(default_factory=list)      # [(path, {"mask", "overlay", "findings"})]
    failed: list = field(default_factory=list)    # [(path, problem)]
    pending: list = field(default_factory=list)   # paths not processed (the batch stopped)
    stopped: str = None                           # None: every path was tried; else why not
    cleaned: list = field(default_factory=list)   # stale temporary files removed from out_dir

    @property
    def finished(self):
        return self.stopped is None


def read_and_segment(path, segmenter, max_pixels=None):
    """Read one scan and segment it -> (``Scan``, ``segment.Result``): the step every front
    end shares (``edge-seg run``, the web view). Raises ``InputImageError`` (one line) for a
    scan that cannot be read or that the preprocessing refuses (e.g. a strip over 10:1)."""
    from edge_runtime.imageio import load_scan
    scan = load_scan(path) if max_pixels is None else load_scan(path, max_pixels=max_pixels)
    try:
        return scan, segmenter.segment(scan)
    except ValueError as exc:
        raise InputImageError(path, one_line(exc)) from None


def segment_file(path, segmenter, out_dir, stem, protected=()):
    """Read, segment and write the results of one scan -> (findings, warning lines).

    Raises ``InputImageError`` (one line) for a bad scan or results that cannot be written."""
    from edge_runtime.outputs import write_outputs
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scan, result = read_and_segment(path, segmenter)
        try:
            paths = write_outputs(out_dir, stem, scan.pixels, result.mask, result.findings,
                                  protected=protected)
        except OSError as exc:
            raise InputImageError(path, f"cannot write results to {out_dir} "
                                        f"({exc.strerror or one_line(exc)})") from None
    notes = list(scan.warnings)
    for w in caught:
        line = f"{w.category.__name__}: {one_line(w.message, 200)}"
        if line not in notes:
            notes.append(line)
    findings = dict(result.findings)
    findings["outputs"] = {k: str(v) for k, v in paths.items()}
    if notes:
        findings["warnings"] = notes
    return findings, notes


def run_batch(paths, segmenter, out_dir, on_result=None, on_failure=None, on_warning=None,
              failures=()):
    """Segment each file in ``paths`` with ``segmenter`` into ``out_dir`` -> ``BatchSummary``.

    ``out_dir`` must exist and be writable (``commands.run.check_out_dir`` checks both);
    stale temporary files of a killed run are removed from it first
    (``atomic.remove_stale_temporaries``). ``failures``: (path, problem) pairs found before
    the batch (e.g. paths that do not exist), reported through ``on_failure`` first.
    Callbacks: ``on_result(path, findings)``, ``on_failure(path, problem)``,
    ``on_warning(path, line)``; any of them may raise ``StopBatch``.
    """
    from edge_runtime.atomic import remove_stale_temporaries
    from edge_runtime.outputs import output_stems
    paths = list(paths)
    summary = BatchSummary()
    summary.cleaned = remove_stale_temporaries(out_dir)
    stems = output_stems(paths)
    protected = [str(p) for p in paths]
    index, recorded = -1, True
    try:
        for path, problem in failures:
            summary.failed.append((path, problem))
            if on_failure:
                on_failure(path, problem)
        for index, path in enumerate(paths):
            recorded = False
            try:
                findings, notes = segment_file(path, segmenter, out_dir, stems[path], protected)
            except InputImageError as exc:
                summary.failed.append((path, exc.problem))
                recorded = True
                if on_failure:
                    on_failure(path, exc.problem)
                continue
            except (KeyboardInterrupt, StopBatch):
                raise
            except Exception as exc:  # noqa: BLE001 - one bad scan must not stop the batch
                problem = f"unexpected error: {type(exc).__name__}: {one_line(exc)}"[:300]
                summary.failed.append((path, problem))
                recorded = True
                if on_failure:
                    on_failure(path, problem)
                continue
            summary.done.append((path, findings["outputs"]))   # not the findings: memory
            recorded = True
            if on_warning:
                for line in notes:
                    on_warning(path, line)
            if on_result:
                on_result(path, findings)
    except StopBatch as exc:
        summary.stopped = str(exc) or "stopped"
    except KeyboardInterrupt:
        summary.stopped = "interrupted"
    if summary.stopped is not None:
        summary.pending = paths[index + 1 if recorded else index:]
    return summary
