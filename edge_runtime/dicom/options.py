"""Command-line options of the DICOM series path (import-light: no pydicom here)."""

import click

from edge_runtime.dicom.consistency import DEFAULT_RULE, RULES

META_KEY = "edge_seg_series_consistency"


def _store(ctx, _param, value):
    ctx.meta[META_KEY] = value
    return value


def series_consistency_option(f):
    """``--series-consistency RULE``: stored in ``ctx.meta`` (the command's signature does
    not change)."""
    return click.option(
        "--series-consistency", type=click.Choice(sorted(RULES)), default=DEFAULT_RULE,
        show_default=True, expose_value=False, callback=_store,
        help="DICOM series: drop detections without support on a neighbouring slice "
             "('overlap': a component must overlap a neighbour's mask; 'any': a neighbour "
             "must have a tumour). Measured in docs/DICOM.md.")(f)
