"""The pixels of one slice of a series, decoded one frame at a time.

pydicom decodes compressed transfer syntaxes through its pixel-data plugins: pylibjpeg with
pylibjpeg-libjpeg (JPEG baseline, extended, lossless, JPEG-LS), pylibjpeg-openjpeg (JPEG
2000) and pylibjpeg-rle (RLE; pydicom also has its own RLE decoder), or python-gdcm. The
``dicom`` extra installs the pylibjpeg set, which has wheels for x86_64 and aarch64
(Raspberry Pi OS 64-bit). Then as ``edge_runtime.imageio``: RescaleSlope/Intercept applied,
MONOCHROME1 inverted (bright means dense), colour turned into luma.
"""

import numpy as np

from edge_runtime.dicom._deps import need
from edge_runtime.errors import InputImageError
from edge_runtime.imageio import MAX_PIXELS, MIN_SIDE, Scan


def _short(exc):
    return " ".join(str(exc).split())[:200] or type(exc).__name__


def to_gray(arr, photometric, slope=1.0, intercept=0.0):
    """Decoded pixels of one frame -> 2-D array as the model reads it."""
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        arr = arr[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    if arr.ndim != 2:
        raise ValueError(f"unsupported pixel layout {arr.shape}")
    if slope != 1.0 or intercept != 0.0:
        arr = arr.astype(np.float32) * np.float32(slope) + np.float32(intercept)
    if photometric == "MONOCHROME1":
        arr = arr.astype(np.float32)
        arr = (arr.max() + arr.min()) - arr
    return np.ascontiguousarray(arr)


def load_slice(sl):
    """``series.Slice`` -> ``imageio.Scan`` (only this frame is decoded); raises
    ``InputImageError`` naming the file (and frame) and the problem."""
    need("pydicom")
    from pydicom.pixels import pixel_array
    where = sl.path if sl.frame is None else f"{sl.path} (frame {sl.frame + 1})"
    if sl.rows * sl.columns > MAX_PIXELS or min(sl.rows, sl.columns) < MIN_SIDE:
        raise InputImageError(where, f"image size {sl.columns}x{sl.rows} is outside "
                                     f"{MIN_SIDE}x{MIN_SIDE} .. {MAX_PIXELS} pixels")
    try:
        arr = pixel_array(str(sl.path), index=sl.frame)
    except Exception as exc:  # noqa: BLE001 - no decoder, corrupt or truncated data
        raise InputImageError(where, f"cannot decode pixel data ({_short(exc)})") from None
    try:
        gray = to_gray(arr, sl.photometric, *sl.rescale)
    except ValueError as exc:
        raise InputImageError(where, str(exc)) from None
    spacing = sl.pixel_spacing if sl.pixel_spacing and min(sl.pixel_spacing) > 0 else None
    return Scan(sl.path, gray, spacing, "DICOM", sl.photometric)
