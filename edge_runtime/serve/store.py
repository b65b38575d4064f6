"""The data folder of ``edge-seg serve``: jobs, their files, and how long they are kept.

Layout (every name below is fixed or generated here; nothing from a request becomes a path)::

    DATA/auth.json                      hashed access token (non-local binds only)
    DATA/jobs/<id>/job.json             the job record (state, progress, scans)
    DATA/jobs/<id>/uploads/scan_NNN.ext the uploaded files, as received (never executed;
                                        deleted when the job is done: DICOM headers hold
                                        patient data, and the page needs only the results)
    DATA/jobs/<id>/results/scan_NNN_{mask,overlay,view,layer}.png, scan_NNN_findings.json
    DATA/jobs/<id>/results/series_KKK_{series.json,montage.png,seg.dcm}  a DICOM series
    DATA/jobs/<id>/results/series_KKK_sNNN_{mask,overlay,view,layer}.png, _findings.json
                                        its slices (NNN: position in slice order, from 1)

``<id>`` is 32 lowercase hex digits from ``secrets``; ``check_job_id`` refuses anything else,
so a request can name a job but never a path. ``ext`` comes from a fixed list
(``upload_suffix``). ``job.json`` is written atomically (``atomic.write_json``).
"""

import json
import os
import re
import secrets
import shutil
import time
from pathlib import Path

from edge_runtime import atomic

JOB_ID_RE = re.compile(r"[0-9a-f]{32}")
JOB_FILE = "job.json"
UPLOADS = "uploads"
RESULTS = "results"
SCAN_STEM = "scan_{:03d}"
SERIES_STEM = "series_{:03d}"
SLICE_STEM = "{}_s{:03d}"          # as edge_runtime.dicom.process names a series' slices
# Suffixes kept on uploaded files (so the reader sees .dcm); anything else is stored as .bin
# and still read by content (Pillow sniffs images, DICOM has its DICM preamble).
KEPT_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".dcm", ".dicom",
                 ".zip")
# Files of one scan a request may ask for: kind -> (file suffix, media type).
RESULT_FILES = {
    "mask.png": ("_mask.png", "image/png"),
    "overlay.png": ("_overlay.png", "image/png"),
    "findings.json": ("_findings.json", "application/json"),
    "view.png": ("_view.png", "image/png"),
    "layer.png": ("_layer.png", "image/png"),
}
# Files of one DICOM series a request may ask for (written by dicom.process_series).
SERIES_FILES = {
    "seg.dcm": ("_seg.dcm", "application/dicom"),
    "series.json": ("_series.json", "application/json"),
    "montage.png": ("_montage.png", "image/png"),
}
# Job states: uploading -> queued -> running -> done; "interrupted" when the server stopped
# before finishing it.
FINISHED = ("done", "interrupted")
MAX_NAME = 120


class JobNotFound(LookupError):
    pass


def new_job_id():
    return secrets.token_hex(16)


def check_job_id(job_id):
    """A job id from a request -> the same string, or ``JobNotFound`` if it is not one of ours."""
    if not isinstance(job_id, str) or not JOB_ID_RE.fullmatch(job_id):
        raise JobNotFound(f"not a job id: {str(job_id)[:40]!r}")
    return job_id


def display_name(raw):
    """An uploaded file's name as sent by the browser -> a short, printable base name (shown
    on pages and in the findings; never used as a path)."""
    name = str(raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    if len(name) > MAX_NAME:
        name = name[:MAX_NAME - 1] + "…"
    return name or "unnamed"


def upload_suffix(name):
    suffix = os.path.splitext(str(name))[1].lower()
    return suffix if suffix in KEPT_SUFFIXES else ".bin"


def scan_stem(index):
    return SCAN_STEM.format(index)


def series_stem(index):
    return SERIES_STEM.format(index)


def slice_stem(series_index, number):
    return SLICE_STEM.format(series_stem(series_index), number)


class Store:
    """Jobs under ``data_dir/jobs``; ``keep_days`` > 0 deletes finished jobs older than that."""

    def __init__(self, data_dir, keep_days=30):
        self.data_dir = Path(data_dir)
        self.jobs_dir = self.data_dir / "jobs"
        self.keep_days = keep_days

    def prepare(self):
        """Create the folders (private to this user) and mark jobs a previous server left
        unfinished as interrupted -> their ids."""
        for folder in (self.data_dir, self.jobs_dir):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            if folder.is_symlink():
                raise OSError(f"{folder} is a symbolic link; give --data a real folder")
        stale = []
        for job in self.list_jobs():
            if job["state"] not in FINISHED:
                job["state"] = "interrupted"
                self.write_job(job)
                self.drop_uploads(job["id"])
                stale.append(job["id"])
        return stale

    def drop_uploads(self, job_id):
        """Delete a job's uploaded files (its results stay) -> how many were deleted."""
        n = 0
        try:
            with os.scandir(self.uploads_dir(job_id)) as entries:
                for entry in entries:
                    if entry.is_file(follow_symlinks=False) or entry.is_symlink():
                        os.unlink(entry.path)
                        n += 1
        except FileNotFoundError:      # the job was deleted meanwhile
            pass
        return n

    # -- paths (ids checked, names fixed) ------------------------------------------------
    def job_dir(self, job_id):
        return self.jobs_dir / check_job_id(job_id)

    def uploads_dir(self, job_id):
        return self.job_dir(job_id) / UPLOADS

    def results_dir(self, job_id):
        return self.job_dir(job_id) / RESULTS

    def result_file(self, job_id, index, kind):
        """Path of one result file -> ``(path, media type)``; ``JobNotFound`` for an unknown
        job, scan index or kind, or a file not written (a failed scan)."""
        if kind not in RESULT_FILES:
            raise JobNotFound(f"no such result file: {str(kind)[:40]!r}")
        job = self.read_job(job_id)
        if not (isinstance(index, int) and 0 <= index < len(job["scans"])):
            raise JobNotFound(f"job {job_id} has no scan {index}")
        suffix, media = RESULT_FILES[kind]
        path = self.results_dir(job_id) / f"{scan_stem(index)}{suffix}"
        if not path.is_file():
            raise JobNotFound(f"job {job_id} scan {index} has no {kind}")
        return path, media

    def _series_record(self, job_id, index):
        job = self.read_job(job_id)
        series = job.get("series") or []
        if not (isinstance(index, int) and 0 <= index < len(series)):
            raise JobNotFound(f"job {job_id} has no series {index}")
        return series[index]

    def series_file(self, job_id, index, kind):
        """Path of one file of a DICOM series (``SERIES_FILES``) -> ``(path, media type)``;
        ``JobNotFound`` for an unknown job, series or kind, or a file not written."""
        if kind not in SERIES_FILES:
            raise JobNotFound(f"no such series file: {str(kind)[:40]!r}")
        self._series_record(job_id, index)
        suffix, media = SERIES_FILES[kind]
        path = self.results_dir(job_id) / f"{series_stem(index)}{suffix}"
        if not path.is_file():
            raise JobNotFound(f"job {job_id} series {index} has no {kind}")
        return path, media

    def slice_file(self, job_id, index, number, kind):
        """Path of one result file (``RESULT_FILES``) of slice ``number`` (1-based, in slice
        order) of series ``index`` -> ``(path, media type)``; ``JobNotFound`` otherwise."""
        if kind not in RESULT_FILES:
            raise JobNotFound(f"no such result file: {str(kind)[:40]!r}")
        record = self._series_record(job_id, index)
        if not (isinstance(number, int) and 1 <= number <= int(record.get("slices", 0))):
            raise JobNotFound(f"job {job_id} series {index} has no slice {number}")
        suffix, media = RESULT_FILES[kind]
        path = self.results_dir(job_id) / f"{slice_stem(index, number)}{suffix}"
        if not path.is_file():
            raise JobNotFound(f"job {job_id} series {index} slice {number} has no {kind}")
        return path, media

    # -- records -------------------------------------------------------------------------
    def create_job(self):
        """A new, empty job in state ``uploading`` -> its record."""
        job_id = new_job_id()
        folder = self.job_dir(job_id)
        folder.mkdir(mode=0o700)
        (folder / UPLOADS).mkdir(mode=0o700)
        (folder / RESULTS).mkdir(mode=0o700)
        now = time.time()
        job = {"id": job_id, "created": now, "state": "uploading", "total": 0, "done": 0,
               "scans": [], "series": [], "skipped": [], "notes": []}
        self.write_job(job)
        return job

    def write_job(self, job):
        atomic.write_json(self.job_dir(job["id"]) / JOB_FILE, job)

    def read_job(self, job_id):
        path = self.job_dir(job_id) / JOB_FILE
        try:
            with open(path, "rb") as fh:
                job = json.loads(fh.read().decode("utf-8"))
        except FileNotFoundError:
            raise JobNotFound(f"no job {job_id}") from None
        except (OSError, ValueError) as exc:
            raise JobNotFound(f"job {job_id} cannot be read ({exc})") from None
        if not isinstance(job, dict) or job.get("id") != job_id:
            raise JobNotFound(f"job {job_id}: its record is not a job")
        return job

    def list_jobs(self):
        """Every readable job, newest first (folders that are not ours are ignored)."""
        jobs = []
        try:
            entries = list(os.scandir(self.jobs_dir))
        except FileNotFoundError:
            return jobs
        for entry in entries:
            if not JOB_ID_RE.fullmatch(entry.name) or not entry.is_dir(follow_symlinks=False):
                continue
            try:
                jobs.append(self.read_job(entry.name))
            except JobNotFound:
                continue
        jobs.sort(key=lambda j: j.get("created", 0), reverse=True)
        return jobs

    def delete_job(self, job_id):
        folder = self.job_dir(job_id)
        if not folder.is_dir() or folder.is_symlink():
            raise JobNotFound(f"no job {job_id}")
        shutil.rmtree(folder)

    def purge(self, now=None):
        """Delete finished jobs older than ``keep_days`` (and abandoned uploads older than a
        day) -> the ids deleted. ``keep_days`` 0 keeps everything."""
        if not self.keep_days:
            return []
        now = time.time() if now is None else now
        deleted = []
        for job in self.list_jobs():
            age_days = (now - float(job.get("created", now))) / 86400.0
            old = job["state"] in FINISHED and age_days > self.keep_days
            abandoned = job["state"] == "uploading" and age_days > 1
            if old or abandoned:
                try:
                    self.delete_job(job["id"])
                except (JobNotFound, OSError):
                    continue
                deleted.append(job["id"])
        return deleted
