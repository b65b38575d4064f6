"""The background worker of ``edge-seg serve``: one thread, one interpreter, jobs in order.

Two call sites into the segmentation library, nothing else here segments:

- ``segment_scan``: one uploaded image as ``edge-seg run`` does per scan
  (``imageio.load_scan`` -> ``Segmenter.segment`` -> ``outputs.write_outputs``);
- ``segment_series``: the uploaded files that are DICOM, grouped into series by
  ``edge_runtime.dicom.series.scan_files`` and each series through
  ``edge_runtime.dicom.process.process_series`` -- the same call as ``edge-seg run STUDY/``
  (slice order, volume, cross-section, diameter, montage, DICOM SEG).

Both add the two display layers the result page stacks (the scan in gray, the tumour as a
transparent layer). Uploads are deleted when the job ends, however it ends.

A TFLite interpreter must not be used by two threads at once, so one thread runs every job;
the web layer only queues job ids and reads ``job.json`` for progress.
"""

import io
import logging
import queue
import threading

import numpy as np
from PIL import Image

from edge_runtime.atomic import write_many
from edge_runtime.errors import InputImageError, MissingExtraError
from edge_runtime.outputs import OUTLINE_RGB, TINT_ALPHA, TINT_RGB, display_gray, outline
from edge_runtime.serve.store import JobNotFound, scan_stem, series_stem, slice_stem

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

    THE CALL SITE: ``batch.read_and_segment`` (as ``edge-seg run``) + ``write_outputs``
    (mask, overlay, findings JSON into ``out_dir`` as ``<stem>_*``), then the page's two
    layers. Raises ``InputImageError`` for a scan that cannot be used.
    """
    from edge_runtime.batch import read_and_segment
    from edge_runtime.outputs import write_outputs

    scan, result = read_and_segment(path, segmenter, max_pixels=max_pixels)
    findings = dict(result.findings, source=source_name)
    write_outputs(out_dir, stem, scan.pixels, result.mask, findings)
    gray, layer = view_images(scan.pixels, result.mask)
    write_many({out_dir / f"{stem}{VIEW_SUFFIX}": _display_png(gray),
                       out_dir / f"{stem}{LAYER_SUFFIX}": _display_png(layer)})
    return findings


def dicom_uploads(uploads, scans):
    """Indexes of the uploaded files that are DICOM (a .dcm/.dicom name, or the DICM
    preamble: ``edge_runtime.dicom.batch.looks_dicom``); the rest are scans as before."""
    from edge_runtime.dicom.batch import looks_dicom
    return [i for i, scan in enumerate(scans) if looks_dicom(uploads / scan["upload"])]


def group_series(uploads, scans, indexes):
    """The DICOM files of a job -> (series list, [(scan index, reason)] skipped,
    [(scan index, problem)] failed), as ``edge-seg run`` groups a DICOM folder
    (``scan_files``: StudyInstanceUID + SeriesInstanceUID, slices ordered along the normal).
    Raises ``MissingExtraError`` without the ``dicom`` extra."""
    from edge_runtime.dicom.series import scan_files
    index_of = {str(uploads / scans[i]["upload"]): i for i in indexes}
    series_list, skipped, failed = scan_files([uploads / scans[i]["upload"] for i in indexes])
    return (series_list, [(index_of[str(p)], why) for p, why in skipped],
            [(index_of[str(p)], why) for p, why in failed])


def _named(text, names):
    """A line of the DICOM library -> the same line with upload paths as the uploaded names."""
    for path, name in names.items():
        text = text.replace(path, name)
    return text


def _series_result(report, names):
    """The part of ``process_series``' report the page shows (the rest is in its JSON)."""
    keys = ("volume_ml", "volume_refused", "largest_cross_section_mm2",
            "largest_cross_section_slice", "longest_diameter_mm", "longest_diameter_slice",
            "slices_with_tumour", "ordering_short", "spacing", "pixel_spacing_mm",
            "seg_refused", "timing_s", "consistency")
    out = {k: report.get(k) for k in keys}
    out["files"] = sorted(report.get("outputs", {}))
    out["failed_slices"] = [_named(f"slice {f['index']} ({f['source']}): {f['problem']}", names)
                            for f in report.get("failed_slices", [])]
    return out


def segment_series(store, job, segmenter, max_pixels, indexes):
    """THE SERIES CALL SITE: the job's DICOM files (``indexes`` into ``job["scans"]``) ->
    ``job["series"]`` (one record per series) and ``job["skipped"]``; each series through
    ``process_series`` into the job's results as ``series_KKK``; progress after each slice."""
    from edge_runtime.dicom.consistency import DEFAULT_RULE
    from edge_runtime.dicom.process import process_series
    from edge_runtime.dicom.process import series_stem as readable_stem
    job_id, scans = job["id"], job["scans"]
    uploads, results = store.uploads_dir(job_id), store.results_dir(job_id)
    names = {str(uploads / scans[i]["upload"]): scans[i]["name"] for i in indexes}
    for i in indexes:
        scans[i].update(state="dicom", error=None)
    series_list, skipped, failed = group_series(uploads, scans, indexes)
    for i, reason in skipped:
        job["skipped"].append(f"{scans[i]['name']}: {_named(reason, names)}")
    for i, problem in failed:
        scans[i].update(state="failed", error=f"{scans[i]['name']}: {_named(problem, names)}")
    job["total"] = job["total"] - len(indexes) + sum(len(s.slices) for s in series_list)
    store.write_job(job)
    protected = list(names)
    taken = set()
    for k, series in enumerate(series_list):
        record = {"name": series.name, "series_number": series.series_number,
                  "description": series.description, "series_uid": series.series_uid,
                  "stem": readable_stem(series, taken), "slices": len(series.slices),
                  "slice_names": [names.get(str(sl.path), "?") +
                                  ("" if sl.frame is None else f" (frame {sl.frame + 1})")
                                  for sl in series.slices],
                  "notes": [_named(note, names) for note in series.notes],
                  "shown": [], "state": "running", "error": None, "result": None}
        job["series"].append(record)
        largest = max(sl.rows * sl.columns for sl in series.slices) if series.slices else 0
        if largest > max_pixels:
            sl = max(series.slices, key=lambda x: x.rows * x.columns)
            record.update(state="failed", error=f"image too large: {sl.columns}x{sl.rows} px = "
                                                f"{largest} pixels; the limit is {max_pixels}")
            job["done"] += len(series.slices)
            store.write_job(job)
            continue

        def on_slice(number, scan, mask, _findings, k=k, record=record):
            if scan is not None:
                gray, layer = view_images(scan.pixels, mask)
                stem = slice_stem(k, number)
                write_many({results / f"{stem}{VIEW_SUFFIX}": _display_png(gray),
                                   results / f"{stem}{LAYER_SUFFIX}": _display_png(layer)})
                record["shown"].append(number)
            job["done"] += 1
            store.write_job(job)

        done_before = job["done"]
        try:
            report = process_series(series, segmenter, results, stem=series_stem(k),
                                    consistency=DEFAULT_RULE, protected=protected,
                                    on_slice=on_slice)
        except OSError as exc:
            record.update(state="failed", error=f"cannot write the results "
                                                f"({exc.strerror or exc})")
        except Exception as exc:  # noqa: BLE001 - one bad series must not stop the job
            detail = " ".join(str(exc).split())[:200]
            record.update(state="failed", error=f"unexpected error: {type(exc).__name__}: "
                                                f"{detail}")
            log.exception("job %s series %d", job_id, k)
        else:
            record["result"] = _series_result(report, names)
            record.update(state="failed" if report.get("error") else "ok",
                          error=_named(report["error"], names) if report.get("error") else None)
        record["shown"].sort()
        job["done"] = done_before + len(series.slices)
        store.write_job(job)
    return job


def summary(findings):
    """The few findings the list of past results shows."""
    keys = ("tumour_found", "area_px", "area_fraction", "area_mm2", "max_probability")
    return {k: findings.get(k) for k in keys}


def run_job(store, job_id, segmenter, max_pixels):
    """Segment every scan and DICOM series of a queued job, recording progress in
    ``job.json``; the uploads are deleted at the end, whatever happened."""
    job = store.read_job(job_id)
    job["state"], job["done"] = "running", 0
    job.setdefault("series", [])
    job.setdefault("skipped", [])
    store.write_job(job)
    uploads, results = store.uploads_dir(job_id), store.results_dir(job_id)
    try:
        dicom = set(dicom_uploads(uploads, job["scans"]))
        if dicom:
            try:
                segment_series(store, job, segmenter, max_pixels, sorted(dicom))
            except MissingExtraError as exc:
                for i in dicom:
                    scan = job["scans"][i]
                    scan.update(state="failed", error=f"{scan['name']}: {exc}")
        for index, scan in enumerate(job["scans"]):
            if index in dicom:
                continue
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
            job["done"] += 1
            store.write_job(job)
    finally:
        store.drop_uploads(job_id)  # the files as uploaded (DICOM headers) are not kept
    job["state"] = "done"           # only now: "done" means the uploads are gone
    store.write_job(job)
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
