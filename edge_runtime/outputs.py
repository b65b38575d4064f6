"""Writing results: the mask, the overlay and the findings JSON.

The three files of a scan are written all or none (``edge_runtime.atomic.write_many``: each
to a temporary file in its own folder, then moved into place with ``os.replace``).

Per scan, into the output folder (``<stem>`` from ``output_stems``):
- ``<stem>_mask.png``: 8-bit, 0 = background, 255 = tumour, the scan's own size;
- ``<stem>_overlay.png``: the scan in gray, the tumour lightly tinted and outlined in red,
  with a one-line caption ("no tumour found" or the area);
- ``<stem>_findings.json``: the findings (see ``edge_runtime.segment``).
"""

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from edge_runtime import atomic

MASK_SUFFIX = "_mask.png"
OVERLAY_SUFFIX = "_overlay.png"
FINDINGS_SUFFIX = "_findings.json"
OUTPUT_SUFFIXES = (MASK_SUFFIX, OVERLAY_SUFFIX, FINDINGS_SUFFIX)

TINT_RGB = (255, 40, 40)
TINT_ALPHA = 0.30
OUTLINE_RGB = (255, 32, 32)


def png_bytes(image):
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def json_bytes(obj):
    return atomic.json_text(obj).encode("utf-8")


def mask_image(mask):
    """bool mask [H, W] -> 8-bit Pillow image, 0/255."""
    return Image.fromarray(np.where(np.asarray(mask, dtype=bool), 255, 0).astype(np.uint8), "L")


def display_gray(pixels):
    """Any 2-D scan -> uint8 for display, windowed at its 0.5/99.5 percentiles."""
    x = np.asarray(pixels, dtype=np.float32)
    lo, hi = np.percentile(x, [0.5, 99.5])
    if not hi > lo:
        lo, hi = float(x.min()), float(x.max())
    if not hi > lo:
        return np.zeros(x.shape, dtype=np.uint8)
    out = np.empty(x.shape, dtype=np.uint8)
    step = max(1, (1 << 22) // max(1, x.shape[-1]))   # row blocks: no full-size temporaries
    for r0 in range(0, x.shape[0], step):
        block = x[r0:r0 + step]
        out[r0:r0 + step] = (np.clip((block - lo) / (hi - lo), 0.0, 1.0) * 255.0 + 0.5
                             ).astype(np.uint8)
    return out


def outline(mask, thickness=1):
    """Boundary pixels of a bool mask: in the mask, with a background 8-neighbour."""
    mask = np.asarray(mask, dtype=bool)
    edge = np.zeros_like(mask)
    inner = mask.copy()
    for _ in range(max(1, int(thickness))):
        padded = np.pad(inner, 1, constant_values=False)
        eroded = inner.copy()
        h, w = inner.shape
        for dy in (0, 1, 2):
            for dx in (0, 1, 2):
                eroded &= padded[dy:dy + h, dx:dx + w]
        edge |= inner & ~eroded
        inner = eroded
    return edge


def make_overlay(pixels, mask, caption=None):
    """The scan in gray with the tumour tinted and outlined -> RGB Pillow image (scan size)."""
    gray = display_gray(pixels)
    mask = np.asarray(mask, dtype=bool)
    rgb = np.repeat(gray[:, :, None], 3, axis=2)          # uint8: a third of float32's memory
    if mask.any():
        tint = np.array(TINT_RGB, dtype=np.float32)
        tinted = rgb[mask].astype(np.float32) * (1.0 - TINT_ALPHA) + tint * TINT_ALPHA
        rgb[mask] = np.clip(tinted, 0, 255).astype(np.uint8)
        thickness = max(1, round(min(mask.shape) / 256))
        rgb[outline(mask, thickness)] = OUTLINE_RGB
    image = Image.fromarray(rgb, "RGB")
    if caption:
        draw_caption(image, caption)
    return image


def draw_caption(image, text):
    w, h = image.size
    size = max(10, min(w, h) // 24)
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        font = ImageFont.load_default()
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    pad = max(2, size // 5)
    if right - left + 2 * pad > w or bottom - top + 2 * pad > h // 3:
        return  # too small a scan for a legible caption
    draw.rectangle((0, 0, right - left + 2 * pad, bottom - top + 2 * pad), fill=(0, 0, 0))
    draw.text((pad - left, pad - top), text, fill=(255, 255, 255), font=font)


def caption_for(findings):
    if not findings.get("tumour_found"):
        return "no tumour found"
    if findings.get("area_mm2") is not None:
        return f"tumour: {findings['area_mm2']:.0f} mm2"
    return f"tumour: {findings['area_px']} px ({100 * findings['area_fraction']:.1f}%)"


def output_stems(paths):
    """Input paths -> {path: output stem}, unique (case-insensitively) within one run.

    A stem used by one input is kept (``a.png`` -> ``a``); inputs sharing a stem are told
    apart by their suffix (``a.png`` -> ``a_png``, ``a.jpg`` -> ``a_jpg``), and any remaining
    clash (same name in two folders) gets ``_2``, ``_3``... in input order.
    """
    paths = list(paths)
    by_stem = {}
    for p in paths:
        by_stem.setdefault(Path(p).stem.casefold(), []).append(p)
    taken, stems = set(), {}
    for p in paths:
        p_ = Path(p)
        stem = p_.stem or p_.name
        if len(by_stem[p_.stem.casefold()]) > 1 and p_.suffix:
            stem = f"{p_.stem}_{p_.suffix.lstrip('.')}"
        candidate, n = stem, 1
        while candidate.casefold() in taken:
            n += 1
            candidate = f"{stem}_{n}"
        taken.add(candidate.casefold())
        stems[p] = candidate
    return stems


def output_paths(out_dir, stem):
    out_dir = Path(out_dir)
    return {"mask": out_dir / f"{stem}{MASK_SUFFIX}",
            "overlay": out_dir / f"{stem}{OVERLAY_SUFFIX}",
            "findings": out_dir / f"{stem}{FINDINGS_SUFFIX}"}


def write_outputs(out_dir, stem, pixels, mask, findings, protected=()):
    """Write mask, overlay and findings for one scan -> {"mask", "overlay", "findings"} paths.

    Everything is encoded in memory first, then each file is written atomically. Refuses
    (``OSError``) to write over any path in ``protected`` (the inputs of the run).
    """
    paths = output_paths(out_dir, stem)
    guarded = {os.path.realpath(p) for p in protected}
    for p in paths.values():
        if os.path.realpath(p) in guarded:
            raise FileExistsError(f"refusing to overwrite input file {p}")
    findings = dict(findings)
    findings["outputs"] = {k: str(v) for k, v in paths.items()}
    blobs = {
        "mask": png_bytes(mask_image(mask)),
        "overlay": png_bytes(make_overlay(pixels, mask, caption_for(findings))),
        "findings": json_bytes(findings),
    }
    atomic.write_many({paths[k]: blobs[k] for k in ("mask", "overlay", "findings")})
    return paths
