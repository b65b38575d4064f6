"""Per-scan rows and summaries on disk: the CSV of rows (and reading it back with types), the
summary JSON (NaN written as null), both written atomically (``edge_runtime.atomic``)."""

import csv
import io
import json
import math
from pathlib import Path

# Per-scan CSV columns, in order.
ROW_FIELDS = (
    "key", "image", "mask", "label", "label_name", "family", "has_tumour", "status", "error",
    "height", "width", "truth_px", "pred_px", "tp", "fp", "fn", "tn",
    "dice", "iou", "precision", "recall", "miou_2class", "hd95_px", "hd95_mm",
    "any_tumour_predicted", "max_probability", "source",
)


def _nan_to_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_none(v) for v in value]
    return value


def _csv_value(v):
    if isinstance(v, float):
        return "" if not math.isfinite(v) else f"{v:.6g}"
    if v is None:
        return ""
    return v


def rows_to_csv(rows, fields=ROW_FIELDS):
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fields), extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: _csv_value(r.get(k)) for k in fields})
    return buf.getvalue()


_INT_FIELDS = ("height", "width", "truth_px", "pred_px", "tp", "fp", "fn", "tn")
_FLOAT_FIELDS = ("dice", "iou", "precision", "recall", "miou_2class", "hd95_px", "hd95_mm",
                 "max_probability")
_BOOL_FIELDS = ("has_tumour", "any_tumour_predicted")


def rows_from_csv(text):
    """Rows written by ``rows_to_csv`` -> list of dicts with their types back (an empty float
    cell is NaN, an empty int cell None), so ``summarise`` and ``patient_summary`` can be
    recomputed from a saved ``*_scans.csv``."""
    rows = []
    for raw in csv.DictReader(io.StringIO(text)):
        r = dict(raw)
        for k in _INT_FIELDS:
            if k in r:
                r[k] = int(r[k]) if r[k] not in ("", None) else None
        for k in _FLOAT_FIELDS:
            if k in r:
                r[k] = float(r[k]) if r[k] not in ("", None) else math.nan
        for k in _BOOL_FIELDS:
            if k in r:
                r[k] = r[k] == "True"
        rows.append(r)
    return rows


def to_json(obj):
    return json.dumps(_nan_to_none(obj), indent=2, sort_keys=False) + "\n"


def write_results(result, out_dir, stem="eval"):
    """Write ``{stem}_scans.csv`` and ``{stem}_summary.json`` atomically -> (csv, json) paths."""
    from edge_runtime import atomic
    out_dir = Path(out_dir)
    csv_path = atomic.write_text(out_dir / f"{stem}_scans.csv", rows_to_csv(result.rows),
                                 parents=True)
    json_path = atomic.write_text(out_dir / f"{stem}_summary.json", to_json(result.summary),
                                  parents=True)
    return csv_path, json_path
