"""How much does each scanner difference hurt a bundle, per source, and does a model trained
with the scanner augmentations hold up better? An inference-only measurement.

    python -m bench.lab.scanner_shift BUNDLE [BUNDLE ...] --run runs/robust_ft [--out DIR]
        [--shifts gamma_up,noise,...] [--limit N] [--threads N] [--allow-untrusted]

Every validation scan of the run's split (``--run``: per source, runs/ROBUST.md; the training
parts are never scored) or of ``--data`` folders is read once, then shifted as a different
scanner or export would have produced it (``SHIFTS``: on the RAW pixels, before the runtime's
own preprocessing, in numpy/Pillow, deterministic per scan: random draws are seeded by the
scan's source and key), each shift at two fixed strengths (``mild``, ``strong``) taken from
the ranges of ``train.data.SCANNER_AUGMENTATIONS``, plus ``clean`` (the scan as it is). Each
version goes through each bundle with the device runtime (``segment.Segmenter``: the
bundle's preprocessing, its TFLite model with ai-edge-litert, its own threshold, smallest area
and peak gate), and is scored against the expert mask.

Per source, shift and bundle: Dice (mean per scan) over tumour scans with a 95 % bootstrap
interval over patient families (figshare) or similarity groups (BRISC), tumour scans missed
(nothing predicted), tumour-free scans flagged (any region kept) with a Wilson interval, and
the paired change against ``clean`` with a 95 % bootstrap interval (same families; per scan for
tumour-free scans). For every bundle after the first (the reference, e.g. the shipped one):
the difference of the changes (its change minus the reference's, the same draws), i.e.
whether it holds up better under that shift. Then the worst source per shift (the largest
Dice drop, the largest rise in flags). Writes ``STEM.md`` and ``STEM.json`` into ``--out``.

The strengths are those of the training augmentation, but the training applied them to the
model's 256-px input, and these act on the raw scan (mostly 512 px): pixel-sized effects
(blur, sharpening, noise, resolution) are about half as strong by the time the runtime has
shrunk the scan, as they would be from a real scanner. Linear contrast and brightness are not
among the shifts: the runtime's per-scan percentile normalisation undoes them (up to clipping
and 8-bit rounding; the lab test checks this). One run per augmentation (the training
ablation) is a different, unmeasured question.
"""

import hashlib
import math
import sys
import time

import numpy as np

PROG = "bench.lab.scanner_shift"
LEVELS = ("mild", "strong")
RESAMPLES = 2000            # bootstrap draws (as edge_runtime.evaluation.stats)
SEED = 0


def _gaussian(x, sigma):
    """x (H, W) float32 blurred by a gaussian of standard deviation ``sigma`` pixels
    (separable, radius ceil(3 sigma), mirrored edges like the training augmentation)."""
    r = max(1, math.ceil(3 * sigma))
    k = np.exp(-np.arange(-r, r + 1) ** 2 / (2.0 * sigma * sigma))
    k = (k / k.sum()).astype(np.float32)
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (r, r)
        p = np.pad(x, pad, mode="symmetric")
        n = x.shape[axis]
        x = sum(w * np.take(p, np.arange(i, i + n), axis=axis) for i, w in enumerate(k))
    return x.astype(np.float32)


def gamma(x, g, rng):
    """Gamma curve x ** g on the scan's own range (a different display / windowing curve)."""
    return np.power(x, g)


def lowres(x, factor, rng):
    """Resolution loss: down to 1/``factor`` of each side and back (Pillow bilinear,
    antialiased when shrinking), as a coarser acquisition matrix interpolated for display."""
    from PIL import Image
    h, w = x.shape
    small = (max(1, round(w / factor)), max(1, round(h / factor)))
    img = Image.fromarray(np.ascontiguousarray(x, np.float32)).resize(small, Image.BILINEAR)
    return np.asarray(img.resize((w, h), Image.BILINEAR), np.float32)


def blur(x, sigma, rng):
    """Gaussian blur of ``sigma`` raw pixels (the augmentation's x + a (x - G(x)) at a = -1)."""
    return _gaussian(x, sigma)


def sharpen(x, a, rng, sigma=1.0):
    """Unsharp mask x + a (x - G_1(x)), gaussian of 1 raw pixel (an edge-enhancing
    reconstruction kernel)."""
    return x + a * (x - _gaussian(x, sigma))


def bias(x, strength, rng):
    """Smooth multiplicative bias field exp(quadratic in x, y) of a random shape (seeded per
    scan) scaled so that its largest excursion is a factor (1 + ``strength``) up or down
    (coil sensitivity / inhomogeneity)."""
    h, w = x.shape
    c = rng.uniform(-1.0, 1.0, 5)
    yy, xx = np.linspace(-1.0, 1.0, h)[:, None], np.linspace(-1.0, 1.0, w)[None, :]
    poly = c[0] * xx + c[1] * yy + c[2] * xx * yy + c[3] * xx * xx + c[4] * yy * yy
    peak = float(np.abs(poly).max()) or 1.0
    return x * np.exp(poly * (math.log1p(strength) / peak)).astype(np.float32)


def noise(x, sigma, rng):
    """Additive gaussian noise, ``sigma`` as a share of the scan's intensity range (a noisier
    receiver or a faster sequence)."""
    return x + np.float32(sigma) * rng.standard_normal(x.shape, dtype=np.float32)


def jpeg(x, quality, rng):
    """JPEG re-encoding of the 8-bit image at ``quality`` (a lossy PACS export or a
    screenshot); on already-JPEG sources (BRISC, notumor) a second encoding."""
    import io

    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)).save(
        buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("L"), np.float32) / 255.0


# One row per scanner difference: the function, its two strengths and what a strength means.
# In the order of train.data.SCANNER_AUGMENTATIONS ("contrast" is gamma_up / gamma_down).
SHIFTS = {
    "gamma_up": (gamma, {"mild": 1.4, "strong": 1.7}, "gamma > 1 (darker mid-tones): the edge "
                 "of every run's intensity augmentation (1.42) and of the wide one (1.70)"),
    "gamma_down": (gamma, {"mild": 0.71, "strong": 0.6}, "gamma < 1 (brighter mid-tones): "
                   "1/1.4 and the wide augmentation's edge 0.6"),
    "lowres": (lowres, {"mild": 1.5, "strong": 2.5}, "down to 1/1.5 and 1/2.5 of the side and "
               "back (augmentation: 1/1.2-1/2.5)"),
    "blur": (blur, {"mild": 1.0, "strong": 2.0}, "gaussian blur, sigma 1 and 2 raw pixels "
             "(about 0.5 and 1 at the model's input; augmentation sigma 0.5-1.5, a = -1)"),
    "sharpen": (sharpen, {"mild": 0.75, "strong": 1.5}, "unsharp mask a = 0.75 and 1.5, "
                "sigma 1 raw pixel (augmentation a up to 1.5)"),
    "bias": (bias, {"mild": 0.2, "strong": 0.35}, "smooth multiplicative field, up to x1.20 "
             "and x1.35 (or its inverse) at its extreme (augmentation: up to about +-35 %)"),
    "noise": (noise, {"mild": 0.01, "strong": 0.04}, "gaussian, sigma 1 % and 4 % of the "
              "scan's range (augmentation 0.5-4 %)"),
    "jpeg": (jpeg, {"mild": 50, "strong": 30}, "JPEG quality 50 and 30 (augmentation 30-95)"),
}


def conditions(names=None):
    """-> ["clean", "NAME:mild", "NAME:strong", ...] for the shift ``names`` (all when None),
    in SHIFTS' order. Raises ValueError naming an unknown shift."""
    names = list(SHIFTS) if names is None else [n.strip() for n in names if n.strip()]
    unknown = [n for n in names if n not in SHIFTS]
    if unknown:
        raise ValueError(f"unknown shift {', '.join(unknown)}; allowed: {', '.join(SHIFTS)}")
    return ["clean"] + [f"{n}:{lv}" for n in SHIFTS if n in names for lv in LEVELS]


def scan_seed(key, shift):
    """A seed that depends only on the scan's key and the shift's name (not on its level, so
    the strong noise or field is the mild one scaled up; not on Python's hash)."""
    return int.from_bytes(hashlib.sha256(f"{key}|{shift}".encode()).digest()[:8], "little")


def apply_shift(pixels, condition, key):
    """The raw scan ``pixels`` (2-D, any dtype) as ``condition`` ("clean" or "NAME:LEVEL")
    would have produced it -> a new array of the same shape and dtype.

    The shift acts on the scan's own range mapped to [0, 1] (its minimum and maximum), the
    result is clipped to that range and stored back in the scan's dtype (integers rounded),
    as a scanner storing the same bit depth would. ``key`` and the shift's name seed the
    random draws (noise, the bias field's shape): the same scan and condition always give the
    same pixels, and the strong level is the mild one made stronger."""
    pixels = np.asarray(pixels)
    if condition == "clean":
        return pixels.copy()
    name, _, level = condition.partition(":")
    if name not in SHIFTS or level not in LEVELS:
        raise ValueError(f"unknown condition {condition!r}; allowed: clean or NAME:LEVEL with "
                         f"NAME in {', '.join(SHIFTS)} and LEVEL in {', '.join(LEVELS)}")
    fn, strengths, _ = SHIFTS[name]
    lo, hi = float(pixels.min()), float(pixels.max())
    if not hi > lo:
        return pixels.copy()
    x = ((pixels.astype(np.float64) - lo) / (hi - lo)).astype(np.float32)
    y = fn(x, strengths[level], np.random.default_rng(scan_seed(key, name)))
    y = lo + np.clip(np.asarray(y, np.float64), 0.0, 1.0) * (hi - lo)
    if pixels.dtype.kind in "iub":
        info = np.iinfo(pixels.dtype) if pixels.dtype.kind != "b" else None
        y = np.round(y)
        if info is not None:
            y = np.clip(y, info.min, info.max)
    return y.astype(pixels.dtype)


# ---- the measurement -------------------------------------------------------------------

def group_draws(groups, resamples=RESAMPLES, seed=SEED):
    """Per-scan group labels -> (group index per scan, (resamples, n_groups) draws) for a
    bootstrap over whole groups (``edge_runtime.evaluation.stats.patient_draws``)."""
    from edge_runtime.evaluation.stats import patient_draws
    names = sorted(set(groups))
    index = {g: i for i, g in enumerate(names)}
    return (np.array([index[g] for g in groups], int),
            patient_draws(len(names), resamples, seed) if len(names) >= 2 else None)


def boot_mean(values, gidx, draws):
    """(mean over scans, [2.5, 97.5] percentiles of the mean over bootstrap draws of whole
    groups) of per-scan ``values``; NaN interval with fewer than two groups."""
    values = np.asarray(values, np.float64)
    if not values.size:
        return math.nan, [math.nan, math.nan]
    mean = float(values.mean())
    if draws is None:
        return mean, [math.nan, math.nan]
    n_groups = draws.shape[1]
    sums = np.bincount(gidx, weights=values, minlength=n_groups)
    counts = np.bincount(gidx, minlength=n_groups).astype(np.float64)
    means = sums[draws].sum(1) / counts[draws].sum(1)
    return mean, [float(v) for v in np.percentile(means, [2.5, 97.5])]


def score_scan(pred, truth):
    """-> (Dice, any predicted, tumour pixels) of one predicted mask (both full size)."""
    from edge_runtime.metrics import confusion, dice_from_counts
    tp, fp, fn, _tn = confusion(pred, truth)
    return float(dice_from_counts(tp, fp, fn)), bool(tp + fp), int(tp + fn)


def run_scans(segmenters, samples, conds, log=print, every=100):
    """Every sample read once, shifted by every condition, run through every segmenter ->
    (records, failures). ``records[cond][bundle index]``: list of (Dice, flagged) in the order
    of the returned ``scored`` samples; failures: [(path, problem)]."""
    from edge_runtime.errors import InputImageError
    from edge_runtime.imageio import load_scan
    from edge_runtime.postprocess import postprocess

    records = {c: [[] for _ in segmenters] for c in conds}
    scored, failures = [], []
    start = time.perf_counter()
    for i, s in enumerate(samples):
        try:
            scan = load_scan(s.image)
            truth = (np.zeros(scan.pixels.shape, bool) if s.mask is None
                     else load_scan(s.mask).pixels != 0)
            if truth.shape != scan.pixels.shape:
                raise InputImageError(s.mask, f"mask is {truth.shape[1]}x{truth.shape[0]} but "
                                              f"the scan is {scan.width}x{scan.height}")
            out = {}
            for c in conds:
                shifted = apply_shift(scan.pixels, c, f"{s.source}/{s.key}")
                for j, seg in enumerate(segmenters):
                    pred = postprocess(seg.predict(shifted), seg.threshold,
                                       seg.min_area_fraction,
                                       min_peak_probability=seg.min_peak_probability)
                    out[c, j] = score_scan(pred, truth)[:2]
        except InputImageError as exc:
            failures.append((str(exc.path), exc.problem))
            continue
        except Exception as exc:  # noqa: BLE001 - one bad scan does not stop the rest
            failures.append((str(s.image), str(exc)))
            continue
        for (c, j), v in out.items():
            records[c][j].append(v)
        scored.append(s)
        if log and (i + 1) % every == 0:
            log(f"{i + 1}/{len(samples)} scans, {time.perf_counter() - start:.0f} s")
    return records, scored, failures


def summarise(records, scored, conds, names, resamples=RESAMPLES, seed=SEED):
    """-> {source: {kind, n, n_groups, conditions: {cond: [per bundle dict]}}}; see the
    module docstring for the numbers."""
    from edge_runtime.evaluation.stats import wilson_interval
    out = {}
    parts = {}                  # (source, has tumour) -> scan indices
    for i, s in enumerate(scored):
        parts.setdefault((s.source or "unknown", s.has_tumour), []).append(i)
    mixed = {src for src, t in parts if (src, not t) in parts}
    for (src, tumour), idx in parts.items():
        if src in mixed and not tumour:
            src = f"{src} (tumour-free)"
        groups = [scored[i].family or scored[i].key if tumour else scored[i].key for i in idx]
        gidx, draws = group_draws(groups, resamples, seed)
        entry = {"kind": "tumour" if tumour else "tumour_free", "n": len(idx),
                 "n_groups": int(gidx.max() + 1) if len(idx) else 0, "conditions": {}}

        def values(c, j, idx=idx, col=0 if tumour else 1):   # Dice, or flagged
            return np.array([records[c][j][i][col] for i in idx], np.float64)
        for c in conds:
            per = []
            for j, name in enumerate(names):
                v, v0 = values(c, j), values("clean", j)
                mean, ci = boot_mean(v, gidx, draws)
                change, change_ci = boot_mean(v - v0, gidx, draws)
                d = {"bundle": name, "change": change, "change_ci95": change_ci}
                if tumour:
                    d.update(dice_mean=mean, dice_ci95=ci, missed=int(sum(
                        1 for i in idx if not records[c][j][i][1])))
                else:
                    k = int(v.sum())
                    d.update(flagged=k, rate=mean, rate_ci95=wilson_interval(k, len(v)))
                if j:
                    r, r0 = values(c, 0), values("clean", 0)
                    d["vs_reference"], d["vs_reference_ci95"] = boot_mean(
                        (v - v0) - (r - r0), gidx, draws)
                per.append(d)
            entry["conditions"][c] = per
        out[src] = entry
    return out


def worst_sources(by_source, conds, names):
    """-> {cond: [per bundle {dice: (source, change, Dice), flags: (source, change, rate)}]}:
    the tumour source whose Dice fell most and the tumour-free source whose flags rose most."""
    out = {}
    for c in conds[1:]:
        per = []
        for j, name in enumerate(names):
            w = {"bundle": name}
            for kind, key, pick in (("tumour", "dice", min), ("tumour_free", "flags", max)):
                cands = [(src, e["conditions"][c][j]) for src, e in by_source.items()
                         if e["kind"] == kind]
                if cands:
                    src, d = pick(cands, key=lambda sd: sd[1]["change"])
                    w[key] = {"source": src, "change": d["change"],
                              "change_ci95": d["change_ci95"],
                              "value": d["dice_mean"] if kind == "tumour" else d["rate"]}
            per.append(w)
        out[c] = per
    return out


def host_info():
    """-> one-line description of the machine and the interpreter package."""
    import os
    import platform

    from edge_runtime.interpreter import interpreter_info
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = interpreter_info()
    interp = (f"{info.get('package')} {info.get('version', '')}".strip()
              if isinstance(info, dict) else info)
    return (f"{platform.node()} ({cpu}, {os.cpu_count()} CPUs, {platform.system()} "
            f"{platform.machine()}), Python {platform.python_version()}, interpreter {interp}")


def write_scans_csv(path, records, scored, conds, names):
    """One row per scan, condition and bundle (source, key, family, has_tumour, condition,
    bundle, dice, flagged) -> ``path``, atomically (for a re-analysis; not committed)."""
    import csv
    import io

    from edge_runtime import atomic
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["source", "key", "family", "has_tumour", "condition", "bundle", "dice",
                "flagged"])
    for c in conds:
        for j, name in enumerate(names):
            for s, (dice, flagged) in zip(scored, records[c][j]):
                w.writerow([s.source, s.key, s.family, int(s.has_tumour), c, name,
                            f"{dice:.6f}", int(flagged)])
    atomic.write_text(path, buf.getvalue())


def measure(bundles, samples, conds, threads=None, log=print, scans_csv=None):
    """Bundles (``bundle.Bundle``, the first the reference) x samples x conditions -> result
    dict (``summarise`` + ``worst_sources`` + the bundles' settings and the shifts).
    ``scans_csv``: also write every per-scan score there (``write_scans_csv``)."""
    from edge_runtime.segment import Segmenter
    segs = [Segmenter(b, threads=threads) for b in bundles]
    names = [b.name for b in bundles]
    log(f"{len(samples)} scans x {len(conds)} conditions x {len(bundles)} bundles")
    t0 = time.perf_counter()
    records, scored, failures = run_scans(segs, samples, conds, log)
    if scans_csv:
        write_scans_csv(scans_csv, records, scored, conds, names)
    by_source = summarise(records, scored, conds, names)
    return {
        "bundles": [{"name": b.name, "sha256": getattr(b, "sha256", None),
                     "threshold": b.threshold, "min_area_fraction": b.min_area_fraction,
                     "min_peak_probability": b.min_peak_probability,
                     "input_size": b.preprocessing.input_size} for b in bundles],
        "reference": names[0],
        "shifts": {n: {"levels": SHIFTS[n][1], "meaning": SHIFTS[n][2],
                       "function": SHIFTS[n][0].__name__}
                   for n in dict.fromkeys(c.split(":")[0] for c in conds[1:])},
        "conditions": conds, "n_scored": len(scored),
        "bootstrap": {"resamples": RESAMPLES, "seed": SEED,
                      "unit": "patient family / similarity group (tumour scans), scan "
                              "(tumour-free scans)"},
        "by_source": by_source, "worst_source": worst_sources(by_source, conds, names),
        "failures": failures, "seconds": round(time.perf_counter() - t0, 1),
    }


# ---- the report ------------------------------------------------------------------------

def _f(v, d=3, sign=False):
    if not _finite(v):
        return "–"
    return f"{v:+.{d}f}" if sign else f"{v:.{d}f}"


def _finite(*values):
    return all(v is not None and math.isfinite(v) for v in values)


def _ci(ci, d=3, scale=1.0):
    lo, hi = ci
    if not _finite(lo, hi):      # NaN in memory, None once written to JSON
        return ""
    return f" [{lo * scale:+.{d}f}, {hi * scale:+.{d}f}]"


def _pct_ci(ci):
    lo, hi = ci
    return f" [{100 * lo:.1f}, {100 * hi:.1f}]" if _finite(lo, hi) else ""


def _label(cond):
    if cond == "clean":
        return "clean", "", ""
    name, level = cond.split(":")
    return name, level, f"{SHIFTS[name][1][level]:g}"


def _cell(d, key, tumour):
    """'change [95 %]' of a per-bundle dict: Dice (tumour sources) or flags in points."""
    ci = d[f"{key}_ci95"]
    if tumour:
        return _f(d[key], sign=True) + _ci(ci)
    return f"{100 * d[key]:+.1f}" + _ci(ci, 1, 100)


def summary_tables(result, letters):
    """Markdown lines: per level, how much each shift moves A on each source, then each
    other bundle's change minus A's (positive Dice / negative flags: it holds up better)."""
    srcs = list(result["by_source"])
    kinds = [result["by_source"][s]["kind"] == "tumour" for s in srcs]
    head = "| shift | " + " | ".join(
        f"{s} ({'Dice' if t else 'flagged, points'})" for s, t in zip(srcs, kinds)) + " |"
    rule = "|---|" + "---|" * len(srcs)
    lines = []
    for level in reversed(LEVELS):          # the strong level first
        conds = [c for c in result["conditions"][1:] if c.endswith(":" + level)]
        if not conds:
            continue
        for j, L in enumerate(letters):
            key = "change" if j == 0 else "vs_reference"
            title = (f"A's change vs clean, {level} level [95 %]" if j == 0 else
                     f"{L}'s change minus A's, {level} level [95 %] (Dice > 0 or flags < 0: "
                     f"{L} holds up better)")
            lines += ["", f"## Summary: {title}", "", head, rule]
            for c in conds:
                cells = [_cell(result["by_source"][s]["conditions"][c][j], key, t)
                         for s, t in zip(srcs, kinds)]
                lines.append(f"| {c.split(':')[0]} | " + " | ".join(cells) + " |")
    return lines


def render(result):
    names = [b["name"] for b in result["bundles"]]
    letters = [chr(ord("A") + j) for j in range(len(names))]
    lines = ["# Scanner differences, measured per source (inference only)", "",
             f"Command: `{result.get('command', 'python -m ' + PROG)}`", "",
             f"Host: {result.get('host', '?')}; {result.get('date', '')}; "
             f"{result['seconds']:.0f} s.", "",
             f"Scans: {result.get('scans', '?')}. Each scan shifted on its raw pixels before "
             f"the runtime's preprocessing (deterministic per scan), run through each bundle "
             f"with the device runtime at the bundle's own setting. Dice: mean per tumour scan, "
             f"95 % bootstrap over patient families / BRISC groups; change: paired, shifted "
             f"minus clean, same bootstrap (per scan for tumour-free scans); flagged: "
             f"tumour-free scans with any region kept, Wilson 95 %. "
             f"**Research software, not a medical device.**", ""]
    for L, b in zip(letters, result["bundles"]):
        lines.append(f"- **{L}** = `{b['name']}` (threshold {b['threshold']:g}, smallest area "
                     f"{b['min_area_fraction']:g}, peak gate {b['min_peak_probability']:g})"
                     + (" — the reference" if L == "A" else ""))
    lines += ["", "Shifts (mild / strong):", ""]
    for n, s in result["shifts"].items():
        lines.append(f"- `{n}`: {s['meaning']}.")
    lines += summary_tables(result, letters)
    for src, e in result["by_source"].items():
        tumour = e["kind"] == "tumour"
        what = (f"{e['n']} tumour scans, {e['n_groups']} groups" if tumour
                else f"{e['n']} tumour-free scans")
        lines += ["", f"## {src} ({what})", ""]
        head = ["shift", "level", "param"]
        for j, L in enumerate(letters):
            if tumour:
                head += [f"{L} Dice", f"{L} change [95 %]", f"{L} missed"]
            else:
                head += [f"{L} flagged [95 %]", f"{L} change, points [95 %]"]
            if j:
                head.append(f"{L} − A change [95 %]")
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for c in result["conditions"]:
            row = list(_label(c))
            for j, d in enumerate(e["conditions"][c]):
                if tumour:
                    row += [_f(d["dice_mean"]) + _ci(d["dice_ci95"]).replace("+", ""),
                            "" if c == "clean" else _f(d["change"], sign=True)
                            + _ci(d["change_ci95"]),
                            str(d["missed"])]
                else:
                    row += [f"{d['flagged']} = {100 * d['rate']:.1f} %{_pct_ci(d['rate_ci95'])}",
                            "" if c == "clean" else f"{100 * d['change']:+.1f}"
                            + _ci(d["change_ci95"], 1, 100)]
                if j:
                    if c == "clean":
                        row.append("")
                    elif tumour:
                        row.append(_f(d["vs_reference"], sign=True)
                                   + _ci(d["vs_reference_ci95"]))
                    else:
                        row.append(f"{100 * d['vs_reference']:+.1f}"
                                   + _ci(d["vs_reference_ci95"], 1, 100))
            lines.append("| " + " | ".join(row) + " |")
    lines += ["", "## Worst source per shift", "",
              "The tumour source whose Dice fell most, and the tumour-free source whose flags "
              "rose most (change vs clean [95 %]).", "",
              "| shift | level | " + " | ".join(f"{L}: Dice, worst | {L}: flags, worst"
                                                for L in letters) + " |",
              "|---|---|" + "---|---|" * len(letters)]
    for c, per in result["worst_source"].items():
        name, level, _ = _label(c)
        row = [name, level]
        for w in per:
            dd, ff = w.get("dice"), w.get("flags")
            row.append(f"{dd['source']} {_f(dd['change'], sign=True)}{_ci(dd['change_ci95'])}"
                       if dd else "–")
            row.append(f"{ff['source']} {100 * ff['change']:+.1f} pts"
                       f"{_ci(ff['change_ci95'], 1, 100)}" if ff else "–")
        lines.append("| " + " | ".join(row) + " |")
    if result["failures"]:
        lines += ["", f"{len(result['failures'])} scans failed (left out of every row): "
                      "see the JSON."]
    return "\n".join(lines) + "\n"


# ---- command line ----------------------------------------------------------------------

def per_source_limit(samples, limit):
    """The first ``limit`` scans of each source (all when None), in the samples' order."""
    if limit is None:
        return list(samples)
    seen, out = {}, []
    for s in samples:
        k = (s.source, s.has_tumour)
        if seen.get(k, 0) < limit:
            seen[k] = seen.get(k, 0) + 1
            out.append(s)
    return out


def main(argv=None):
    import argparse
    import json
    from datetime import datetime, timezone

    from bench.samples import load_samples, write_results
    from edge_runtime.errors import EdgeSegError
    from edge_runtime.trust import load_trusted_bundle

    ap = argparse.ArgumentParser(prog=f"python -m {PROG}", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundles", nargs="+", help="bundles; the first is the reference")
    ap.add_argument("--run", default=None, help="training run whose validation split to score")
    ap.add_argument("--data", action="append", default=[], help="scan folders (repeatable)")
    ap.add_argument("--out", default="bench/results")
    ap.add_argument("--stem", default="scanner_shift")
    ap.add_argument("--shifts", default=None,
                    help=f"comma-separated shifts (default all: {','.join(SHIFTS)})")
    ap.add_argument("--limit", type=int, default=None,
                    help="only the first N scans of each source (development)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--save-scans", default=None, metavar="CSV",
                    help="also write every per-scan score to this CSV (large; for a "
                         "re-analysis)")
    ap.add_argument("--allow-untrusted", action="store_true",
                    help="run bundles that are not in the trust list")
    args = ap.parse_args(argv)
    command = f"python -m {PROG} " + " ".join(sys.argv[1:] if argv is None else argv)
    if not args.run and not args.data:
        ap.error("give --run RUN (its validation split) or --data DIR")
    if args.limit is not None and args.limit < 1:
        ap.error(f"--limit must be >= 1, got {args.limit}")
    try:
        conds = conditions(args.shifts.split(",") if args.shifts else None)
    except ValueError as exc:
        ap.error(str(exc))
    try:
        bundles = [load_trusted_bundle(b, allow_untrusted=args.allow_untrusted)
                   for b in args.bundles]
    except EdgeSegError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.exit_code
    if len({b.name for b in bundles}) != len(bundles):
        print(f"{PROG}: two bundles share a name ({', '.join(b.name for b in bundles)}): "
              "give distinct bundles", file=sys.stderr)
        return 2
    try:
        samples, phrase = load_samples(args.run, args.data)
    except (EdgeSegError, ValueError, OSError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    samples = per_source_limit(samples, args.limit)
    if args.limit is not None:
        phrase += f", the first {args.limit} of each source: {len(samples)} scans"
    result = measure(bundles, samples, conds, args.threads,
                     lambda m: print(f"{PROG}: {m}", file=sys.stderr), args.save_scans)
    result.update(command=command, scans=phrase, host=host_info(),
                  date=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    written = write_results(args.out, args.stem, render(result), result)
    print(json.dumps({"written": [str(p) for p in written],
                      "failures": len(result["failures"])}))
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
