"""Uploads: a multipart form streamed into a job's folder under limits, zips unpacked safely.

Nothing of an upload is trusted: the request body is counted as it arrives (``max_bytes``
over the whole body, whatever Content-Length says), file parts are written with generated
names (``received_NNN`` + a suffix from a fixed list) into the job's ``uploads`` folder only
(never the system's temporary folder), and the form's fields must pass ``before_files``
(the CSRF check) before any file part is written. A refusal is an ``UploadRefused`` with an
HTTP status and a one-line message, and removes whatever was written.

Zips (a DICOM series, or a folder of scans): members are unpacked to generated names, in
name order; hidden members (``.x``, ``__MACOSX``), folders and symbolic links are skipped;
encrypted members, more members than ``max_files`` and more than ``max_unpacked_bytes`` in
all are refused (checked from the directory and again while copying).
"""

import os
import stat
import zipfile
import zlib
from pathlib import Path

from edge_runtime.serve.store import display_name, scan_stem, upload_suffix

MAX_FIELDS = 16
MAX_FIELD_BYTES = 4096
COPY_CHUNK = 1024 * 1024


class UploadRefused(Exception):
    """An upload that is not accepted: ``status`` (HTTP) and a one-line ``message``."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def _mb(n):
    return f"{n / (1024 * 1024):.0f} MB"


def _open_new(path):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
                 0o600)
    return os.fdopen(fd, "wb")


class _FormSink:
    """python-multipart callbacks: fields kept in memory (small), files written to disk."""

    def __init__(self, dest_dir, max_files, before_files):
        self.dest_dir = Path(dest_dir)
        self.max_files = max_files
        self.before_files = before_files
        self.fields, self.files = {}, []
        self.checked = False
        self._reset()

    def _reset(self):
        self.headers, self.field, self.value = {}, b"", b""
        self.kind, self.name, self.buf, self.fh = None, None, None, None

    def callbacks(self):
        return {
            "on_part_begin": self._reset,
            "on_header_field": lambda d, s, e: setattr(self, "field", self.field + d[s:e]),
            "on_header_value": lambda d, s, e: setattr(self, "value", self.value + d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._data,
            "on_part_end": self._part_end,
        }

    def _header_end(self):
        self.headers[self.field.lower()] = self.value
        self.field, self.value = b"", b""

    def _headers_finished(self):
        from python_multipart.multipart import parse_options_header
        _disp, params = parse_options_header(self.headers.get(b"content-disposition", b""))
        self.name = params.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" not in params:
            if len(self.fields) >= MAX_FIELDS:
                raise UploadRefused(400, f"too many form fields (the limit is {MAX_FIELDS})")
            self.kind, self.buf = "field", bytearray()
            return
        filename = params[b"filename"].decode("utf-8", "replace")
        if not filename:            # a file input left empty: the browser sends no data
            self.kind = "skip"
            return
        if not self.checked:
            if self.before_files is not None:
                self.before_files(self.fields)
            self.checked = True
        if len(self.files) >= self.max_files:
            raise UploadRefused(413, f"too many files in one upload: more than {self.max_files}")
        path = self.dest_dir / f"received_{len(self.files):03d}{upload_suffix(filename)}"
        self.fh = _open_new(path)
        self.files.append((display_name(filename), path))
        self.kind = "file"

    def _data(self, data, start, end):
        if self.kind == "file":
            self.fh.write(data[start:end])
        elif self.kind == "field":
            self.buf += data[start:end]
            if len(self.buf) > MAX_FIELD_BYTES:
                raise UploadRefused(400, f"form field {self.name[:40]!r} is too long")

    def _part_end(self):
        if self.kind == "file":
            self.fh.close()
        elif self.kind == "field":
            self.fields[self.name] = bytes(self.buf).decode("utf-8", "replace")
        self._reset()

    def discard(self):
        if self.fh is not None and not self.fh.closed:
            self.fh.close()
        for _name, path in self.files:
            try:
                os.unlink(path)
            except OSError:
                pass


async def receive_upload(chunks, content_type, dest_dir, max_bytes, max_files,
                         before_files=None):
    """Stream a multipart form into ``dest_dir`` -> ``(fields, [(display name, path)])``.

    ``chunks``: the request body (an async iterator of bytes); ``before_files(fields)`` runs
    once, before the first file part is written, and may raise ``UploadRefused``.
    """
    from python_multipart.multipart import MultipartParser, parse_options_header

    ctype, params = parse_options_header(content_type or "")
    if ctype != b"multipart/form-data":
        got = ctype.decode("latin-1")[:60] or "no content type"
        raise UploadRefused(415, f"expected a form upload (multipart/form-data), got {got}")
    boundary = params.get(b"boundary")
    if not boundary or len(boundary) > 200:
        raise UploadRefused(400, "the form upload has no valid multipart boundary")
    sink = _FormSink(dest_dir, max_files, before_files)
    parser = MultipartParser(boundary, sink.callbacks())
    total = 0
    try:
        async for chunk in chunks:
            total += len(chunk)
            if total > max_bytes:
                raise UploadRefused(413, f"upload too large: more than {_mb(max_bytes)} "
                                         f"(the limit; send fewer files at once)")
            parser.write(chunk)
        parser.finalize()
    except UploadRefused:
        sink.discard()
        raise
    except OSError as exc:    # writing the file: disk full, permissions
        sink.discard()
        raise UploadRefused(507, f"the server cannot store the upload "
                                 f"({exc.strerror or exc})") from None
    except Exception as exc:  # noqa: BLE001 - a malformed body is a refused upload
        sink.discard()
        detail = " ".join(str(exc).split())[:120] or type(exc).__name__
        raise UploadRefused(400, f"the upload is not a well-formed form ({detail})") from None
    if sink.fh is not None and not sink.fh.closed:   # body ended inside a file part
        sink.discard()
        raise UploadRefused(400, "the upload ended in the middle of a file")
    if not sink.checked and before_files is not None:
        before_files(sink.fields)
    return sink.fields, sink.files


def _is_zip(path):
    with open(path, "rb") as fh:
        return fh.read(4) == b"PK\x03\x04"


def _zip_members(zf, name, max_files, max_unpacked_bytes):
    members = []
    for info in zf.infolist():
        parts = info.filename.replace("\\", "/").split("/")
        if info.is_dir() or any(p.startswith(".") or p == "__MACOSX" for p in parts if p):
            continue
        if stat.S_ISLNK(info.external_attr >> 16):
            continue
        if info.flag_bits & 0x1:
            raise UploadRefused(400, f"{name}: encrypted zip members are not supported")
        members.append(info)
    if not members:
        raise UploadRefused(400, f"{name}: the zip holds no files")
    if len(members) > max_files:
        raise UploadRefused(413, f"{name}: {len(members)} files in the zip; the limit is "
                                 f"{max_files}")
    declared = sum(i.file_size for i in members)
    if declared > max_unpacked_bytes:
        raise UploadRefused(413, f"{name}: unpacks to {_mb(declared)}; the limit is "
                                 f"{_mb(max_unpacked_bytes)}")
    return sorted(members, key=lambda i: i.filename)


def prepare_scans(received, uploads_dir, max_files, max_unpacked_bytes):
    """Received files -> the job's scans ``[{"name", "upload"}]``: each file becomes
    ``scan_NNN.ext``; a zip is replaced by its members. Refuses with ``UploadRefused``."""
    uploads_dir = Path(uploads_dir)
    scans, unpacked = [], 0

    def add(name, suffix):
        if len(scans) >= max_files:
            raise UploadRefused(413, f"too many files in one upload: more than {max_files}")
        target = uploads_dir / f"{scan_stem(len(scans))}{suffix}"
        scans.append({"name": name, "upload": target.name})
        return target

    for name, path in received:
        if not _is_zip(path):
            os.replace(path, add(name, upload_suffix(path.name)))
            continue
        try:
            with zipfile.ZipFile(path) as zf:
                members = _zip_members(zf, name, max_files - len(scans),
                                       max_unpacked_bytes - unpacked)
                for info in members:
                    target = add(display_name(info.filename), upload_suffix(info.filename))
                    with zf.open(info) as src, _open_new(target) as dst:
                        left = info.file_size
                        while True:
                            chunk = src.read(COPY_CHUNK)
                            if not chunk:
                                break
                            left -= len(chunk)
                            unpacked += len(chunk)
                            if left < 0 or unpacked > max_unpacked_bytes:
                                raise UploadRefused(413, f"{name}: a member unpacks to more "
                                                         "than its directory says")
                            dst.write(chunk)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError,
                ValueError, zlib.error) as exc:
            detail = " ".join(str(exc).split())[:120] or type(exc).__name__
            raise UploadRefused(400, f"{name}: not a readable zip archive ({detail})") from None
        os.unlink(path)
    return scans
