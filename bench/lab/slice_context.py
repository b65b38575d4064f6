"""Does a neighbouring slice help? Fuse a bundle's probability maps across adjacent slices.

    python -m bench.lab.slice_context BUNDLE --run runs/NAME [--data DIR ...] [--out DIR]
    python -m bench.lab.slice_context BUNDLE --data DIR [--data DIR ...] [--out DIR]

The slices of one figshare patient are neighbours in one series: the scans with ``index``
(the sample key) ± 1 of the same patient, and the same size, are the slices next to it.
A single-slice model ignores them. This script measures the cheapest way to use them, with
no training: each ``RULES`` entry turns a scan's own probability map and its neighbours'
maps into one map, which then goes through the bundle's own threshold, smallest-area and
peak filters. Every rule is compared with ``as shipped`` (the scan's own map) by
``bench.compare_runs.compare``: the paired Dice difference over whole patient families,
per tumour class, and the tumour-free scans flagged (those have no neighbours, so they keep
their own map).

Two diagnostics come with it: how well a neighbour's *expert* mask predicts a slice's mask
(the better neighbour's Dice: what a neighbour's outline can say about this one), and how
many of the scans the bundle misses have a neighbour on which it finds the tumour.

Writes ``slice_context.md`` and ``slice_context.json`` into ``--out``. The rules are fixed
in ``runs/CONTEXT.md``, written before the first score: nothing here is tuned.
"""

import sys

import numpy as np

from bench.samples import make_parser, run_measurement

# name -> what it does; ``fuse`` implements them.
RULES = {
    "as shipped": "the slice's own map",
    "mean of 3": "mean of the maps of the slice and its neighbours",
    "half own": "0.5 x own map + 0.5 x the mean of its neighbours' maps",
}


def neighbours(samples):
    """-> {key: [keys of the neighbouring slices]} (``datasets.slice_neighbours`` at -1 and
    +1): the scans with an integer key ± 1 and the same patient among ``samples``."""
    from edge_runtime.datasets import slice_neighbours
    samples = list(samples)
    out = {s.key: [] for s in samples}
    for offset in (-1, 1):
        for s, j in zip(samples, slice_neighbours(samples, offset)):
            if j >= 0:
                out[s.key].append(samples[j].key)
    return out


def fuse(rule, own, nbrs):
    """The fused probability map of ``rule`` (a ``RULES`` key) for a slice's ``own`` map and
    the list of its neighbours' maps (same shape; may be empty: then the own map)."""
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; allowed: {', '.join(RULES)}")
    own = np.asarray(own, np.float32)
    if rule == "as shipped" or not nbrs:
        return own
    stack = np.stack([np.asarray(n, np.float32) for n in nbrs])
    if rule == "mean of 3":
        return (own + stack.sum(0)) / (1 + len(nbrs))
    return 0.5 * own + 0.5 * stack.mean(0)


def _class_means(values):
    """{class: [values]} -> {class: mean}, plus "all"."""
    out = {c: float(np.mean(v)) for c, v in sorted(values.items()) if v}
    every = [x for v in values.values() for x in v]
    if every:
        out["all"] = float(np.mean(every))
    return out


def measure(bundle, samples, threads=None, limit=None, log=print):
    """One model pass over ``samples``; every rule scored on it -> dict (see the module
    docstring). A scan that cannot be read is reported in ``failures`` and left out of
    every rule (and is nobody's neighbour)."""
    from bench.compare_runs import compare, scan_row
    from edge_runtime import metrics
    from edge_runtime.evaluate import iter_predictions, predict_fn_for_interpreter
    from edge_runtime.interpreter import make_interpreter
    from edge_runtime.postprocess import postprocess

    samples = list(samples)[:limit] if limit else list(samples)
    predict = predict_fn_for_interpreter(make_interpreter(bundle.model_bytes, threads))
    failures, probs, truths, scored = [], {}, {}, []
    for _row_, sample, _scan, truth, prob in iter_predictions(
            samples, predict, bundle.preprocessing, 1,
            lambda _r, path, problem: failures.append((str(path), problem))):
        probs[sample.key] = prob.astype(np.float16)
        truths[sample.key] = truth
        scored.append(sample)
    log(f"{len(scored)} scans predicted ({len(failures)} failed)")
    near = {k: [n for n in v if n in probs and probs[n].shape == probs[k].shape]
            for k, v in neighbours(scored).items()}

    def post(p):
        return postprocess(p, bundle.threshold, bundle.min_area_fraction,
                           min_peak_probability=bundle.min_peak_probability)

    rows, own_pred = {}, {}
    for rule in RULES:
        rows[rule] = []
        for s in scored:
            pred = post(fuse(rule, probs[s.key], [probs[n] for n in near[s.key]]))
            if rule == "as shipped":
                own_pred[s.key] = pred
            rows[rule].append(scan_row(s, pred, truths[s.key]))
    comparisons = {rule: compare(rows["as shipped"], rows[rule])
                   for rule in RULES if rule != "as shipped"}

    # Diagnostics over the scans with a tumour and at least one neighbour.
    ceiling, rescued, missed = {}, 0, 0
    for s in scored:
        if not s.has_tumour or not near[s.key]:
            continue
        t = truths[s.key]
        best = max(metrics.dice_from_counts(*metrics.confusion(truths[n], t)[:3])
                   for n in near[s.key])
        ceiling.setdefault(s.label_name, []).append(best)
        if not own_pred[s.key].any():
            missed += 1
            rescued += any(metrics.confusion(own_pred[n], truths[n])[0] > 0
                           for n in near[s.key])
    with_tumour = [s for s in scored if s.has_tumour]
    return {
        "bundle": bundle.name, "threshold": bundle.threshold,
        "min_area_fraction": bundle.min_area_fraction,
        "min_peak_probability": bundle.min_peak_probability,
        "rules": RULES,
        "scans_with_tumour": len(with_tumour),
        "with_neighbours": sum(1 for s in with_tumour if near[s.key]),
        "with_two_neighbours": sum(1 for s in with_tumour if len(near[s.key]) == 2),
        "comparisons": comparisons,
        "neighbour_truth_dice": _class_means(ceiling),
        "missed_with_neighbours": missed,
        "missed_found_on_a_neighbour": rescued,
        "failures": failures,
    }


def _ci(d, key):
    lo, hi = d[f"{key}_ci95"]
    return f"{d[key]:+.4f} [{lo:+.4f}, {hi:+.4f}]"


def render_markdown(result, source):
    lines = [f"# Slice context on {result['bundle']}", "",
             f"Scans: {source}. {result['with_neighbours']} of the "
             f"{result['scans_with_tumour']} scans with a tumour have a neighbouring slice "
             f"({result['with_two_neighbours']} have two). The bundle's threshold "
             f"{result['threshold']}, smallest area {result['min_area_fraction']} and peak "
             f"filter {result['min_peak_probability']} follow every rule. Differences are "
             "paired against `as shipped`, 95 % intervals from a bootstrap over patient "
             "families. Command: `python -m bench.lab.slice_context`; rules fixed in "
             "`runs/CONTEXT.md`.", "",
             "| rule | what it does | Dice | change [95 %] | mIoU (2-class) | change [95 %] "
             "| tumour-free flagged |", "|---|---|---|---|---|---|---|"]
    first = next(iter(result["comparisons"].values()), None)
    if first and "dice_a" in first["tumour"]:
        t, f = first["tumour"], first["tumour_free"]
        lines.append(f"| as shipped | {RULES['as shipped']} | {t['dice_a']:.4f} | | "
                     f"{t['miou_a']:.4f} | | {f['flagged_a']}/{f['n']} |")
    for rule, c in result["comparisons"].items():
        t, f = c["tumour"], c["tumour_free"]
        if "dice_b" not in t:
            continue
        lines.append(f"| {rule} | {RULES[rule]} | {t['dice_b']:.4f} | {_ci(t, 'dice_diff')} | "
                     f"{t['miou_b']:.4f} | {_ci(t, 'miou_diff')} | "
                     f"{f['flagged_b']}/{f['n']} |")
    classes = sorted({k for c in result["comparisons"].values() for k in c["by_class"]})
    if classes:
        lines += ["", "Per tumour class (Dice, change against `as shipped` [95 %]):", "",
                  "| rule | " + " | ".join(classes) + " |", "|---|" + "---|" * len(classes)]
        for rule, c in result["comparisons"].items():
            cells = []
            for k in classes:
                d = c["by_class"].get(k, {})
                cells.append(f"{d['dice_b']:.3f} ({_ci(d, 'dice_diff')})" if "dice_b" in d
                             else "-")
            lines.append(f"| {rule} | " + " | ".join(cells) + " |")
    ceil = result["neighbour_truth_dice"]
    if ceil:
        lines += ["", "A neighbour's expert mask taken as this slice's mask (the better "
                      "neighbour's Dice, scans with a tumour and a neighbour): "
                  + ", ".join(f"{k} {v:.3f}" for k, v in ceil.items()) + "."]
    lines += ["", f"Of the {result['missed_with_neighbours']} scans with a tumour and a "
                  "neighbour on which the bundle predicts nothing, "
                  f"{result['missed_found_on_a_neighbour']} have a neighbour on which it finds "
                  "the tumour."]
    for path, problem in result["failures"]:
        lines.append(f"\n> failed: {path}: {problem}")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = make_parser("bench.lab.slice_context", __doc__, limit=True)
    args = ap.parse_args(argv)

    return run_measurement(
        ap, args, "slice_context",
        lambda bundle, samples, log: measure(bundle, samples, args.threads, args.limit, log),
        render_markdown, "slice_context")


if __name__ == "__main__":
    sys.exit(main())
