"""Where the Dice is lost, and what the worst scans look like.

    python -m bench.lab.failures BUNDLE --run runs/NAME [--per-class 3] [--out bench/results]
    python -m bench.lab.failures BUNDLE --data DIR [--data DIR ...] [--out DIR]

The bundle segments every scan (``--run``: the run's validation split, as every other number
in the README; ``--data``: every scan in those folders), exactly as ``edge-seg run`` does.

- **Where the Dice is lost** (``failures.md`` / ``.json``): for each tumour class, the mean
  per-scan Dice and how many points of the overall mean (over all scans with a tumour) are
  lost to scans where no tumour was found, to scans with a finding that misses the tumour
  (Dice 0), to scans below Dice 0.5, and to the rest. A target is reachable by tuning only if
  most of the loss sits in the last column.
- **The worst scans** (``failures.png``): per class, the ``--per-class`` scans with the lowest
  Dice, one per patient family (the worst slices of one patient look alike). Each pair of
  panels: the scan as it came, then the expert outline (green) and the bundle's (red). The
  flagged tumour-free scans with the largest findings are listed in the table, not pictured:
  the licence of that set could not be confirmed, so none of its pixels are redistributed.
  The selection is a rule, not a choice: anyone re-running it gets the same scans.

The pictured scans come from the figshare brain tumour dataset (Cheng et al., CC BY 4.0); the
figure is theirs, with our outlines.
"""

import json
import sys
from pathlib import Path

import numpy as np

from bench.samples import make_parser, open_inputs

LOW_DICE = 0.5
PANEL = 224                       # panel side in the figure, pixels
TRUTH_RGB = (40, 220, 60)
PRED_RGB = (240, 40, 40)
NOT_PICTURED = ("tumour-free",)   # listed only: the set's licence allows no redistribution
LOSS_COLUMNS = ("no finding", "finding off the tumour", f"Dice < {LOW_DICE}",
                f"Dice >= {LOW_DICE}")


def score_scans(bundle, samples, threads=None, log=None):
    """Segment every sample -> (list of per-scan dicts, failures [(path, problem)])."""
    from edge_runtime import metrics
    from edge_runtime.evaluate import iter_predictions, predict_fn_for_interpreter
    from edge_runtime.interpreter import make_interpreter
    from edge_runtime.postprocess import postprocess

    predict = predict_fn_for_interpreter(make_interpreter(bundle.model_bytes, threads))
    rows, failures = [], []
    for _row, sample, _scan, truth, prob in iter_predictions(
            samples, predict, bundle.preprocessing, 1,
            lambda _r, path, problem: failures.append((str(path), problem))):
        pred = postprocess(prob, bundle.threshold, bundle.min_area_fraction,
                           min_peak_probability=bundle.min_peak_probability)
        tp = int((pred & truth).sum())
        pred_px, truth_px = int(pred.sum()), int(truth.sum())
        rows.append({"key": sample.key, "image": str(sample.image),
                     "class": sample.label_name if truth_px else "tumour-free",
                     "family": sample.family or sample.key, "truth_px": truth_px,
                     "pred_px": pred_px, "tp": tp,
                     "dice": (metrics.dice_from_counts(tp, pred_px - tp, truth_px - tp)
                              if truth_px else None)})
        if log and len(rows) % 200 == 0:
            log(f"{len(rows)} scans segmented")
    return rows, failures


def loss_budget(rows):
    """-> list of dicts, one per tumour class and one for all: n, Dice, and the Dice points
    of the overall mean lost to each of ``LOSS_COLUMNS`` (they sum to 1 - Dice for 'all')."""
    tumour = [r for r in rows if r["truth_px"]]
    n_all = len(tumour)
    out = []
    for name in sorted({r["class"] for r in tumour}) + ["all"]:
        group = tumour if name == "all" else [r for r in tumour if r["class"] == name]
        dice = np.array([r["dice"] for r in group], float)
        no_find = np.array([r["pred_px"] == 0 for r in group])
        off = (dice == 0) & ~no_find
        low = (dice > 0) & (dice < LOW_DICE)
        rest = dice >= LOW_DICE
        lost = [float((1 - dice[m]).sum() / n_all) for m in (no_find, off, low, rest)]
        out.append({"class": name, "n": len(group), "dice_mean": float(dice.mean()),
                    "scans": [int(m.sum()) for m in (no_find, off, low, rest)],
                    "lost": dict(zip(LOSS_COLUMNS, lost))})
    return out


def worst(rows, per_class):
    """-> {class: [rows]}: per tumour class the ``per_class`` lowest-Dice scans, one per
    family; tumour-free: the ``per_class`` flagged scans with the largest findings, one per
    family. Ties are broken by key, so the choice is reproducible."""
    picked = {}
    for name in sorted({r["class"] for r in rows}):
        group = [r for r in rows if r["class"] == name]
        if name == "tumour-free":
            group = sorted((r for r in group if r["pred_px"]), key=lambda r: (-r["pred_px"],
                                                                              r["key"]))
        else:
            group = sorted(group, key=lambda r: (r["dice"], r["key"]))
        chosen, families = [], set()
        for r in group:
            if r["family"] not in families:
                chosen.append(r)
                families.add(r["family"])
            if len(chosen) == per_class:
                break
        if chosen:
            picked[name] = chosen
    return picked


def _panel(gray, truth, pred, caption):
    from PIL import Image

    from edge_runtime.outputs import draw_caption, display_gray, outline

    h, w = gray.shape
    scale = PANEL / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))

    def fit(img):
        canvas = Image.new("RGB", (PANEL, PANEL))
        canvas.paste(img.resize(size, Image.BILINEAR), ((PANEL - size[0]) // 2,
                                                      (PANEL - size[1]) // 2))
        return canvas
    base = np.repeat(display_gray(gray)[:, :, None], 3, axis=2)
    marked = base.copy()
    thickness = max(1, round(max(h, w) / PANEL))
    marked[outline(truth, thickness)] = TRUTH_RGB
    marked[outline(pred, thickness)] = PRED_RGB
    left, right = fit(Image.fromarray(base)), fit(Image.fromarray(marked))
    draw_caption(right, caption)
    pair = Image.new("RGB", (2 * PANEL, PANEL))
    pair.paste(left, (0, 0))
    pair.paste(right, (PANEL, 0))
    return pair


def render(bundle, samples, picked, threads=None):
    """-> Pillow image: one row per class in ``picked``, one scan/outline pair per scan."""
    from PIL import Image

    from edge_runtime.evaluate import iter_predictions, predict_fn_for_interpreter
    from edge_runtime.interpreter import make_interpreter
    from edge_runtime.postprocess import postprocess

    by_key = {s.key: s for s in samples}
    picked = {c: rows for c, rows in picked.items() if c not in NOT_PICTURED}
    if not picked:
        return None
    wanted = [r for rows in picked.values() for r in rows]
    predict = predict_fn_for_interpreter(make_interpreter(bundle.model_bytes, threads))
    pairs = {}
    for _row, sample, scan, truth, prob in iter_predictions(
            [by_key[r["key"]] for r in wanted], predict, bundle.preprocessing, 1,
            lambda *_: None):
        pred = postprocess(prob, bundle.threshold, bundle.min_area_fraction,
                           min_peak_probability=bundle.min_peak_probability)
        r = next(r for r in wanted if r["key"] == sample.key)
        what = (f"Dice {r['dice']:.2f}" if r["dice"] is not None else
                f"flagged {r['pred_px']} px")
        pairs[sample.key] = _panel(scan.pixels, truth, pred,
                                   f"{sample.key} {r['class']} {what}")
    cols = max(len(rows) for rows in picked.values())
    sheet = Image.new("RGB", (cols * 2 * PANEL, len(picked) * PANEL))
    for i, rows in enumerate(picked.values()):
        for j, r in enumerate(rows):
            if r["key"] in pairs:
                sheet.paste(pairs[r["key"]], (j * 2 * PANEL, i * PANEL))
    return sheet


def to_markdown(budget, picked, bundle_name, source, figure):
    lines = [f"# Where the Dice is lost: {bundle_name}", "",
             f"Scans: {source}; the bundle as `edge-seg run` runs it "
             "(`python -m bench.lab.failures`). Each cell: the points of the mean Dice over all "
             "scans with a tumour lost to that kind of scan (scans in brackets); a row's "
             "cells sum to its share of the gap to 1.", "",
             "| class | scans | mean Dice | " + " | ".join(LOSS_COLUMNS) + " |",
             "|---|---|---|" + "---|" * len(LOSS_COLUMNS)]
    for b in budget:
        cells = [f"{b['lost'][c]:.3f} ({n})" for c, n in zip(LOSS_COLUMNS, b["scans"])]
        lines.append(f"| {b['class']} | {b['n']} | {b['dice_mean']:.3f} | "
                     + " | ".join(cells) + " |")
    lines += [""] + ([f"![the worst scans]({figure})", ""] if figure else []) + [
              "The worst scans, one per patient family (pictured: the scans with a tumour; left "
              "the scan, right the expert's outline in green and the bundle's in red; "
              "tumour-free scans are listed only, their set's licence allows no "
              "redistribution):", "",
              "| class | scan | family | Dice | tumour px | found px |", "|---|---|---|---|---|---|"]
    for name, rows in picked.items():
        for r in rows:
            d = "—" if r["dice"] is None else f"{r['dice']:.3f}"
            lines.append(f"| {name} | {r['key']} | {r['family']} | {d} | {r['truth_px']} | "
                         f"{r['pred_px']} |")
    lines += ["", "Pictured scans: figshare brain tumour dataset (J. Cheng, 2017, "
              "doi:10.6084/m9.figshare.1512427, CC BY 4.0); outlines ours.", ""]
    return "\n".join(lines)


def main(argv=None):
    ap = make_parser("bench.lab.failures", __doc__)
    ap.add_argument("--per-class", type=int, default=3, help="scans shown per class")
    args = ap.parse_args(argv)
    if args.per_class < 1:
        ap.error(f"--per-class must be at least 1, got {args.per_class}")

    from edge_runtime import atomic
    from edge_runtime.errors import EdgeSegError
    from edge_runtime.evaluate import to_json
    from edge_runtime.outputs import png_bytes

    try:
        bundle, samples, source = open_inputs(args)
    except (EdgeSegError, ValueError, OSError) as exc:
        print(f"failures: {exc}", file=sys.stderr)
        return 2
    rows, failed = score_scans(bundle, samples, args.threads,
                               log=lambda m: print(f"failures: {m}", file=sys.stderr))
    if not any(r["truth_px"] for r in rows):
        print(f"failures: no scan with a tumour could be scored in {source}", file=sys.stderr)
        return 1
    budget, picked = loss_budget(rows), worst(rows, args.per_class)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sheet = render(bundle, samples, picked, args.threads)
    if sheet is not None:
        atomic.write_bytes(out / "failures.png", png_bytes(sheet))
    figure = "failures.png" if sheet is not None else None
    atomic.write_text(out / "failures.md", to_markdown(budget, picked, bundle.name, source,
                                                       figure))
    atomic.write_text(out / "failures.json", to_json(
        {"bundle": bundle.name, "scans": source, "budget": budget, "worst": picked,
         "failures": failed}))
    for path, problem in failed:
        print(f"failures: {path}: {problem}", file=sys.stderr)
    print(json.dumps({"written": [str(out / n) for n in
                                  ("failures.md", "failures.json", figure) if n]}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
