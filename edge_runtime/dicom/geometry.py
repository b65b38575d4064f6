"""Slice geometry of a series: ordering along the slice normal, slice spacing, and the
tumour's size in millimetres (volume, largest cross-section, longest in-plane diameter).

Pure numpy: no pydicom here, so the rules can be tested on plain numbers.
"""

import numpy as np

ORIENTATION_TOLERANCE = 1e-3    # direction cosines that differ by less are the same
SPACING_TOLERANCE = 0.05        # relative: gaps within 5 % of the median gap are "even"
MIN_SPACING_MM = 1e-3           # two slices closer than this are at the same position


def slice_normal(orientation):
    """ImageOrientationPatient (6 numbers: row then column direction cosines) -> unit normal."""
    o = np.asarray(orientation, dtype=np.float64).reshape(2, 3)
    n = np.cross(o[0], o[1])
    norm = np.linalg.norm(n)
    if not norm > 0:
        raise ValueError(f"ImageOrientationPatient {list(orientation)} has parallel row and "
                         "column directions")
    return n / norm


def same_orientation(a, b, tol=ORIENTATION_TOLERANCE):
    return bool(np.max(np.abs(np.asarray(a, float) - np.asarray(b, float))) <= tol)


def distinct_orientations(orientations, tol=ORIENTATION_TOLERANCE):
    """-> list of the distinct orientations (first of each group) among ``orientations``."""
    out = []
    for o in orientations:
        if not any(same_orientation(o, u, tol) for u in out):
            out.append(tuple(float(v) for v in o))
    return out


def positions_along_normal(positions, orientation):
    """ImagePositionPatient of each slice -> its distance along the slice normal (mm)."""
    return np.asarray(positions, dtype=np.float64) @ slice_normal(orientation)


def slice_spacing(distances=None, spacing_between=None, thickness=None):
    """How far apart the slices of a series are -> dict.

    ``distances``: the sorted positions along the normal (None when the series has no
    ImagePositionPatient); ``spacing_between``: SpacingBetweenSlices; ``thickness``:
    SliceThickness. Keys: ``spacing_mm`` (None when refused), ``method`` ("position
    differences", "SpacingBetweenSlices", "SliceThickness" or None) and ``problem`` (None or
    one line why the volume is refused: missing slices, uneven or repeated positions).
    """
    def ok(v):
        return v is not None and np.isfinite(v) and v > 0

    if distances is not None and len(distances) >= 2:
        gaps = np.diff(np.asarray(distances, dtype=np.float64))
        if np.any(gaps < MIN_SPACING_MM):
            n = int(np.sum(gaps < MIN_SPACING_MM))
            return {"spacing_mm": None, "method": "position differences",
                    "problem": f"{n} pair(s) of slices share a position (duplicates?)"}
        # the base spacing: the gaps close to the smallest one (a missing slice doubles a gap)
        smallest = float(gaps.min())
        median = float(np.median(gaps[gaps <= smallest * (1 + SPACING_TOLERANCE)]))
        uneven = np.abs(gaps - median) > SPACING_TOLERANCE * median
        if uneven.any():
            ratio = gaps[uneven] / median
            if np.all(np.abs(ratio - np.round(ratio)) < 2 * SPACING_TOLERANCE) and \
                    np.all(np.round(ratio) >= 2):
                missing = int(np.sum(np.round(ratio) - 1))
                return {"spacing_mm": None, "method": "position differences",
                        "problem": f"{missing} slice(s) missing (gaps of "
                                   f"{', '.join(f'{g:.2f}' for g in gaps[uneven])} mm where "
                                   f"the spacing is {median:.2f} mm)"}
            return {"spacing_mm": None, "method": "position differences",
                    "problem": f"uneven slice spacing ({gaps.min():.2f} to {gaps.max():.2f} mm)"}
        return {"spacing_mm": median, "method": "position differences", "problem": None}
    if ok(spacing_between):
        return {"spacing_mm": float(spacing_between), "method": "SpacingBetweenSlices",
                "problem": None}
    if ok(thickness):
        return {"spacing_mm": float(thickness), "method": "SliceThickness", "problem": None}
    return {"spacing_mm": None, "method": None,
            "problem": "no slice positions, SpacingBetweenSlices or SliceThickness"}


def _hull(points):
    """Convex hull (Andrew's monotone chain) of 2-D points -> the hull's points."""
    pts = sorted(set(map(tuple, points)))
    if len(pts) <= 2:
        return np.asarray(pts, dtype=np.float64)

    def half(seq):
        out = []
        for p in seq:
            while len(out) >= 2 and ((out[-1][0] - out[-2][0]) * (p[1] - out[-2][1])
                                     - (out[-1][1] - out[-2][1]) * (p[0] - out[-2][0])) <= 0:
                out.pop()
            out.append(p)
        return out

    lower, upper = half(pts), half(reversed(pts))
    return np.asarray(lower[:-1] + upper[:-1], dtype=np.float64)


def longest_diameter_mm(mask, spacing_mm):
    """The longest distance between two tumour pixel centres of a 2-D mask, in mm (row,
    column spacing ``spacing_mm``); 0.0 for an empty mask or a single pixel."""
    from edge_runtime.metrics import boundary
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return 0.0
    ys, xs = np.nonzero(boundary(mask))
    if ys.size == 0:
        ys, xs = np.nonzero(mask)
    pts = np.stack([ys * float(spacing_mm[0]), xs * float(spacing_mm[1])], axis=1)
    hull = _hull(pts)
    if len(hull) < 2:
        return 0.0
    d = hull[:, None, :] - hull[None, :, :]
    return float(np.sqrt((d ** 2).sum(-1)).max())


def tumour_size(areas_mm2, diameters_mm, spacing):
    """Per-slice tumour areas (mm²) and longest diameters (mm) of an ordered series and its
    ``slice_spacing`` dict -> {volume_ml (None when the spacing was refused), largest
    cross-section, longest in-plane diameter, slices with tumour}.

    Volume: the sum of the slice areas times the slice spacing (each slice stands for a slab
    one spacing thick), in mL (1 mL = 1000 mm³).
    """
    areas = np.asarray(areas_mm2, dtype=np.float64)
    with_tumour = [i for i, a in enumerate(areas) if a > 0]
    volume = None
    if spacing.get("spacing_mm") is not None:
        volume = float(areas.sum() * spacing["spacing_mm"] / 1000.0)
    return {
        "slices_with_tumour": with_tumour,
        "volume_ml": volume,
        "largest_cross_section_mm2": float(areas.max()) if areas.size else 0.0,
        "largest_cross_section_slice": int(areas.argmax()) if with_tumour else None,
        "longest_diameter_mm": float(max(diameters_mm)) if len(diameters_mm) else 0.0,
        "longest_diameter_slice": (int(np.argmax(diameters_mm)) if with_tumour else None),
    }
