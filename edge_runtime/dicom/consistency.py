"""Series-level consistency: a detection with no support on its neighbouring slices.

A 2-D model sees one slice; a tumour spans several. A component found on one slice with
nothing at the same place on the slices before and after it is the classic false alarm of
a 2-D model. ``RULES`` names the rules measured by ``python -m bench.series_consistency``
(``docs/DICOM.md`` has the numbers); ``DEFAULT_RULE`` is what ``process_series`` uses
unless told otherwise. A slice without neighbours (a one-slice series) keeps its mask.
"""

RULES = {
    "off": "every slice keeps its own mask",
    "overlap": "a component is kept only if it overlaps the mask of a neighbouring slice",
    "any": "a slice's mask is kept only if a neighbouring slice has a tumour anywhere",
}
# Measured on the 42 validation patient families (bench/results/series_consistency.md):
# "overlap" removes 43 of 67 false-alarm components and 9 of 477 hits; Dice +0.0007
# [-0.0072, +0.0081], mIoU +0.0059 [+0.0029, +0.0089]; tumour-free single slices cannot
# show its effect. By the project's rule (a lever becomes the default only if its paired
# Dice interval lies above 0) it does not pass: the default stays off, the rule is an option.
DEFAULT_RULE = "off"


def check_rule(rule):
    if rule not in RULES:
        raise ValueError(f"unknown consistency rule {rule!r}; allowed: {', '.join(RULES)}")
    return rule


def apply_rule(rule, mask, neighbours):
    """``mask`` (bool 2-D) of one slice and the masks of its neighbouring slices (a list of
    0 to 2 bool arrays of the same shape; the masks before any rule) -> the kept mask."""
    import numpy as np

    from edge_runtime.postprocess import label_components
    check_rule(rule)
    mask = np.asarray(mask, dtype=bool)
    nbrs = [np.asarray(n, dtype=bool) for n in neighbours if n is not None]
    if rule == "off" or not nbrs or not mask.any():
        return mask
    if rule == "any":
        return mask if any(n.any() for n in nbrs) else np.zeros_like(mask)
    support = np.logical_or.reduce(nbrs)
    labels, count = label_components(mask)
    if count == 0:
        return mask
    supported = np.unique(labels[support & mask])
    keep = np.zeros(count + 1, dtype=bool)
    keep[supported] = True
    keep[0] = False
    return keep[labels]
