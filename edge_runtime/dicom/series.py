"""Finding, grouping and ordering the slices of DICOM series in a folder tree.

``scan_tree(root)`` walks a folder (recursively; a scanner's export tree or a DICOMDIR
media folder: the DICOMDIR index itself is skipped, the files it lists are in the tree),
reads every file's header once, and returns the MR series it found plus one line for every
file or series it left out and why:

- skipped (not an error): files that are not DICOM, the DICOMDIR index, objects that are
  not images (SR, PR, KO, SEG, RT...), series of another modality (CT, ...);
- failed (an error, the rest goes on): unreadable or truncated files, MR images without
  pixel data, series whose slices do not form one stack (mixed orientations or sizes).

A series is the instances of one (StudyInstanceUID, SeriesInstanceUID). An enhanced
multi-frame MR file contributes one slice per frame (per-frame functional groups). Slices
are ordered along the slice normal (ImagePositionPatient · the normal of
ImageOrientationPatient); only when positions are missing by InstanceNumber, and
``Series.ordering`` says so. Repeated SOPInstanceUIDs are read once (noted).
"""

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_runtime.dicom import geometry
from edge_runtime.dicom._deps import need

DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
PIXEL_DATA = 0x7FE00010
DEFER_BYTES = 64 * 1024
ENHANCED_MR_CLASS = "1.2.840.10008.5.1.4.1.1.4.1"
NOT_IMAGES = {"SR": "a structured report", "PR": "a presentation state",
              "KO": "a key object selection", "SEG": "a segmentation",
              "RTSTRUCT": "an RT structure set", "REG": "a registration",
              "DOC": "an encapsulated document", "RTPLAN": "an RT plan"}
ORDER_BY_POSITION = "position along the slice normal (ImagePositionPatient)"
ORDER_BY_NUMBER = ("InstanceNumber (no ImagePositionPatient/ImageOrientationPatient: "
                   "the order is the scanner's numbering, not checked against geometry)")


@dataclass
class Slice:
    """One 2-D image of a series: a single-frame file or one frame of a multi-frame file."""
    path: Path
    frame: int = None                 # 0-based frame of a multi-frame file, None otherwise
    sop_uid: str = ""
    sop_class: str = ""
    instance_number: int = None
    position: tuple = None            # ImagePositionPatient (mm)
    orientation: tuple = None         # ImageOrientationPatient (6 direction cosines)
    pixel_spacing: tuple = None       # (row, column) mm
    thickness: float = None
    spacing_between: float = None
    rows: int = 0
    columns: int = 0
    rescale: tuple = (1.0, 0.0)       # (slope, intercept)
    photometric: str = "MONOCHROME2"


@dataclass
class Series:
    study_uid: str
    series_uid: str
    modality: str = ""
    description: str = ""
    series_number: int = None
    frame_of_reference: str = ""
    slices: list = field(default_factory=list)
    ordering: str = ""
    notes: list = field(default_factory=list)      # one line each: what was done about input
    problem: str = None                           # set: the series cannot be processed

    @property
    def name(self):
        num = "" if self.series_number is None else f"{self.series_number}"
        desc = self.description or self.modality
        return f"series {num} {desc}".replace("  ", " ").strip() + f" ({self.series_uid})"

    @property
    def distances(self):
        """Positions along the normal of the ordered slices (mm), or None."""
        if not self.slices or any(s.position is None or s.orientation is None
                                  for s in self.slices):
            return None
        return geometry.positions_along_normal([s.position for s in self.slices],
                                               self.slices[0].orientation)

    def spacing(self):
        """``geometry.slice_spacing`` for this series (see there)."""
        first = self.slices[0] if self.slices else Slice(Path())
        return geometry.slice_spacing(self.distances, first.spacing_between, first.thickness)


def _floats(value, n):
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return out if len(out) == n and all(np.isfinite(out)) else None


def _float(value):
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _first(seq_holder, seq_name):
    seq = getattr(seq_holder, seq_name, None)
    return seq[0] if seq else None


def _functional(ds, frame_groups, seq_name):
    """An item of a functional group, per-frame first, then shared."""
    for holder in (frame_groups, _first(ds, "SharedFunctionalGroupsSequence")):
        if holder is not None:
            item = _first(holder, seq_name)
            if item is not None:
                return item
    return None


def _pixel_bytes(ds, file_size):
    """Bytes of pixel data present: from the element's declared length and where its value
    starts when the value was not read (``read_header`` defers large values), else its
    length."""
    elem = ds.get_item(PIXEL_DATA, keep_deferred=True)
    tell, length = getattr(elem, "value_tell", None), getattr(elem, "length", None)
    if getattr(elem, "value", b"") is None and tell is not None and length is not None:
        return max(0, min(length, file_size - tell))
    return len(ds.PixelData)


def _pixel_problem(ds, file_size):
    """A one-line problem with the pixel data of an image (None when it looks complete)."""
    if "PixelData" not in ds:
        return "MR image without pixel data (or truncated before it)"
    if not ds.file_meta.get("TransferSyntaxUID", None) or \
            ds.file_meta.TransferSyntaxUID.is_compressed:
        return None
    frames = _int(ds.get("NumberOfFrames", 1)) or 1
    expected = (_int(ds.get("Rows")) or 0) * (_int(ds.get("Columns")) or 0) * frames * \
        (_int(ds.get("SamplesPerPixel", 1)) or 1) * ((_int(ds.get("BitsAllocated")) or 8) // 8)
    got = _pixel_bytes(ds, file_size)
    if got < expected:
        return f"truncated: {got} bytes of pixel data where {expected} are expected"
    return None


def slices_of(ds, path):
    """The slices of one image dataset (one per frame) -> list of ``Slice``."""
    base = dict(path=Path(path), sop_uid=str(ds.get("SOPInstanceUID", "")),
                sop_class=str(ds.get("SOPClassUID", "")),
                instance_number=_int(ds.get("InstanceNumber")),
                rows=_int(ds.get("Rows")) or 0, columns=_int(ds.get("Columns")) or 0,
                photometric=str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper())
    frames = _int(ds.get("NumberOfFrames", 1)) or 1
    if "PerFrameFunctionalGroupsSequence" not in ds and "SharedFunctionalGroupsSequence" \
            not in ds:
        if frames > 1:
            raise ValueError(f"multi-frame image ({frames} frames) without per-frame "
                             "functional groups: no geometry for its frames")
        return [Slice(frame=None,
                      position=_floats(ds.get("ImagePositionPatient"), 3),
                      orientation=_floats(ds.get("ImageOrientationPatient"), 6),
                      pixel_spacing=_floats(ds.get("PixelSpacing"), 2),
                      thickness=_float(ds.get("SliceThickness")),
                      spacing_between=_float(ds.get("SpacingBetweenSlices")),
                      rescale=(_float(ds.get("RescaleSlope", 1)) or 1.0,
                               _float(ds.get("RescaleIntercept", 0)) or 0.0),
                      **base)]
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or [None] * frames
    if len(per_frame) != frames:
        raise ValueError(f"{len(per_frame)} per-frame functional groups for {frames} frames")
    out = []
    for i, groups in enumerate(per_frame):
        pos = _functional(ds, groups, "PlanePositionSequence")
        ori = _functional(ds, groups, "PlaneOrientationSequence")
        meas = _functional(ds, groups, "PixelMeasuresSequence")
        pvt = _functional(ds, groups, "PixelValueTransformationSequence")
        out.append(Slice(
            frame=i,
            position=_floats(pos.get("ImagePositionPatient"), 3) if pos else None,
            orientation=_floats(ori.get("ImageOrientationPatient"), 6) if ori else None,
            pixel_spacing=_floats(meas.get("PixelSpacing"), 2) if meas else None,
            thickness=_float(meas.get("SliceThickness")) if meas else None,
            spacing_between=_float(meas.get("SpacingBetweenSlices")) if meas else None,
            rescale=((_float(pvt.get("RescaleSlope", 1)) or 1.0,
                      _float(pvt.get("RescaleIntercept", 0)) or 0.0) if pvt else (1.0, 0.0)),
            **base))
    return out


def iter_files(root):
    """Every file under ``root`` (recursive, sorted, hidden entries skipped)."""
    root = Path(root)
    if root.is_file():
        yield root
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath) / name


def read_header(path):
    """-> (dataset or None, reason skipped or None, problem or None) for one file."""
    from edge_runtime.safeio import NotRegularFileError, open_regular
    pydicom = need("pydicom")
    try:   # FIFOs, devices, sockets: refused without being opened for reading
        with open_regular(path) as fh:
            head = fh.read(132)
    except NotRegularFileError as exc:
        return None, None, exc.problem
    except OSError as exc:
        return None, None, f"cannot read ({exc.strerror or exc})"
    if not head:
        return None, "empty file (0 bytes)", None
    forced = head[128:132] != b"DICM"
    if forced and Path(path).suffix.lower() not in (".dcm", ".dicom"):
        return None, "not a DICOM file", None
    try:   # large values (the pixel data) are not read: decoded later, one frame at a time
        ds = pydicom.dcmread(path, force=forced, defer_size=DEFER_BYTES)
    except Exception as exc:  # noqa: BLE001 - any parse failure names the file
        msg = " ".join(str(exc).split())[:200]
        return None, None, f"cannot read DICOM ({msg or type(exc).__name__})"
    if forced and "SOPClassUID" not in ds:
        return None, "not a DICOM file (no preamble, no SOPClassUID)", None
    return ds, None, None


def classify(ds, file_size=0):
    """-> None for an MR image, else (kind, reason) with kind "skipped" or "failed"."""
    sop_class = str(ds.get("SOPClassUID", "") or ds.file_meta.get("MediaStorageSOPClassUID", ""))
    if sop_class == DICOMDIR_CLASS or "DirectoryRecordSequence" in ds:
        return "skipped", "DICOMDIR index (the files it lists are read from the tree)"
    modality = str(ds.get("Modality", "")).upper()
    if modality in NOT_IMAGES:
        return "skipped", f"not an image: {NOT_IMAGES[modality]} ({modality})"
    if "PixelData" not in ds and "Rows" not in ds:
        return "skipped", f"not an image (no pixel data; modality {modality or 'unknown'})"
    if modality != "MR":
        return "skipped", f"not MR (modality {modality or 'unknown'})"
    problem = _pixel_problem(ds, file_size)
    if problem:
        return "failed", problem
    return None


def scan_tree(root, log=None):
    """-> (list of ``Series`` in a stable order, [(path, reason)] skipped, [(path, problem)]
    failed). Non-MR series are reported once per series, not once per file."""
    return scan_files(iter_files(root))


def scan_files(paths):
    """``scan_tree`` for a given list of files (e.g. the DICOM files of a web upload) -> the
    same (series, skipped, failed)."""
    series, skipped, failed = {}, [], []
    other = {}
    for path in paths:
        path = Path(path)
        ds, skip, problem = read_header(path)
        if skip:
            skipped.append((path, skip))
            continue
        if problem:
            failed.append((path, problem))
            continue
        try:
            size = os.path.getsize(path)
        except OSError:
            size = 0
        verdict = classify(ds, size)
        if verdict and verdict[1].startswith("not MR"):
            key = str(ds.get("SeriesInstanceUID", path))
            other.setdefault(key, [path, verdict[1], 0])[2] += 1
            continue
        if verdict:
            (skipped if verdict[0] == "skipped" else failed).append((path, verdict[1]))
            continue
        key = (str(ds.get("StudyInstanceUID", "")), str(ds.get("SeriesInstanceUID", "")))
        s = series.get(key)
        if s is None:
            s = series[key] = Series(
                study_uid=key[0], series_uid=key[1], modality="MR",
                description=str(ds.get("SeriesDescription", "")),
                series_number=_int(ds.get("SeriesNumber")),
                frame_of_reference=str(ds.get("FrameOfReferenceUID", "")))
        try:
            s.slices.extend(slices_of(ds, path))
        except ValueError as exc:
            failed.append((path, str(exc)))
        del ds
    for path, reason, n in other.values():
        skipped.append((path, f"{reason}: series of {n} file(s) skipped"))
    out = sorted(series.values(), key=lambda s: (s.study_uid, s.series_number or 0,
                                                  s.series_uid))
    for s in out:
        order_series(s)
    return out, skipped, failed


def order_series(series):
    """Dedupe, check and order ``series.slices`` in place; sets ``ordering``, ``notes`` and
    ``problem`` (mixed orientations or image sizes: the series cannot be one stack)."""
    seen, kept = {}, []
    for s in series.slices:
        key = (s.sop_uid, s.frame)
        if s.sop_uid and key in seen:
            series.notes.append(f"duplicate instance {s.sop_uid} in {s.path} (also in "
                                f"{seen[key]}): read once")
            continue
        seen[key] = s.path
        kept.append(s)
    series.slices = kept
    if not kept:
        series.problem = "no slices"
        return series
    sizes = sorted({(s.rows, s.columns) for s in kept})
    if len(sizes) > 1:
        series.problem = ("mixed image sizes (" + ", ".join(f"{c}x{r}" for r, c in sizes)
                          + "): not one stack of slices")
        return series
    if all(s.position is not None and s.orientation is not None for s in kept):
        distinct = geometry.distinct_orientations(s.orientation for s in kept)
        if len(distinct) > 1:
            series.problem = (f"mixed orientations ({len(distinct)} distinct "
                              "ImageOrientationPatient values): not one stack of slices")
            return series
        d = geometry.positions_along_normal([s.position for s in kept], kept[0].orientation)
        order = np.lexsort((np.array([s.instance_number or 0 for s in kept]), d))
        series.slices = [kept[i] for i in order]
        series.ordering = ORDER_BY_POSITION
    else:
        series.slices = sorted(kept, key=lambda s: (s.instance_number is None,
                                                    s.instance_number or 0, s.frame or 0))
        series.ordering = ORDER_BY_NUMBER
        numbers = [s.instance_number for s in series.slices if s.instance_number is not None]
        if len(numbers) == len(series.slices) and len(set(numbers)) > 1 and \
                max(numbers) - min(numbers) + 1 != len(set(numbers)) and \
                all(s.frame is None for s in series.slices):
            series.notes.append(f"InstanceNumbers {min(numbers)}..{max(numbers)} have gaps "
                                f"({len(numbers)} slices)")
    return series
