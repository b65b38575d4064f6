"""One series in, one answer out: ``process_series`` (the function the CLI, the DICOM node
and any other front end call).

Slices are read, segmented and written one at a time in slice order, keeping a window of
three (a slice and its two neighbours, for the consistency rule), so memory does not grow
with the series length: what is kept per slice is its tumour area and diameter, and the
bit-packed mask of slices with a tumour (for the SEG) plus a small montage tile.

Per series, into ``out_dir`` (``<stem>`` from ``series_stem``):
- per slice, as ``edge-seg run`` writes for a file: ``<stem>_sNNN_mask.png``,
  ``_overlay.png``, ``_findings.json`` (NNN: the position in slice order, from 001);
- ``<stem>_series.json``: the series report (``SeriesReport.to_dict``);
- ``<stem>_montage.png``: the overlays of the slices with a tumour (none without a tumour);
- ``<stem>_seg.dcm``: the DICOM SEG (``edge_runtime.dicom.seg``).
The three series files are written together atomically, after every slice; a series with
a slice that could not be decoded gets no SEG (and no volume), never a partial one.
"""

import logging
import math
import re
import time
from pathlib import Path

import numpy as np

from edge_runtime import __version__
from edge_runtime.dicom import geometry
from edge_runtime.dicom.consistency import DEFAULT_RULE, apply_rule, check_rule
from edge_runtime.errors import InputImageError

SERIES_SUFFIX = "_series.json"
MONTAGE_SUFFIX = "_montage.png"
SEG_SUFFIX = "_seg.dcm"
TILE = 192             # montage tile side (px)
MAX_TILES = 64         # montage: at most this many slices (the largest cross-sections)
NOT_A_DEVICE = "Research software: not a medical device, not for diagnosis."


def series_stem(series, taken=None):
    """A readable, file-safe stem for a series: ``S<number>_<description>`` (``_2``, ``_3``
    when ``taken``, a set of used stems (case-folded), already holds it; updated)."""
    desc = re.sub(r"[^A-Za-z0-9]+", "_", series.description or series.modality or "").strip("_")
    num = "x" if series.series_number is None else str(series.series_number)
    stem = f"S{num}_{desc[:40]}".rstrip("_")
    if taken is None:
        return stem
    candidate, n = stem, 1
    while candidate.casefold() in taken:
        n += 1
        candidate = f"{stem}_{n}"
    taken.add(candidate.casefold())
    return candidate


def _tile(pixels, mask, caption):
    from PIL import Image

    from edge_runtime.outputs import draw_caption, make_overlay
    img = make_overlay(pixels, mask)
    img.thumbnail((TILE, TILE))
    tile = Image.new("RGB", (TILE, TILE))
    tile.paste(img, ((TILE - img.width) // 2, (TILE - img.height) // 2))
    draw_caption(tile, caption)
    return tile


def montage(tiles):
    """[(area, Pillow tile)] -> one Pillow image, the tiles in slice order on a grid."""
    from PIL import Image
    cols = max(1, math.ceil(math.sqrt(len(tiles))))
    rows = math.ceil(len(tiles) / cols)
    sheet = Image.new("RGB", (cols * TILE, rows * TILE))
    for i, (_area, tile) in enumerate(tiles):
        sheet.paste(tile, ((i % cols) * TILE, (i // cols) * TILE))
    return sheet


def summary_line(report):
    """The one stdout line of a processed series."""
    r = report
    head = f"{r['series']}: {r['slices']} slices ({r['ordering_short']})"
    if r.get("error"):
        return f"{head}: failed: {r['error']}"
    if not r["slices_with_tumour"]:
        body = "no tumour found"
    else:
        sp = r["spacing"]
        vol = (f"volume {r['volume_ml']:.2f} mL (slice spacing {sp['spacing_mm']:.2f} mm from "
               f"{sp['method']})" if r["volume_ml"] is not None
               else f"no volume: {r['volume_refused']}")
        size = (f"largest cross-section {r['largest_cross_section_mm2']:.1f} mm², longest "
                f"in-plane diameter {r['longest_diameter_mm']:.1f} mm"
                if r["largest_cross_section_mm2"] is not None
                else "no sizes in mm (no PixelSpacing)")
        body = f"tumour on {len(r['slices_with_tumour'])} slice(s), {vol}, {size}"
    seg = r["outputs"].get("seg")
    tail = f" -> {seg}" if seg else f" (no SEG: {r['seg_refused']})" if r.get("seg_refused") \
        else ""
    took = f" [{r['timing_s']:.1f} s]" if r.get("timing_s") is not None else ""
    return f"{head}: {body}{tail}{took}"


class _NoEmptyFrameWarning(logging.Filter):
    """highdicom warns when every frame is empty; for "no tumour found" that is expected."""

    def filter(self, record):
        return "omit_empty_frames" not in record.getMessage()


def _quiet_highdicom():
    for name in ("highdicom", "highdicom.image", "highdicom.seg.sop"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _NoEmptyFrameWarning) for f in logger.filters):
            logger.addFilter(_NoEmptyFrameWarning())


def _seg_inputs(series, packed, shape):
    """-> (sources, masks) for ``seg.build_seg``, or raise ValueError (why no SEG)."""
    from edge_runtime.dicom.seg import read_source
    slices = series.slices
    files = {str(s.path) for s in slices}
    if all(s.frame is None for s in slices):
        idx = [k for k in range(len(slices)) if k in packed] or [0]
        masks = np.zeros((len(idx),) + shape, dtype=np.uint8)
        for i, k in enumerate(idx):
            if k in packed:
                masks[i] = np.unpackbits(packed[k], count=shape[0] * shape[1]).reshape(shape)
        return [read_source(slices[k].path) for k in idx], masks
    if len(files) == 1:
        frames = max(s.frame for s in slices) + 1
        masks = np.zeros((frames,) + shape, dtype=np.uint8)
        for k, s in enumerate(slices):
            if k in packed:
                masks[s.frame] = np.unpackbits(packed[k], count=shape[0] * shape[1]).reshape(
                    shape)
        return [read_source(slices[0].path)], masks
    raise ValueError("the series spans several multi-frame files (or mixes them with "
                     "single-frame files); a SEG for that is not supported")


def process_series(series, segmenter, out_dir, stem=None, consistency=DEFAULT_RULE,
                   write_seg=True, protected=(), log=None, on_slice=None):
    """Segment one ``series.Series`` and write its results into ``out_dir`` -> report dict.

    ``segmenter``: an ``edge_runtime.segment.Segmenter``; ``stem``: the output stem
    (default ``series_stem(series)``); ``consistency``: a ``consistency.RULES`` name;
    ``write_seg``: write the DICOM SEG; ``protected``: paths never to write over (the
    inputs); ``log(line)``: called with one line per problem met (a slice that cannot be
    decoded), default silent; ``on_slice(index, scan, mask, findings)``: called once per
    slice, after its files are written (``index`` 1-based in slice order, ``mask`` after the
    consistency rule; for a slice that could not be read ``scan``, ``mask`` and
    ``findings`` are None), for a front end's progress and display images; default none.
    The report (also in ``<stem>_series.json``) holds the series' identity, how the slices
    were ordered and spaced, the slices with a tumour, the volume in mL (or why it was
    refused), the largest cross-section (mm²), the longest in-plane diameter (mm), the
    consistency rule and what it dropped, the per-slice results, failed slices, notes and
    the written paths. Raises ``OSError`` when results cannot be written (then no series
    file is left half-written).
    """
    from edge_runtime.atomic import write_many
    from edge_runtime.dicom.pixels import load_slice
    from edge_runtime.outputs import (
        json_bytes,
        png_bytes,
        write_outputs,
    )
    from edge_runtime.postprocess import findings as mask_findings
    check_rule(consistency)
    log = log or (lambda _line: None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = stem or series_stem(series)
    t0 = time.perf_counter()
    report = {
        "series": series.name, "study_instance_uid": series.study_uid,
        "series_instance_uid": series.series_uid, "series_number": series.series_number,
        "description": series.description, "modality": series.modality,
        "slices": len(series.slices), "ordering": series.ordering,
        "ordering_short": ("ordered by position" if series.ordering.startswith("position")
                           else "ordered by InstanceNumber"),
        "notes": list(series.notes), "failed_slices": [], "outputs": {},
        "consistency": {"rule": consistency, "slices_changed": 0},
        "bundle": {"name": segmenter.bundle.name, "sha256": segmenter.bundle.sha256},
        "edge_seg_version": __version__, "disclaimer": NOT_A_DEVICE,
    }
    if series.problem:
        report["error"] = series.problem
        return report
    n = len(series.slices)
    spacing = series.spacing()
    if spacing["problem"] is None and series.ordering.startswith("InstanceNumber") and \
            any(note.startswith("InstanceNumbers") for note in series.notes):
        spacing = dict(spacing, spacing_mm=None,
                       problem="InstanceNumbers have gaps: slices may be missing")
    window, areas, diameters, packed, tiles, per_slice = {}, [0.0] * n, [0.0] * n, {}, [], []
    shape, pixel_spacing = None, series.slices[0].pixel_spacing

    def finalise(j):
        nonlocal shape
        item = window.get(j)
        if item is None:
            return
        scan, result = item
        nbrs = [window[i][1].mask for i in (j - 1, j + 1)
                if window.get(i) is not None and window[i][1].mask.shape == result.mask.shape]
        mask = apply_rule(consistency, result.mask, nbrs)
        findings = dict(result.findings)
        if mask.sum() != result.mask.sum():
            report["consistency"]["slices_changed"] += 1
            findings.update(mask_findings(mask, result.prob, scan.spacing_mm))
            findings["consistency_rule"] = consistency
        sl = series.slices[j]
        findings["series"] = {"series_instance_uid": series.series_uid, "index": j + 1,
                              "sop_instance_uid": sl.sop_uid,
                              "frame": None if sl.frame is None else sl.frame + 1,
                              "position_mm": list(sl.position) if sl.position else None}
        paths = write_outputs(out_dir, f"{stem}_s{j + 1:03d}", scan.pixels, mask, findings,
                              protected=protected)
        shape = mask.shape
        area = findings.get("area_mm2")
        if mask.any():
            areas[j] = float(area) if area is not None else 0.0
            diameters[j] = (geometry.longest_diameter_mm(mask, scan.spacing_mm)
                            if scan.spacing_mm else 0.0)
            packed[j] = np.packbits(mask.ravel())
            cap = (f"#{j + 1} {area:.0f} mm2" if area is not None
                   else f"#{j + 1} {findings['area_px']} px")
            tiles.append((areas[j] or findings["area_px"], _tile(scan.pixels, mask, cap), j))
            if len(tiles) > MAX_TILES:
                tiles.remove(min(tiles, key=lambda t: t[0]))
        per_slice.append({"index": j + 1, "sop_instance_uid": sl.sop_uid,
                          "frame": None if sl.frame is None else sl.frame + 1,
                          "tumour_found": bool(mask.any()), "area_px": int(mask.sum()),
                          "area_mm2": area if mask.any() else 0.0,
                          "diameter_mm": round(diameters[j], 2),
                          "findings": str(paths["findings"])})
        if on_slice is not None:
            on_slice(j + 1, scan, mask, findings)

    for k in range(n + 1):
        if k < n:
            try:
                scan = load_slice(series.slices[k])
                window[k] = (scan, segmenter.segment(scan))
            except InputImageError as exc:
                window[k] = None
                report["failed_slices"].append({"index": k + 1, "source": exc.path,
                                                "problem": exc.problem})
                log(f"{exc.path}: {exc.problem}")
                if on_slice is not None:
                    on_slice(k + 1, None, None, None)
        if k >= 1:
            finalise(k - 1)
            window.pop(k - 2, None)
    window.clear()

    if pixel_spacing is None and packed:
        spacing = dict(spacing, spacing_mm=None, problem="no PixelSpacing: areas are in "
                       "pixels only")
    if report["failed_slices"]:
        spacing = dict(spacing, spacing_mm=None,
                       problem=f"{len(report['failed_slices'])} slice(s) could not be read")
    size = geometry.tumour_size(areas, diameters, spacing)
    report.update({
        "spacing": spacing,
        "pixel_spacing_mm": list(pixel_spacing) if pixel_spacing else None,
        "slices_with_tumour": [i + 1 for i in sorted(packed)],
        "volume_ml": None if size["volume_ml"] is None else round(size["volume_ml"], 3),
        "volume_refused": spacing["problem"] if size["volume_ml"] is None else None,
        "largest_cross_section_mm2": (round(size["largest_cross_section_mm2"], 2)
                                      if pixel_spacing else None),
        "largest_cross_section_slice": (None if size["largest_cross_section_slice"] is None
                                        else size["largest_cross_section_slice"] + 1),
        "longest_diameter_mm": (round(size["longest_diameter_mm"], 2)
                                if pixel_spacing else None),
        "longest_diameter_slice": (None if size["longest_diameter_slice"] is None
                                   else size["longest_diameter_slice"] + 1),
        "per_slice": per_slice,
    })
    files = {}
    paths = {"series_json": out_dir / f"{stem}{SERIES_SUFFIX}"}
    if tiles:
        paths["montage"] = out_dir / f"{stem}{MONTAGE_SUFFIX}"
        tiles.sort(key=lambda t: t[2])
        files[paths["montage"]] = png_bytes(montage([(a, t) for a, t, _j in tiles]))
    if write_seg and shape is not None:
        if report["failed_slices"]:
            report["seg_refused"] = "a slice could not be read; no partial SEG is written"
        else:
            from edge_runtime.dicom.seg import build_seg
            try:
                sources, masks = _seg_inputs(series, packed, shape)
                _quiet_highdicom()
                paths["seg"] = out_dir / f"{stem}{SEG_SUFFIX}"
                files[paths["seg"]] = build_seg(sources, masks, segmenter.bundle.name,
                                                segmenter.bundle.sha256)
            except Exception as exc:  # noqa: BLE001 - the series answer stands without it
                paths.pop("seg", None)
                report["seg_refused"] = " ".join(str(exc).split())[:300]
    elif shape is None:
        report["error"] = "no slice could be read"
    guarded = {str(Path(p).resolve()) for p in protected}
    for p in paths.values():
        if str(Path(p).resolve()) in guarded:
            raise FileExistsError(f"refusing to overwrite input file {p}")
    report["outputs"] = {k: str(v) for k, v in paths.items()}
    report["timing_s"] = round(time.perf_counter() - t0, 3)
    files[paths["series_json"]] = json_bytes(report)
    write_many(files)
    return report
