"""The bundle's MODEL_CARD.md, written from its manifest (so the two never disagree).

    python -m edge_seg.convert.card BUNDLE [--report runs/NAME/report.json] --out NEW.zip

rewrites the card of an existing bundle from its own manifest (after a change to the card's
wording), keeping the model and the manifest byte for byte: no conversion, no new gate. The
result is a new bundle; the old one is never touched.
"""

import argparse
import json
import sys
from pathlib import Path


def _num(v, digits=4):
    return "n/a" if v is None else f"{v:.{digits}f}"


def _metrics_table(metrics):
    f, c = metrics.get("float") or {}, metrics.get("converted") or {}
    d = metrics.get("drop") or {}
    rows = ["| metric | Keras (float32) | converted | drop |", "|---|---|---|---|"]
    for key, label in (("dice", "Dice, mean per scan (tumour scans)"),
                       ("iou", "tumour IoU, mean per scan (tumour scans)"),
                       ("dice_pooled", "Dice, pooled pixels (tumour scans)"),
                       ("miou_2class", "2-class mIoU, pooled pixels (all scans; Keras MeanIoU)"),
                       ("fp_scan_rate", "tumour-free scans with a finding")):
        rows.append(f"| {label} | {_num(f.get(key))} | {_num(c.get(key))} | {_num(d.get(key))} |")
    classes = sorted(set(f.get("by_class") or {}) | set(c.get("by_class") or {}))
    if classes:
        rows += ["", "| class | scans | Dice Keras | Dice converted | IoU Keras | IoU converted |",
                 "|---|---|---|---|---|---|"]
        for name in classes:
            fc, cc = (f.get("by_class") or {}).get(name, {}), (c.get("by_class") or {}).get(name, {})
            rows.append(f"| {name} | {fc.get('scans', cc.get('scans', ''))} | "
                        f"{_num(fc.get('dice'))} | {_num(cc.get('dice'))} | "
                        f"{_num(fc.get('iou'))} | {_num(cc.get('iou'))} |")
    return "\n".join(rows)


def model_card(manifest, report=None):
    """Markdown model card for a bundle manifest (and the training run's report.json)."""
    m = manifest
    pre = m.get("preprocessing", {})
    q = m.get("quantization", {})
    tr = m.get("training") or {}
    metrics = m.get("metrics") or {}
    xnn = m.get("xnnpack") or {}
    interp = m.get("interpreters_verified") or []
    size = pre.get("input_size")
    lines = [
        f"# Model card: {m.get('name')}",
        "",
        "**Research software. Not a medical device. Not for diagnosis or treatment decisions.**",
        "Every output must be reviewed by a qualified clinician.",
        "",
        "## Intended use",
        "Marks the probable extent of a brain tumour (meningioma, glioma, pituitary tumour) on a "
        "single 2-D T1-weighted contrast-enhanced MRI slice, as a second look for research and "
        "teaching, on a Raspberry Pi class device with a TFLite interpreter. It does not classify "
        "tumour type and does not work on 3-D volumes, other MRI sequences, CT, or non-brain images.",
        "",
        "## Model",
        f"- Architecture: {m.get('variant') or 'unknown'} (preset {m.get('preset') or 'unknown'})",
        f"- Format: {m.get('format')}: {q.get('description', '')}",
        f"- Quantisation: {q.get('method', 'none')}; weights {q.get('weights', '?')}; "
        f"input/output {q.get('io_dtype', 'float32')}"
        + (f"; calibrated on {q['calibration']['scans']} training scans" if q.get("calibration")
           else ""),
        f"- Input: {m.get('input', {}).get('shape', [1, size, size, 1])} float32, "
        f"a {size}x{size} letterboxed slice, intensities mapped to [0, 1] by the "
        f"{pre.get('low_percentile')}/{pre.get('high_percentile')} percentiles of each scan",
        f"- Output: per-pixel sigmoid probability of tumour; tumour where probability >= "
        f"{m.get('threshold')}, components smaller than {m.get('min_area_fraction')} of the image "
        "dropped"
        + (f", and so are components whose highest probability is below "
           f"{m['min_peak_probability']}" if m.get("min_peak_probability") else ""),
        *([f"- Setting lowered for this format: "
           + ", ".join(f"{k} {v['asked']} -> {v['used']}" for k, v in m["setting_capped"].items()
                       if k != "reason")
           + f" ({m['setting_capped']['reason']}); the gate scored the bundle at the lowered "
           "setting"] if m.get("setting_capped") else []),
        f"- model.tflite sha256: {m.get('model_sha256', '(set when written)')}",
        "",
        "## Training data",
        f"- Dataset: {tr.get('dataset', 'unknown')}",
        f"- Patients: {tr.get('patients', '?')} in {tr.get('families', '?')} patient families; "
        f"tumour-free scans: {tr.get('tumour_free_scans', '?')}",
        f"- Split by patient family, seed {tr.get('split_seed', '?')}: "
        f"{tr.get('train_scans', '?')} scans in the training split, {tr.get('val_scans', '?')} "
        "in the validation split (tumour-free scans included in both)",
    ]
    if tr.get("recipe"):
        lines.append(f"- Training: {tr['recipe']}; checkpoint chosen by validation Dice")
    lines += [
        "",
        "## Evaluation",
    ]
    if metrics.get("gated"):
        lines += [
            f"Validation split: {(metrics.get('float') or {}).get('scans')} scans "
            f"({(metrics.get('float') or {}).get('tumour_scans')} with a tumour), masks scored at each scan's own "
            "resolution after post-processing. The Keras float32 model and this converted model "
            "(ai-edge-litert, XNNPACK) were scored on the same scans.",
            "",
            _metrics_table(metrics),
            "",
            f"Accuracy gate: {metrics['gate']['metric']} drop {metrics['gate']['drop']:.4f}, "
            f"allowed {metrics['gate']['max_drop']:.4f}: "
            + ("passed" if metrics["gate"]["passed"] else "FAILED (overridden with --allow-drop)"),
        ]
        if metrics.get("max_abs_prob_diff") is not None:
            lines.append(f"Largest probability difference from Keras: "
                         f"{metrics['max_abs_prob_diff']:.2e} (mean {metrics['mean_abs_prob_diff']:.2e}).")
    else:
        lines.append("**Not gated**: converted without the accuracy gate (`--no-gate`); the "
                     "converted model's accuracy was not measured.")
    if report:
        lines += ["", "### From the training report (report.json)", "",
                  "```json", json.dumps(report, indent=2, default=str)[:6000], "```"]
    lines += [
        "",
        "## Verified on",
        f"- XNNPACK: {xnn.get('delegated_nodes')} of {xnn.get('total_nodes')} nodes in "
        f"{xnn.get('partitions')} partition(s)"
        + (" (whole graph)" if xnn.get("whole_graph") else
           f"; not delegated: {', '.join(xnn.get('undelegated_ops') or []) or xnn.get('error')}"),
    ]
    for row in interp:
        if not isinstance(row, dict):   # the manifest schema also allows a bare package name
            row = {"package": str(row), "status": "verified"}
        lines.append(f"- {' '.join(filter(None, (row.get('package'), row.get('version'))))}: "
                     f"{row.get('status')}"
                     + (f" ({row['detail']})" if row.get("detail") else ""))
    lines += [
        "",
        "## Limits",
        "- Trained on one public dataset of 2-D T1-weighted contrast-enhanced slices (figshare, "
        "Cheng et al.): other scanners, sequences, orientations and populations may do worse.",
        "- Tumours can be missed and tumour-free scans can get a finding (see the rates above); "
        "findings smaller than the minimum area are dropped by design.",
        "- Validation scores come from held-out patients of the development data, not from an "
        "independent test set.",
        "- Quantised formats (drq, fp16, int8) change the probabilities slightly; the gate above "
        "bounds the change in Dice on the validation scans only.",
        "",
    ]
    return "\n".join(lines)


def recard(bundle_path, out_path, report=None):
    """Write ``out_path``: the bundle at ``bundle_path`` with its card rewritten from its own
    manifest (and ``report``, a report.json dict) -> the new ``Path``."""
    from edge_runtime.bundle import load_bundle, write_bundle
    out = Path(out_path)
    if out.exists():
        raise FileExistsError(f"{out}: already exists; a new card is written to a new bundle")
    bundle = load_bundle(bundle_path)
    manifest = dict(bundle.manifest)
    return write_bundle(out, bundle.model_bytes, manifest, model_card(manifest, report))


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m edge_seg.convert.card",
                                 description="Rewrite a bundle's MODEL_CARD.md from its manifest.")
    ap.add_argument("bundle")
    ap.add_argument("--report", default=None, help="the training run's report.json")
    ap.add_argument("--out", required=True, help="the new bundle (must not exist)")
    args = ap.parse_args(argv)
    from edge_runtime.errors import EdgeSegError
    try:
        report = json.loads(Path(args.report).read_text()) if args.report else None
        path = recard(args.bundle, args.out, report)
    except (EdgeSegError, FileExistsError, OSError, ValueError) as e:
        print(f"card: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
