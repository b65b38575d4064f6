"""Segmentation metrics for binary tumour masks (numpy only).

Every function takes two 2-D masks of the same shape, ``pred`` and ``truth``; any non-zero
value is tumour. Conventions for empty masks are fixed here and documented in docs/BENCH.md:

=========================  ======================  ======================  ===============
metric                     truth empty, pred empty  one of them empty      otherwise
=========================  ======================  ======================  ===============
dice = 2TP / (2TP+FP+FN)   1.0 (a correct "none")  0.0                     formula
iou  = TP / (TP+FP+FN)     1.0                     0.0                     formula
precision = TP / (TP+FP)   1.0                     0.0 (no TP possible)    formula
recall    = TP / (TP+FN)   1.0                     0.0                     formula
hd95 (pixels or mm)        NaN                     NaN (undefined)         formula
=========================  ======================  ======================  ===============

(precision when nothing is predicted but a tumour exists is 0.0; recall when the truth is
empty but something is predicted is 0.0: the score of a wrong answer, never NaN.)

HD95 is the symmetric 95th-percentile Hausdorff distance between the mask *boundaries*
(a boundary pixel is a mask pixel with a 4-neighbour outside the mask or on the image
edge): ``max(P95(d(a, B) for a in boundary A), P95(d(b, A) for b in boundary B))``, the
definition MONAI uses. Distances are exact Euclidean distances between pixel centres,
in pixels or, with a ``spacing`` of (row_mm, column_mm), in millimetres.

The 2-class mean IoU (``mean_iou_2class``) is what ``keras.metrics.MeanIoU(num_classes=2)``
returns for thresholded masks: one confusion matrix pooled over every pixel of every scan,
the IoU of the background class and of the tumour class, averaged over the classes that
occur (a class whose IoU denominator is 0 is left out). It is the "mean IoU" of the paper
(Aprianto & Riana, CommIT 2025). It is NOT the mean over scans of the tumour IoU, and it is
much higher than it, because the background IoU of a brain slice is close to 1.
"""

import math

import numpy as np

# keras.backend.epsilon(): MeanIoU adds it to every denominator.
KERAS_EPSILON = 1e-7

# Queries per chunk when computing boundary distances (bounds memory to ~chunk x width).
_CHUNK = 2048


def _as_bool(mask, name):
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D mask, got shape {arr.shape}")
    return arr.astype(bool, copy=False) if arr.dtype == bool else arr != 0


def _pair(pred, truth):
    p, t = _as_bool(pred, "pred"), _as_bool(truth, "truth")
    if p.shape != t.shape:
        raise ValueError(f"pred and truth must have the same shape, got {p.shape} and {t.shape}")
    return p, t


def confusion(pred, truth):
    """(tp, fp, fn, tn) pixel counts as Python ints."""
    p, t = _pair(pred, truth)
    tp = int(np.count_nonzero(p & t))
    fp = int(np.count_nonzero(p)) - tp
    fn = int(np.count_nonzero(t)) - tp
    tn = p.size - tp - fp - fn
    return tp, fp, fn, tn


def _ratio(num, den):
    return 1.0 if den == 0 else num / den


def dice_from_counts(tp, fp, fn):
    return _ratio(2 * tp, 2 * tp + fp + fn)


def iou_from_counts(tp, fp, fn):
    return _ratio(tp, tp + fp + fn)


def precision_from_counts(tp, fp, fn):
    if tp + fp == 0:
        return 1.0 if fn == 0 else 0.0
    return tp / (tp + fp)


def recall_from_counts(tp, fp, fn):
    if tp + fn == 0:
        return 1.0 if fp == 0 else 0.0
    return tp / (tp + fn)


def dice(pred, truth):
    tp, fp, fn, _ = confusion(pred, truth)
    return dice_from_counts(tp, fp, fn)


def iou(pred, truth):
    tp, fp, fn, _ = confusion(pred, truth)
    return iou_from_counts(tp, fp, fn)


def precision(pred, truth):
    tp, fp, fn, _ = confusion(pred, truth)
    return precision_from_counts(tp, fp, fn)


def recall(pred, truth):
    tp, fp, fn, _ = confusion(pred, truth)
    return recall_from_counts(tp, fp, fn)


def mean_iou_2class(tp, fp, fn, tn):
    """``keras.metrics.MeanIoU(num_classes=2)`` from pooled pixel counts.

    Class 1 (tumour): TP / (TP + FP + FN); class 0 (background): TN / (TN + FN + FP).
    Keras adds 1e-7 to each denominator and to the count of valid classes; so does this
    (the difference is below 1e-7 for any real count). Keras accumulates counts in
    float32, which rounds counts above 2**24; this uses exact integers.
    """
    ious, valid = [], 0
    for hit, den in ((tn, tn + fp + fn), (tp, tp + fp + fn)):
        if den > 1e-9:
            valid += 1
            ious.append(hit / (den + KERAS_EPSILON))
    return sum(ious) / (valid + KERAS_EPSILON)


def boundary(mask, edge_outside=True):
    """Mask pixels with a 4-neighbour outside the mask (the image edge counts as outside,
    unless ``edge_outside`` is False: then only pixels inside the image count)."""
    m = _as_bool(mask, "mask")
    inner = m.copy()
    inner[1:] &= m[:-1]
    inner[:-1] &= m[1:]
    inner[:, 1:] &= m[:, :-1]
    inner[:, :-1] &= m[:, 1:]
    if edge_outside:
        inner[[0, -1], :] = False
        inner[:, [0, -1]] = False
    return m & ~inner


def _column_distance(features, row_step):
    """For every pixel, the distance along its column to the nearest feature pixel (mm/px).

    Columns without a feature get +inf.
    """
    h = features.shape[0]
    rows = np.arange(h, dtype=np.float64)[:, None]
    above = np.where(features, rows, -np.inf)
    above = np.maximum.accumulate(above, axis=0)
    below = np.where(features, rows, np.inf)
    below = np.minimum.accumulate(below[::-1], axis=0)[::-1]
    return np.minimum(rows - above, below - rows) * row_step


def directed_distances(from_points, to_mask, spacing=(1.0, 1.0)):
    """Exact Euclidean distance from each (row, col) in ``from_points`` to the nearest
    pixel of ``to_mask`` (a non-empty 2-D bool array), scaled by ``spacing``.

    Two-pass method: first the distance along each column to the nearest feature
    (vectorised cumulative scans), then for each query the minimum over columns of
    sqrt(dx^2 + g^2). Cost O(H*W + Q*W), no scipy.
    """
    sy, sx = float(spacing[0]), float(spacing[1])
    g = _column_distance(to_mask, sy)           # (H, W)
    g2 = g * g
    cols = np.arange(to_mask.shape[1], dtype=np.float64) * sx
    out = np.empty(len(from_points), dtype=np.float64)
    for start in range(0, len(from_points), _CHUNK):
        pts = from_points[start:start + _CHUNK]
        dx = pts[:, 1:2] * sx - cols[None, :]    # (q, W)
        out[start:start + _CHUNK] = np.sqrt(np.min(dx * dx + g2[pts[:, 0]], axis=1))
    return out


def hd95(pred, truth, spacing=None):
    """Symmetric 95th-percentile Hausdorff distance between the mask boundaries.

    In pixels when ``spacing`` is None, else in the units of ``spacing`` (row, column).
    NaN when either mask is empty (the distance is undefined).
    """
    p, t = _pair(pred, truth)
    if not p.any() or not t.any():
        return math.nan
    spacing = (1.0, 1.0) if spacing is None else tuple(spacing)
    bp, bt = boundary(p), boundary(t)
    # Crop to the boundaries' common bounding box: distances are unchanged, work shrinks.
    rows = np.flatnonzero((bp | bt).any(axis=1))
    cols = np.flatnonzero((bp | bt).any(axis=0))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    bp, bt = bp[box], bt[box]
    d_pt = directed_distances(np.argwhere(bp), bt, spacing)
    d_tp = directed_distances(np.argwhere(bt), bp, spacing)
    return float(max(np.percentile(d_pt, 95), np.percentile(d_tp, 95)))


def scan_metrics(pred, truth, spacing=None):
    """All per-scan numbers for one pair of masks, as a dict of plain Python values."""
    p, t = _pair(pred, truth)
    tp, fp, fn, tn = confusion(p, t)
    hd_px = hd95(p, t)
    hd_mm = hd95(p, t, spacing) if spacing is not None else math.nan
    return {
        "tp": tp, "fp": fp, "fn": fn, "tn": tn,
        "truth_px": tp + fn, "pred_px": tp + fp,
        "dice": dice_from_counts(tp, fp, fn),
        "iou": iou_from_counts(tp, fp, fn),
        "precision": precision_from_counts(tp, fp, fn),
        "recall": recall_from_counts(tp, fp, fn),
        "miou_2class": mean_iou_2class(tp, fp, fn, tn),
        "hd95_px": hd_px,
        "hd95_mm": hd_mm,
    }


class ConfusionAccumulator:
    """Pixel counts pooled over many scans (the Keras metric's running confusion matrix)."""

    def __init__(self):
        self.tp = self.fp = self.fn = self.tn = 0

    def add(self, pred, truth):
        self.add_counts(*confusion(pred, truth))
        return self

    def add_counts(self, tp, fp, fn, tn):
        self.tp += int(tp)
        self.fp += int(fp)
        self.fn += int(fn)
        self.tn += int(tn)
        return self

    @property
    def pixels(self):
        return self.tp + self.fp + self.fn + self.tn

    def dice(self):
        return dice_from_counts(self.tp, self.fp, self.fn)

    def iou(self):
        return iou_from_counts(self.tp, self.fp, self.fn)

    def precision(self):
        return precision_from_counts(self.tp, self.fp, self.fn)

    def recall(self):
        return recall_from_counts(self.tp, self.fp, self.fn)

    def background_iou(self):
        return _ratio(self.tn, self.tn + self.fp + self.fn)

    def mean_iou_2class(self):
        return mean_iou_2class(self.tp, self.fp, self.fn, self.tn)

    def matrix(self):
        """2x2 confusion matrix, rows = truth (0, 1), columns = prediction (0, 1)."""
        return np.array([[self.tn, self.fp], [self.fn, self.tp]], dtype=np.int64)
