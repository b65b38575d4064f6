"""The one definition of preprocessing, shared by training, conversion and the device.

A scan (a 2-D grayscale array of any size and integer or float type) becomes the model's
input in three recorded steps:

1. letterbox: pad the shorter side symmetrically with the scan's minimum value so that the
   image is square (a square scan is unchanged), keeping the anatomy's aspect ratio;
2. resize the square to ``input_size`` x ``input_size`` with Pillow's bilinear filter on
   float32 data (antialiased when shrinking);
3. normalise intensities per scan: values at the ``low``/``high`` percentiles map to 0/1,
   clipped to [0, 1]. This makes 8-bit, 16-bit and differently windowed scans comparable.

The model's output probability map goes back through the same geometry in reverse
(resize to the padded square, crop the padding), so a mask is always the input's own size.
The whole specification is stored in a bundle's manifest (``Preprocessing.to_dict``) and
read back on the device (``Preprocessing.from_dict``): there is no second copy.
"""

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

RESIZE_POLICIES = ("letterbox",)
NORMALISATIONS = ("percentile",)


@dataclass(frozen=True)
class Preprocessing:
    input_size: int = 256
    resize: str = "letterbox"
    normalisation: str = "percentile"
    low_percentile: float = 0.5
    high_percentile: float = 99.5

    def __post_init__(self):
        if not isinstance(self.input_size, int) or self.input_size < 8:
            raise ValueError(f"input_size must be an integer >= 8, got {self.input_size!r}")
        if self.resize not in RESIZE_POLICIES:
            raise ValueError(f"resize must be one of {RESIZE_POLICIES}, got {self.resize!r}")
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(
                f"normalisation must be one of {NORMALISATIONS}, got {self.normalisation!r}")
        if not 0.0 <= self.low_percentile < self.high_percentile <= 100.0:
            raise ValueError(
                "percentiles must satisfy 0 <= low < high <= 100, got "
                f"low={self.low_percentile} high={self.high_percentile}")

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown preprocessing keys {unknown}; "
                             f"allowed: {sorted(cls.__dataclass_fields__)}")
        return cls(**known)


@dataclass(frozen=True)
class Geometry:
    """Where a scan of ``height`` x ``width`` sits inside the model's square input."""

    height: int
    width: int
    side: int      # side of the padded square, max(height, width)
    top: int       # padding rows above the scan in the padded square
    left: int      # padding columns left of the scan


def geometry_for(height, width):
    side = max(height, width)
    return Geometry(height, width, side, (side - height) // 2, (side - width) // 2)


def _letterbox(array, geo, fill):
    if geo.side == geo.height == geo.width:
        return array
    out = np.full((geo.side, geo.side), fill, dtype=array.dtype)
    out[geo.top:geo.top + geo.height, geo.left:geo.left + geo.width] = array
    return out


def _resize(array, size):
    """Bilinear resize of a float32 2-D array to ``size`` (height, width)."""
    h, w = size
    if array.shape == (h, w):
        return array.astype(np.float32, copy=False)
    img = Image.fromarray(np.ascontiguousarray(array, dtype=np.float32), mode="F")
    return np.asarray(img.resize((w, h), Image.BILINEAR), dtype=np.float32)


def normalise(array, spec):
    lo, hi = np.percentile(array, [spec.low_percentile, spec.high_percentile])
    if not hi > lo:
        return np.zeros_like(array, dtype=np.float32)
    return np.clip((array - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def prepare_image(gray, spec):
    """A 2-D scan -> (model input of shape (size, size) float32 in [0, 1], Geometry)."""
    gray = np.asarray(gray)
    if gray.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale array, got shape {gray.shape}")
    geo = geometry_for(*gray.shape)
    x = gray.astype(np.float32, copy=False)
    x = _letterbox(x, geo, fill=float(x.min()))
    x = _resize(x, (spec.input_size, spec.input_size))
    return normalise(x, spec), geo


def prepare_mask(mask, spec):
    """A 2-D label mask (non-zero = tumour) -> uint8 {0, 1} mask at model resolution."""
    mask = np.asarray(mask) > 0
    geo = geometry_for(*mask.shape)
    m = _letterbox(mask.astype(np.float32), geo, fill=0.0)
    m = _resize(m, (spec.input_size, spec.input_size))
    return (m >= 0.5).astype(np.uint8)


def restore(prob, geo):
    """Model-resolution map (size, size) -> the scan's own (height, width), float32."""
    prob = np.asarray(prob, dtype=np.float32)
    square = _resize(prob, (geo.side, geo.side))
    return square[geo.top:geo.top + geo.height, geo.left:geo.left + geo.width]
