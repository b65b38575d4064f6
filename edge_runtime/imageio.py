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
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from edge_runtime.errors import InputImageError


@dataclass
class Scan:
    path: Path
    pixels: np.ndarray            # 2-D, uint8 / uint16 / int32 / float32
    spacing_mm: tuple = None      # (row, column) pixel spacing in mm when known (DICOM)
    source_format: str = ""       # e.g. "PNG", "JPEG", "DICOM"
    source_mode: str = ""         # e.g. "L", "I;16", "RGB"


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


def load_scan(path):
    """Read one image file into a ``Scan``; raises ``InputImageError`` naming the file."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            fmt = img.format or ""
            mode = img.mode
            pixels = pil_to_gray(img)
    except InputImageError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a bad input
        raise InputImageError(path, f"cannot read image ({exc})") from None
    return Scan(path, pixels, None, fmt, mode)
