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

Memory: the padded square is never built. Pillow's bilinear resize is separable (a horizontal
pass, then a vertical one, each row or column on its own, sums in double precision), so both
directions are computed here as horizontal passes over blocks of at most ``CHUNK_PIXELS``
(the vertical one on the transpose, which Pillow computes with the same coefficients in the
same order): the result is byte-identical to padding and resizing the whole square, but the
largest buffer is ``max(height, width) x input_size`` floats instead of ``side x side`` (a
40000 x 16 strip needed 6.4 GB; now scans with an aspect ratio above ``MAX_ASPECT`` are
refused and the largest buffer of an allowed scan of ``imageio.MAX_PIXELS`` is about 20 MB).
The whole specification is stored in a bundle's manifest (``Preprocessing.to_dict``) and
read back on the device (``Preprocessing.from_dict``): there is no second copy.
"""

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

RESIZE_POLICIES = ("letterbox",)
NORMALISATIONS = ("percentile",)


MAX_ASPECT = 10                # long side / short side; stricter scans are refused
CHUNK_PIXELS = 1 << 22         # float32 pixels handed to Pillow at once (16 MB)


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
    """The padded square itself (reference implementation; the runtime never builds it)."""
    if geo.side == geo.height == geo.width:
        return array
    out = np.full((geo.side, geo.side), fill, dtype=array.dtype)
    out[geo.top:geo.top + geo.height, geo.left:geo.left + geo.width] = array
    return out


def _resize(array, size):
    """Bilinear resize of a float32 2-D array to ``size`` (height, width) in one call
    (reference implementation; see ``_rows``)."""
    h, w = size
    if array.shape == (h, w):
        return array.astype(np.float32, copy=False)
    img = Image.fromarray(np.ascontiguousarray(array, dtype=np.float32), mode="F")
    return np.asarray(img.resize((w, h), Image.BILINEAR), dtype=np.float32)


def _pil_rows(block, width):
    """Pillow's horizontal bilinear pass on a float32 block -> (rows, width)."""
    if block.shape[1] == width:
        return block
    img = Image.fromarray(block)
    return np.asarray(img.resize((width, block.shape[0]), Image.BILINEAR), dtype=np.float32)


def _rows(array, width, pad=(0, 0), fill=0.0, keep=None, out=None):
    """Resize every row of ``array`` to ``width`` (Pillow's horizontal pass), after padding
    it with ``pad`` = (left, right) columns of ``fill``; keep output columns ``keep`` =
    (first, stop). Rows are resized in blocks of at most ``CHUNK_PIXELS``, which gives the
    same bytes as one call (each row is computed on its own). ``out``: an array of shape
    (len(keep), rows) to fill with the transposed result (for the vertical pass)."""
    n, m = array.shape
    left, right = pad
    full = m + left + right
    k0, k1 = keep or (0, width)
    result = out if out is not None else np.empty((n, k1 - k0), np.float32)
    step = max(1, CHUNK_PIXELS // max(full, width, 1))
    for r0 in range(0, n, step):
        r1 = min(n, r0 + step)
        block = np.empty((r1 - r0, full), np.float32)
        if left:
            block[:, :left] = fill
        if right:
            block[:, left + m:] = fill
        block[:, left:left + m] = array[r0:r1]
        part = _pil_rows(block, width)[:, k0:k1]
        if out is not None:
            result[:, r0:r1] = part.T
        else:
            result[r0:r1] = part
    return result


def _cols(array, height, keep=None):
    """Resize every column of ``array`` to ``height`` (Pillow's vertical pass), computed as
    the horizontal pass of the transpose; keep output rows ``keep`` = (first, stop)."""
    k0, k1 = keep or (0, height)
    out = np.empty((k1 - k0, array.shape[1]), np.float32)
    return _rows(array.T, height, keep=keep, out=out)


def check_aspect(height, width):
    """Raise ``ValueError`` when the long side is more than ``MAX_ASPECT`` x the short one."""
    if max(height, width) > MAX_ASPECT * max(1, min(height, width)):
        raise ValueError(f"aspect ratio of {width}x{height} px is over {MAX_ASPECT}:1; "
                         "such a strip is not a scan")


def _to_square(array, geo, size, fill):
    """Letterbox ``array`` into the padded square and resize it to ``size`` x ``size``,
    without building the square: byte-identical to ``_resize(_letterbox(...))``, which is
    what a square of at most ``CHUNK_PIXELS`` takes (one Pillow call, the fast path for every
    ordinary scan; memory is bounded by ``CHUNK_PIXELS`` either way)."""
    if geo.side * geo.side <= CHUNK_PIXELS:
        x = np.asarray(array).astype(np.float32, copy=False)
        return _resize(_letterbox(x, geo, fill), (size, size))
    right = geo.side - geo.width - geo.left
    rows = _rows(array, size, pad=(geo.left, right), fill=fill)       # height x size
    if geo.side != geo.height:
        fill_row = _rows(np.full((1, geo.side), fill, np.float32), size)
        inter = np.empty((geo.side, size), np.float32)
        inter[:] = fill_row
        inter[geo.top:geo.top + geo.height] = rows
        rows = inter
    return _cols(rows, size)


def normalise(array, spec):
    lo, hi = np.percentile(array, [spec.low_percentile, spec.high_percentile])
    if not hi > lo:
        return np.zeros_like(array, dtype=np.float32)
    if not np.isfinite(np.float32(hi) - np.float32(lo)) or \
            not np.isfinite(np.float32(array.max()) - np.float32(array.min())):
        # a range beyond float32 (e.g. +-1e38): scale in double instead of overflowing
        x = (array.astype(np.float64) - float(lo)) / (float(hi) - float(lo))
        return np.clip(x, 0.0, 1.0).astype(np.float32)
    return np.clip((array - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def prepare_image(gray, spec):
    """A 2-D scan -> (model input of shape (size, size) float32 in [0, 1], Geometry).

    Raises ``ValueError`` for a non-2-D array or an aspect ratio over ``MAX_ASPECT``."""
    gray = np.asarray(gray)
    if gray.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale array, got shape {gray.shape}")
    check_aspect(*gray.shape)
    geo = geometry_for(*gray.shape)
    fill = np.float32(gray.min())
    x = _to_square(gray, geo, spec.input_size, fill)
    return normalise(x, spec), geo


def prepare_mask(mask, spec):
    """A 2-D label mask (non-zero = tumour) -> uint8 {0, 1} mask at model resolution."""
    mask = np.asarray(mask) > 0
    check_aspect(*mask.shape)
    geo = geometry_for(*mask.shape)
    m = _to_square(mask, geo, spec.input_size, np.float32(0.0))
    return (m >= 0.5).astype(np.uint8)


def restore(prob, geo):
    """Model-resolution map (size, size) -> the scan's own (height, width), float32.

    The same as resizing to the padded square and cropping the padding, without the square:
    the horizontal pass keeps only the scan's columns, the vertical pass only its rows. A
    square of at most ``CHUNK_PIXELS`` is made in one Pillow call (the same bytes, faster)."""
    prob = np.asarray(prob, dtype=np.float32)
    if geo.side * geo.side <= CHUNK_PIXELS:
        square = _resize(prob, (geo.side, geo.side))
        return square[geo.top:geo.top + geo.height, geo.left:geo.left + geo.width]
    cols = _rows(prob, geo.side, keep=(geo.left, geo.left + geo.width))    # size x width
    return _cols(cols, geo.side, keep=(geo.top, geo.top + geo.height))
