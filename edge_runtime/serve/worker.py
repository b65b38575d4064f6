"""The background worker of ``edge-seg serve``: one thread, one interpreter, jobs in order.

``segment_scan`` is the only place where the server calls the segmentation library; it does
what ``edge-seg run`` does per scan (``imageio.load_scan`` -> ``Segmenter.segment`` ->
``outputs.write_outputs``) and adds the two display layers the result page stacks (the scan
in gray, the tumour as a transparent layer). When ``edge-seg run``'s batch loop becomes a
library function, switch ``segment_scan`` to it; nothing else here needs to change.

A TFLite interpreter must not be used by two threads at once, so one thread runs every job;
the web layer only queues job ids and reads ``job.json`` for progress.
"""

import io
import logging
import queue
import threading

import numpy as np
from PIL import Image

from edge_runtime.errors import InputImageError
from edge_runtime.outputs import (OUTLINE_RGB, TINT_ALPHA, TINT_RGB, atomic_write_many,
                                  display_gray, outline)
from edge_runtime.serve.store import JobNotFound, scan_stem

log = logging.getLogger("edge_seg.serve")

VIEW_SUFFIX = "_view.png"
LAYER_SUFFIX = "_layer.png"
LAYER_TINT_ALPHA = 0.45        # the layer's own tint; the page's opacity slider scales it
VIEW_PNG_LEVEL = 1             # zlib level of the display layers: 3-4x faster than the
                               # default 6 on a Pi, files ~20 % larger (never downloaded)


def _display_png(image):
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=VIEW_PNG_LEVEL)
    return buf.getvalue()


def view_images(pixels, mask):
    """-> (the scan in gray as an L image, the tumour as an RGBA layer: tinted, outlined)."""
    gray = Image.fromarray(display_gray(pixels), "L")
    mask = np.asarray(mask, dtype=bool)
    rgba = np.zeros(mask.shape + (4,), dtype=np.uint8)
    if mask.any():
        rgba[mask] = (*TINT_RGB, round(255 * max(TINT_ALPHA, LAYER_TINT_ALPHA)))
        thickness = max(1, round(min(mask.shape) / 256))
        rgba[outline(mask, thickness)] = (*OUTLINE_RGB, 255)
    return gray, Image.fromarray(rgba, "RGBA")


def segment_scan(segmenter, path, out_dir, stem, source_name, max_pixels):
    """One uploaded scan through the library, as ``edge-seg run`` does -> its findings.

    THE CALL SITE: ``load_scan`` + ``Segmenter.segment`` + ``write_outputs`` (mask, overlay,
    findings JSON into ``out_dir`` as ``<stem>_*``), then the page's two layers. Raises
    ``InputImageError`` for a scan that cannot be used.
    """
    from edge_runtime.imageio import load_scan
    from edge_runtime.outputs import write_outputs

    scan = load_scan(path, max_pixels=max_pixels)
    result = segmenter.segment(scan)
    findings = dict(result.findings, source=source_name)
    write_outputs(out_dir, stem, scan.pixels, result.mask, findings)
    gray, layer = view_images(scan.pixels, result.mask)
    atomic_write_many({out_dir / f"{stem}{VIEW_SUFFIX}": _display_png(gray),
                       out_dir / f"{stem}{LAYER_SUFFIX}": _display_png(layer)})
    return findings


def group_series(scans):
    """SERIES HOOK: the scans of a job that form one DICOM series -> groups to segment as a
    volume (slice order, volume in mL, DICOM SEG). ``edge_runtime`` has no series reader on
    this branch, so this returns no groups and every file (a .dcm too) is one scan, exactly as
    ``edge-seg run`` treats it. The series work plugs in here and in ``run_job``."""
    return []


def summary(findings):
    """The few findings the list of past results shows."""
    keys = ("tumour_found", "area_px", "area_fraction", "area_mm2", "max_probability")
    return {k: findings.get(k) for k in keys}


def run_job(store, job_id, segmenter, max_pixels):
    """Segment every scan of a queued job, recording progress in ``job.json`` after each."""
    job = store.read_job(job_id)
    job["state"], job["done"] = "running", 0
    store.write_job(job)
    uploads, results = store.uploads_dir(job_id), store.results_dir(job_id)
    if group_series(job["scans"]):
        job["notes"].append("series found; segmented slice by slice")
    for index, scan in enumerate(job["scans"]):
        try:
            findings = segment_scan(segmenter, uploads / scan["upload"], results,
                                    scan_stem(index), scan["name"], max_pixels)
            scan.update(state="ok", error=None, summary=summary(findings))
        except InputImageError as exc:
            scan.update(state="failed", error=f"{scan['name']}: {exc.problem}")
        except Exception as exc:  # noqa: BLE001 - one bad scan must not stop the job
            detail = " ".join(str(exc).split())[:200]
            scan.update(state="failed", error=f"{scan['name']}: unexpected error: "
                                              f"{type(exc).__name__}: {detail}")
            log.exception("job %s scan %d", job_id, index)
        job["done"] = index + 1
        store.write_job(job)
    job["state"] = "done"
    store.write_job(job)
    store.drop_uploads(job_id)      # the scans as uploaded (DICOM headers) are not kept
    return job


class Worker:
    """Runs queued jobs one after another in a daemon thread."""

    def __init__(self, store, segmenter, max_pixels):
        self.store, self.segmenter, self.max_pixels = store, segmenter, max_pixels
        self.queue = queue.Queue()
        self.thread = None

    def start(self):
        if self.thread is None:
            self.thread = threading.Thread(target=self._loop, name="edge-seg-worker",
                                           daemon=True)
            self.thread.start()
        return self

    def submit(self, job_id):
        self.queue.put(job_id)

    def stop(self, timeout=30):
        if self.thread is not None:
            self.queue.put(None)
            self.thread.join(timeout)
            self.thread = None

    def _loop(self):
        while True:
            job_id = self.queue.get()
            if job_id is None:
                return
            try:
                run_job(self.store, job_id, self.segmenter, self.max_pixels)
            except JobNotFound:
                continue          # deleted while queued
            except Exception:     # noqa: BLE001 - the worker must outlive a broken job
                log.exception("job %s failed", job_id)
                try:
                    job = self.store.read_job(job_id)
                    job["state"] = "interrupted"
                    self.store.write_job(job)
                except Exception:  # noqa: BLE001 - deleted or unwritable: nothing to mark
                    log.warning("job %s could not be marked interrupted", job_id)
