"""From a probability map to a mask and findings; "no tumour found" is a first-class answer.

``postprocess`` thresholds the map and drops 8-connected components smaller than
``min_area_fraction`` of the image, so specks of noise do not count as a tumour, and
(optionally) components whose highest probability stays below ``min_peak_probability``:
a region the model is never sure about anywhere is a doubtful finding, while a real tumour
usually has a confident core.
Connected components are computed on runs of foreground pixels (run-length encoding per
row) joined with a vectorised union-find: pure numpy, no scipy.
"""

import numpy as np


def _runs(mask):
    """Foreground runs of a bool 2-D mask -> (rows, starts, ends), ends exclusive, row-major."""
    h, w = mask.shape
    padded = np.zeros((h, w + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    d = np.diff(padded, axis=1)          # +1 at a run start, -1 one past its end
    rows_s, starts = np.nonzero(d == 1)
    _rows_e, ends = np.nonzero(d == -1)
    return rows_s.astype(np.int64), starts.astype(np.int64), ends.astype(np.int64)


def _union_find(n, a, b):
    """Roots (the smallest member index) of the components of a graph with edges a-b."""
    parent = np.arange(n, dtype=np.int64)
    if a.size == 0:
        return parent
    while True:
        ra, rb = parent[a], parent[b]
        diff = ra != rb
        if not diff.any():
            return parent
        lo = np.minimum(ra[diff], rb[diff])
        hi = np.maximum(ra[diff], rb[diff])
        np.minimum.at(parent, hi, lo)     # hook each larger root under a smaller one
        while True:                       # pointer jumping until every node names its root
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand


def foreground_box(mask):
    """(row slice, column slice) of the smallest box holding every True pixel; None if none.

    A tumour covers about 1 % of a scan, so the work after thresholding (labelling,
    findings) is done on this box instead of the whole image: the same answer, a fraction
    of the time."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask[rows[0]:rows[-1] + 1].any(axis=0))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def label_components(mask):
    """8-connected components of a 2-D mask -> (labels int32[H, W] with 0 = background, count).

    Components are numbered in row-major order of their first pixel."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    labels = np.zeros(mask.shape, dtype=np.int32)
    box = foreground_box(mask)
    if box is None:
        return labels, 0
    labels[box], count = _label_dense(mask[box])
    return labels, count


def _label_dense(mask):
    """``label_components`` on a mask without the cropping (the box is already tight)."""
    h, w = mask.shape
    rows, starts, ends = _runs(mask)
    n = rows.size
    labels = np.zeros((h, w), dtype=np.int32)
    if n == 0:
        return labels, 0
    # Runs in row r touch runs in row r-1 (8-connectivity) when prev.start <= end and
    # prev.end >= start - 1 (ends exclusive). Runs are sorted by (row, start), so the
    # touching runs of the previous row form one contiguous index range per run.
    k = w + 2
    start_keys = rows * k + starts
    end_keys = rows * k + ends                      # exclusive end
    lo = np.searchsorted(end_keys, (rows - 1) * k + starts, side="left")
    hi = np.searchsorted(start_keys, (rows - 1) * k + ends, side="right")
    counts = np.clip(hi - lo, 0, None)
    a = np.repeat(np.arange(n, dtype=np.int64), counts)
    b = (np.repeat(lo - np.cumsum(counts) + counts, counts)
         + np.arange(counts.sum(), dtype=np.int64))
    roots = _union_find(n, a, b)
    uniq, comp = np.unique(roots, return_inverse=True)
    lengths = ends - starts
    flat_start = rows * w + starts
    offsets = np.repeat(np.cumsum(lengths) - lengths, lengths)
    pix = np.repeat(flat_start, lengths) + (np.arange(lengths.sum(), dtype=np.int64) - offsets)
    labels.reshape(-1)[pix] = np.repeat(comp.astype(np.int32) + 1, lengths)
    return labels, int(uniq.size)


def filter_components(mask, min_pixels, prob=None, min_peak=0.0):
    """Keep the 8-connected components with at least ``min_pixels`` pixels and, when ``prob``
    is given, a highest probability of at least ``min_peak`` -> bool mask."""
    mask = np.asarray(mask, dtype=bool)
    peak_filter = prob is not None and min_peak > 0.0
    if (min_pixels <= 1 and not peak_filter) or not mask.any():
        return mask.copy()
    box = foreground_box(mask)
    labels, count = _label_dense(mask[box])
    keep = np.bincount(labels.reshape(-1), minlength=count + 1) >= min_pixels
    if peak_filter:
        keep &= _component_peaks(labels, count, np.asarray(prob)[box]) >= min_peak
    keep[0] = False
    out = np.zeros(mask.shape, dtype=bool)
    out[box] = keep[labels]
    return out


def _component_peaks(labels, count, prob):
    """Highest value of ``prob`` in each component (index 0 = background, left at 0)."""
    flat = labels.reshape(-1)
    inside = flat > 0
    peaks = np.zeros(count + 1, dtype=np.float32)
    np.maximum.at(peaks, flat[inside], np.asarray(prob, dtype=np.float32).reshape(-1)[inside])
    return peaks


def component_stats(prob, threshold, truth):
    """Per component of ``prob >= threshold``: (area px, peak probability, truth px inside).

    Three 1-D arrays, one entry per component; what ``evaluate.sweep`` needs to score every
    ``min_area_fraction`` / ``min_peak_probability`` without labelling again.
    """
    labels, count = label_components(np.asarray(prob) >= threshold)
    flat = labels.reshape(-1)
    area = np.bincount(flat, minlength=count + 1)[1:]
    inside = np.bincount(flat, weights=np.asarray(truth, dtype=bool).reshape(-1),
                         minlength=count + 1)[1:].astype(np.int64)
    return area, _component_peaks(labels, count, prob)[1:], inside


def min_pixels_for(min_area_fraction, n_pixels):
    """The smallest kept component, in pixels, for a fraction of an image of ``n_pixels``."""
    return int(np.ceil(float(min_area_fraction) * n_pixels))


def _check_fraction(name, value, upper_inclusive):
    ok = 0.0 <= value <= 1.0 if upper_inclusive else 0.0 <= value < 1.0
    if not ok:
        bound = "[0, 1]" if upper_inclusive else "[0, 1)"
        raise ValueError(f"{name} must be in {bound}, got {value!r}")


def postprocess(prob, threshold, min_area_fraction, min_peak_probability=0.0):
    """Probability map [H, W] -> bool mask [H, W].

    Pixels with ``prob >= threshold`` are tumour; then 8-connected components whose area
    is below ``min_area_fraction * H * W``, or whose highest probability is below
    ``min_peak_probability`` (0: no such filter), are dropped. An all-False mask means no
    tumour.
    """
    prob = np.asarray(prob, dtype=np.float32)
    if prob.ndim != 2:
        raise ValueError(f"probability map must be 2-D, got shape {prob.shape}")
    _check_fraction("threshold", float(threshold), upper_inclusive=True)
    _check_fraction("min_area_fraction", float(min_area_fraction), upper_inclusive=False)
    _check_fraction("min_peak_probability", float(min_peak_probability), upper_inclusive=True)
    mask = prob >= threshold
    return filter_components(mask, min_pixels_for(min_area_fraction, prob.size), prob,
                             float(min_peak_probability))


def findings(mask, prob, spacing_mm=None):
    """What the mask says, as JSON-ready values.

    Keys: tumour_found, area_px, area_fraction, area_mm2 (None without pixel spacing),
    bbox ({x, y, width, height} in pixels, None when empty), centroid ({x, y}, None when empty),
    components, mean_probability (inside the mask, None when empty), max_probability.
    ``spacing_mm`` is (row spacing, column spacing) in mm, as DICOM PixelSpacing.
    """
    mask = np.asarray(mask, dtype=bool)
    prob = np.asarray(prob, dtype=np.float32)
    if mask.shape != prob.shape:
        raise ValueError(f"mask {mask.shape} and probability map {prob.shape} differ in shape")
    h, w = mask.shape
    area = int(mask.sum())
    out = {
        "tumour_found": area > 0,
        "area_px": area,
        "area_fraction": round(area / float(h * w), 6),
        "area_mm2": None,
        "bbox": None,
        "centroid": None,
        "components": 0,
        "mean_probability": None,
        "max_probability": round(float(prob.max()), 6) if prob.size else None,
    }
    if spacing_mm is not None and area:
        out["area_mm2"] = round(area * float(spacing_mm[0]) * float(spacing_mm[1]), 3)
    elif spacing_mm is not None:
        out["area_mm2"] = 0.0
    if area:
        rows, cols = foreground_box(mask)
        box = mask[rows, cols]
        ys, xs = np.nonzero(box)
        ys, xs = ys + rows.start, xs + cols.start
        x0, x1, y0, y1 = cols.start, cols.stop - 1, rows.start, rows.stop - 1
        out["bbox"] = {"x": x0, "y": y0, "width": x1 - x0 + 1, "height": y1 - y0 + 1}
        out["centroid"] = {"x": round(float(xs.mean()), 2), "y": round(float(ys.mean()), 2)}
        out["components"] = _label_dense(box)[1]
        out["mean_probability"] = round(float(prob[rows, cols][box].mean()), 6)
    return out
