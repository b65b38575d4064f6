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
- empty files, unreadable files, anything Pillow/pydicom cannot decode, truncated files;
- scans smaller than ``MIN_SIDE`` pixels on a side;
- images over ``MAX_PIXELS`` pixels (decompression bombs; checked from the header before
  decoding, and Pillow's own DecompressionBombWarning/Error count as failures).
"""

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from edge_runtime.errors import InputImageError

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
    """Open a file for reading (a seam for tests that simulate permission errors)."""
    return open(path, "rb")


def _check_size(path, width, height, max_pixels):
    if width * height > max_pixels:
        raise InputImageError(
            path, f"image too large: {width}x{height} px = {width * height} pixels; "
                  f"the limit is {max_pixels} (possible decompression bomb)")
    if min(width, height) < MIN_SIDE:
        raise InputImageError(
            path, f"image too small: {width}x{height} px; minimum is {MIN_SIDE}x{MIN_SIDE}")


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
    return Scan(path, np.ascontiguousarray(arr), spacing, "DICOM", photometric)


def _short(exc):
    return " ".join(str(exc).split())[:200] or type(exc).__name__


def load_scan(path, max_pixels=MAX_PIXELS):
    """Read one image or DICOM file into a ``Scan``; raises ``InputImageError`` naming the file."""
    path = Path(path)
    if not path.exists():
        raise InputImageError(path, "no such file")
    if path.is_dir():
        raise InputImageError(path, "is a folder, not an image file")
    try:
        fh = _open_binary(path)
    except PermissionError:
        raise InputImageError(path, "cannot open: permission denied") from None
    except OSError as exc:
        raise InputImageError(path, f"cannot open ({exc.strerror or _short(exc)})") from None
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
                    img.load()
                    fmt = img.format or ""
                    mode = img.mode
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
    return Scan(path, pixels, None, fmt, mode)
