"""Reading scans into 2-D grayscale arrays.

Every caller (the device runtime, evaluation and training) reads scans through
``load_scan`` so that a scan means the same pixels everywhere.

Mode policy (Pillow modes):
- ``L`` (8-bit gray): as is, uint8.
- ``I;16*`` / ``I`` (16-bit or 32-bit integer gray): as is, their own integer range
  (normalisation is per scan, see ``edge_runtime.preprocess``).
- ``F``: as is, float32.
- ``RGB``/``P``/``LA``/``CMYK``/``YCbCr``...: converted to ``L`` by Pillow (ITU-R 601-2 luma);
  ``RGBA``/``LA``/transparent palette images are composited on black first.
- ``1`` (bilevel) is refused: a bitmap is not a scan.

DICOM (``.dcm`` or the ``DICM`` preamble) is read with pydicom, imported only when a DICOM
file is met (the ``dicom`` extra): RescaleSlope/RescaleIntercept are applied, MONOCHROME1
is inverted so that bright means dense as in MONOCHROME2, and PixelSpacing becomes
``Scan.spacing_mm``. Multi-frame DICOM is refused (export single slices).

Limits (each failure is an ``InputImageError`` naming the file and the problem):
- anything that is not a regular file (FIFO, device, socket, folder; also through a symbolic
  link) is refused before it is opened for reading (``edge_runtime.safeio``);
- empty files, unreadable files, anything Pillow/pydicom cannot decode, truncated files;
- scans smaller than ``MIN_SIDE`` pixels on a side;
- images over ``MAX_PIXELS`` pixels (decompression bombs; checked from the header before
  decoding, and Pillow's own DecompressionBombWarning/Error count as failures);
- images whose long side is more than ``MAX_ASPECT`` times the short side (checked from the
  header: such a strip is not a scan, and the letterbox would squash it to a few rows);
- multi-frame images (animated PNG/GIF/WebP, multi-page TIFF, multi-frame DICOM): refused,
  export single slices;
- scans with a NaN or infinite pixel (float TIFF, DICOM with a float rescale): refused, since
  the percentile normalisation would silently turn such a scan into "no tumour found".

EXIF orientation (JPEG/TIFF/WebP from a camera or a phone) is applied, so the mask matches
the image as a viewer shows it; ``Scan.warnings`` says so. Warnings raised by Pillow, numpy or
pydicom while a file is read (e.g. "Corrupt EXIF data") are caught and kept, one line each, in
``Scan.warnings`` instead of reaching the terminal unnamed.
"""

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from edge_runtime.errors import InputImageError
from edge_runtime.preprocess import MAX_ASPECT
from edge_runtime.safeio import NotRegularFileError, one_line, open_regular

MIN_SIDE = 16                 # pixels: smaller scans are refused
MAX_PIXELS = 40_000_000       # pixels (e.g. 6300 x 6300): larger images are refused
DICOM_SUFFIXES = (".dcm", ".dicom")


@dataclass
class Scan:
    path: Path
    pixels: np.ndarray            # 2-D, uint8 / uint16 / int32 / float32
    spacing_mm: tuple = None      # (row, column) pixel spacing in mm when known (DICOM)
    source_format: str = ""       # e.g. "PNG", "JPEG", "DICOM"
    source_mode: str = ""         # e.g. "L", "I;16", "RGB", "MONOCHROME2"
    warnings: list = field(default_factory=list)   # one line each (library warnings, EXIF)

    @property
    def height(self):
        return int(self.pixels.shape[0])

    @property
    def width(self):
        return int(self.pixels.shape[1])


def pil_to_gray(img):
    """A Pillow image -> 2-D numpy array following the mode policy above."""
    mode = img.mode
    if mode == "1":
        raise ValueError("bilevel (1-bit) image: not a grayscale scan")
    if mode in ("L", "F") or mode.startswith("I"):
        arr = np.asarray(img)
        if arr.ndim != 2:
            raise ValueError(f"unsupported image layout {arr.shape} for mode {mode}")
        return arr
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if mode in ("RGBA", "LA", "PA") or img.mode == "RGBA":
        rgba = img.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        img = Image.alpha_composite(black, rgba)
    return np.asarray(img.convert("L"))


def _open_binary(path):
    """Open a regular file for reading (a seam for tests that simulate permission errors);
    refuses FIFOs, devices and sockets without reading (``safeio.open_regular``)."""
    return open_regular(path)


def _check_size(path, width, height, max_pixels):
    if width * height > max_pixels:
        raise InputImageError(
            path, f"image too large: {width}x{height} px = {width * height} pixels; "
                  f"the limit is {max_pixels} (possible decompression bomb)")
    if min(width, height) < MIN_SIDE:
        raise InputImageError(
            path, f"image too small: {width}x{height} px; minimum is {MIN_SIDE}x{MIN_SIDE}")
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise InputImageError(
            path, f"extreme aspect ratio: {width}x{height} px; the long side may be at most "
                  f"{MAX_ASPECT} times the short side")


def _check_finite(path, arr):
    if arr.dtype.kind == "f":
        bad = arr.size - int(np.count_nonzero(np.isfinite(arr)))
        if bad:
            raise InputImageError(
                path, f"{bad} of {arr.size} pixels are not finite numbers (NaN or infinity); "
                      "refused, since the result would be meaningless")


def _warning_lines(caught):
    lines = []
    for w in caught:
        line = f"{w.category.__name__}: {one_line(w.message, 200)}"
        if line not in lines:
            lines.append(line)
    return lines


def _is_dicom(path, head):
    return path.suffix.lower() in DICOM_SUFFIXES or head[128:132] == b"DICM"


def _load_dicom(path, fh, max_pixels):
    try:
        import pydicom
    except ImportError:
        raise InputImageError(
            path, "DICOM needs pydicom, which is not installed; "
                  "install the extra with: pip install 'edge-seg[dicom]'") from None
    try:
        ds = pydicom.dcmread(fh)
    except Exception as exc:  # noqa: BLE001 - any parse failure is a bad input
        raise InputImageError(path, f"cannot read DICOM ({_short(exc)})") from None
    if "PixelData" not in ds:
        raise InputImageError(path, "DICOM file has no pixel data")
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames > 1:
        raise InputImageError(
            path, f"multi-frame DICOM ({frames} frames) is not supported; export single slices")
    rows, cols = int(getattr(ds, "Rows", 0) or 0), int(getattr(ds, "Columns", 0) or 0)
    _check_size(path, cols, rows, max_pixels)
    try:
        arr = ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - compressed syntax without a handler, truncation
        raise InputImageError(path, f"cannot decode DICOM pixel data ({_short(exc)})") from None
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).upper()
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        arr = arr[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    if arr.ndim != 2:
        raise InputImageError(path, f"unsupported DICOM pixel layout {arr.shape}")
    slope = float(getattr(ds, "RescaleSlope", 1) or 1)
    intercept = float(getattr(ds, "RescaleIntercept", 0) or 0)
    if slope != 1.0 or intercept != 0.0:
        arr = arr.astype(np.float32) * np.float32(slope) + np.float32(intercept)
    if photometric == "MONOCHROME1":
        arr = arr.astype(np.float32)
        arr = (arr.max() + arr.min()) - arr
    spacing = None
    raw = getattr(ds, "PixelSpacing", None)
    if raw is not None:
        try:
            spacing = (float(raw[0]), float(raw[1]))
        except (TypeError, ValueError, IndexError):
            spacing = None
        if spacing is not None and not (spacing[0] > 0 and spacing[1] > 0):
            spacing = None
    arr = np.ascontiguousarray(arr)
    _check_finite(path, arr)
    return Scan(path, arr, spacing, "DICOM", photometric)


def _short(exc):
    return one_line(exc, 200) or type(exc).__name__


def _orientation(img):
    try:
        return int(img.getexif().get(0x0112, 1) or 1)
    except Exception:  # noqa: BLE001 - corrupt EXIF: treated as no orientation
        return 1


def load_scan(path, max_pixels=MAX_PIXELS):
    """Read one image or DICOM file into a ``Scan``; raises ``InputImageError`` naming the file."""
    path = Path(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scan = _load(path, max_pixels)
    scan.warnings = _warning_lines(caught) + scan.warnings
    return scan


def _load(path, max_pixels):
    if not path.exists():
        raise InputImageError(path, "no such file")
    if path.is_dir():
        raise InputImageError(path, "is a folder, not an image file")
    try:
        fh = _open_binary(path)
    except NotRegularFileError as exc:
        raise InputImageError(path, f"{exc.problem}; refused without reading it") from None
    except PermissionError:
        raise InputImageError(path, "cannot open: permission denied") from None
    except OSError as exc:
        raise InputImageError(path, f"cannot open ({exc.strerror or _short(exc)})") from None
    notes = []
    with fh:
        try:
            head = fh.read(132)
        except OSError as exc:
            raise InputImageError(path, f"cannot read ({exc.strerror or _short(exc)})") from None
        if not head:
            raise InputImageError(path, "empty file (0 bytes)")
        fh.seek(0)
        if _is_dicom(path, head):
            return _load_dicom(path, fh, max_pixels)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(fh) as img:
                    _check_size(path, img.width, img.height, max_pixels)
                    frames = int(getattr(img, "n_frames", 1) or 1)
                    if frames > 1:
                        raise InputImageError(
                            path, f"multi-frame image ({frames} frames) is not supported; "
                                  "export single slices")
                    img.load()
                    fmt = img.format or ""
                    mode = img.mode
                    orientation = _orientation(img)
                    if orientation != 1:
                        turned = ImageOps.exif_transpose(img)
                        if turned is not None and turned is not img:
                            img = turned
                        notes.append(f"EXIF orientation {orientation} applied: the mask is "
                                     "in the orientation a viewer shows")
                    pixels = pil_to_gray(img)
        except InputImageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise InputImageError(path, f"image too large (possible decompression bomb: "
                                        f"{_short(exc)})") from None
        except UnidentifiedImageError:
            raise InputImageError(path, "not an image file (or an unsupported format)") from None
        except ValueError as exc:  # the mode policy (e.g. bilevel) and odd layouts
            raise InputImageError(path, f"unsupported image: {_short(exc)}") from None
        except Exception as exc:  # noqa: BLE001 - any decoder failure is a bad input
            msg = _short(exc)
            if "truncated" in msg.lower():
                raise InputImageError(path, f"truncated image file ({msg})") from None
            raise InputImageError(path, f"cannot read image ({msg})") from None
    if pixels.ndim != 2:
        raise InputImageError(path, f"unsupported image layout {pixels.shape}")
    _check_finite(path, pixels)
    return Scan(path, pixels, None, fmt, mode, notes)
