"""Series-level consistency: does dropping detections without support on a neighbouring
slice help? Measured on the validation patients' neighbouring slices.

    python -m bench.series_consistency BUNDLE --run runs/NAME [--out DIR]

The rules are ``edge_runtime.dicom.consistency.RULES`` (what ``edge-seg run`` on a DICOM
series and ``edge-seg listen`` apply with ``--series-consistency``): ``overlap`` keeps a
component of a slice's mask only if it overlaps the mask of a neighbouring slice, ``any``
keeps a slice's mask only if a neighbouring slice has a tumour. The neighbours of a figshare
scan are the same patient's scans with ``index`` ± 1 (``bench.slice_context.neighbours``);
a scan without one (every tumour-free scan) keeps its mask. One model pass; each rule is
compared with ``off`` by ``bench.compare_runs.compare`` (paired Dice and mIoU differences,
95 % intervals from a bootstrap over patient families, tumour-free scans flagged).

A component-level count comes with it, over scans with a tumour and a neighbour: of the
predicted components that touch no expert tumour pixel (false alarms) and of those that do
(hits), how many each rule removes. ``docs/DICOM.md`` decides the default from this.
Writes ``series_consistency.md`` and ``.json`` into ``--out`` (default bench/results).
"""

import sys

from bench.samples import make_parser, run_measurement


def measure(bundle, samples, threads=None, limit=None, log=print):
    from bench.compare_runs import compare, scan_row
    from bench.slice_context import neighbours
    from edge_runtime.dicom.consistency import RULES, apply_rule
    from edge_runtime.evaluate import iter_predictions, predict_fn_for_interpreter
    from edge_runtime.interpreter import make_interpreter
    from edge_runtime.postprocess import label_components, postprocess

    samples = list(samples)[:limit] if limit else list(samples)
    predict = predict_fn_for_interpreter(make_interpreter(bundle.model_bytes, threads))
    failures, masks, truths, scored = [], {}, {}, []
    for _row, sample, _scan, truth, prob in iter_predictions(
            samples, predict, bundle.preprocessing, 1,
            lambda _r, path, problem: failures.append((str(path), problem))):
        masks[sample.key] = postprocess(prob, bundle.threshold, bundle.min_area_fraction,
                                        min_peak_probability=bundle.min_peak_probability)
        truths[sample.key] = truth
        scored.append(sample)
    log(f"{len(scored)} scans predicted ({len(failures)} failed)")
    near = {k: [n for n in v if n in masks and masks[n].shape == masks[k].shape]
            for k, v in neighbours(scored).items()}
    rows, components = {}, {}
    for rule in RULES:
        rows[rule] = []
        counts = {"false_alarms": 0, "false_alarms_removed": 0, "hits": 0, "hits_removed": 0}
        for s in scored:
            own = masks[s.key]
            kept = apply_rule(rule, own, [masks[n] for n in near[s.key]])
            rows[rule].append(scan_row(s, kept, truths[s.key]))
            if not (s.has_tumour and near[s.key]):
                continue
            labels, count = label_components(own)
            for c in range(1, count + 1):
                comp = labels == c
                hit = bool((comp & truths[s.key]).any())
                removed = not kept[comp].any()
                key = "hits" if hit else "false_alarms"
                counts[key] += 1
                counts[f"{key}_removed"] += int(removed)
        components[rule] = counts
    comparisons = {rule: compare(rows["off"], rows[rule]) for rule in RULES if rule != "off"}
    with_tumour = [s for s in scored if s.has_tumour]
    free = [s for s in scored if not s.has_tumour]
    return {
        "bundle": bundle.name, "threshold": bundle.threshold,
        "min_area_fraction": bundle.min_area_fraction,
        "min_peak_probability": bundle.min_peak_probability,
        "rules": RULES,
        "scans_with_tumour": len(with_tumour),
        "with_neighbours": sum(1 for s in with_tumour if near[s.key]),
        "tumour_free": len(free),
        "tumour_free_with_neighbours": sum(1 for s in free if near[s.key]),
        "comparisons": comparisons,
        "components": components,
        "failures": failures,
    }


def _ci(d, key):
    lo, hi = d[f"{key}_ci95"]
    return f"{d[key]:+.4f} [{lo:+.4f}, {hi:+.4f}]"


def render_markdown(result, source):
    from edge_runtime.dicom.consistency import DEFAULT_RULE
    lines = [f"# Series consistency on {result['bundle']}", "",
             f"Scans: {source}. {result['with_neighbours']} of the "
             f"{result['scans_with_tumour']} scans with a tumour have a neighbouring slice; "
             f"{result['tumour_free_with_neighbours']} of the {result['tumour_free']} "
             "tumour-free scans do (they are single slices, so no rule can change them). "
             f"The bundle's threshold {result['threshold']}, smallest area "
             f"{result['min_area_fraction']} and peak filter "
             f"{result['min_peak_probability']} come first. Paired against `off`, 95 % "
             "intervals from a bootstrap over patient families. Command: "
             "`python -m bench.series_consistency`.", "",
             "| rule | what it does | Dice | change [95 %] | mIoU (2-class) | change [95 %] "
             "| tumour-free flagged |", "|---|---|---|---|---|---|---|"]
    first = next(iter(result["comparisons"].values()), None)
    if first and "dice_a" in first["tumour"]:
        t, f = first["tumour"], first["tumour_free"]
        lines.append(f"| off | {result['rules']['off']} | {t['dice_a']:.4f} | | "
                     f"{t['miou_a']:.4f} | | {f['flagged_a']}/{f['n']} |")
    for rule, c in result["comparisons"].items():
        t, f = c["tumour"], c["tumour_free"]
        if "dice_b" not in t:
            continue
        lines.append(f"| {rule} | {result['rules'][rule]} | {t['dice_b']:.4f} | "
                     f"{_ci(t, 'dice_diff')} | {t['miou_b']:.4f} | {_ci(t, 'miou_diff')} | "
                     f"{f['flagged_b']}/{f['n']} |")
    lines += ["", "Predicted components on scans with a tumour and a neighbour: false alarms "
                  "touch no expert tumour pixel, hits do.", "",
              "| rule | false alarms removed | hits removed |", "|---|---|---|"]
    for rule, c in result["components"].items():
        if rule == "off":
            continue
        lines.append(f"| {rule} | {c['false_alarms_removed']} of {c['false_alarms']} | "
                     f"{c['hits_removed']} of {c['hits']} |")
    lines += ["", f"Default in `edge_runtime.dicom.consistency.DEFAULT_RULE`: `{DEFAULT_RULE}`."]
    for path, problem in result["failures"]:
        lines.append(f"\n> failed: {path}: {problem}")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = make_parser("bench.series_consistency", __doc__, limit=True)
    args = ap.parse_args(argv)
    return run_measurement(
        ap, args, "series_consistency",
        lambda bundle, samples, log: measure(bundle, samples, args.threads, args.limit, log),
        render_markdown, "series_consistency")


if __name__ == "__main__":
    sys.exit(main())
