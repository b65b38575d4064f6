"""The image-level "tumour present" decision of a bundle, per source: its ROC.

    python -m bench.gate_roc BUNDLE --run runs/robust_ft [--out bench/results] [--stem gate_roc]

A scan is called "tumour present" when any region survives the post-processing. Two rules
decide it, and each has an ROC per source: the **peak-probability gate** (a region is kept
when its highest probability is >= p; the score of a scan is the highest peak among its regions
of at least the bundle's smallest area) and the **smallest-area rule** (a region is kept when
it covers >= a of the scan; the score is the largest area among its regions that pass the
bundle's peak gate). Sensitivity is the share of a source's tumour scans called present (any
kept region, not necessarily on the tumour), the false-alarm rate the share of a source's
tumour-free scans called present. AUC: the probability that a tumour scan of source T
scores above a tumour-free scan of source F (ties count half), for every pair (T, F). All at
the bundle's threshold, from one pass (``edge_runtime.calibrate.gate_components``). Writes
``STEM.md`` and ``STEM.json``.
"""

import sys

import numpy as np

from bench.samples import make_parser, run_measurement

PROG = "bench.gate_roc"
PEAKS = (0.0, 0.5, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999, 0.9995, 0.9999)
AREAS = (0.0, 0.0005, 0.001, 0.002, 0.003, 0.004, 0.006, 0.01, 0.02)


def scan_scores(scan, threshold, min_area_fraction, min_peak):
    """-> (peak score, area score) of one scan (``gate_components`` entry)."""
    area, peak, _ = scan["components"][threshold]
    frac = area / scan["size"]
    big = frac >= min_area_fraction
    sure = peak >= min_peak
    return (float(peak[big].max()) if big.any() else 0.0,
            float(frac[sure].max()) if sure.any() else 0.0)


def auc(pos, neg):
    """P(score of a positive > score of a negative), ties counted half."""
    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    if not len(pos) or not len(neg):
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).mean()
    ties = (pos[:, None] == neg[None, :]).mean()
    return float(greater + 0.5 * ties)


def measure(bundle, samples, log, threads=None):
    from edge_runtime.calibrate import gate_components
    from edge_runtime.evaluate import predict_fn_for_interpreter, wilson_interval
    from edge_runtime.interpreter import make_interpreter
    t, a0, p0 = bundle.threshold, bundle.min_area_fraction, bundle.min_peak_probability
    log(f"{bundle.name}: {len(samples)} scans, threshold {t}")
    predict = predict_fn_for_interpreter(make_interpreter(bundle.model_bytes, threads))
    scans, failures = gate_components(samples, predict, bundle.preprocessing, [t])
    sources = {}
    for s in scans:
        kind = "tumour" if s["truth_px"] else "tumour_free"
        peak, area = scan_scores(s, t, a0, p0)
        entry = sources.setdefault(s["sample"].source or "unknown", {"kind": kind, "peak": [],
                                                                      "area": []})
        entry["peak"].append(peak)
        entry["area"].append(area)

    def curve(values, gates):
        v = np.asarray(values)
        return [{"gate": g, "called": int((v >= g).sum() if g > 0 else (v > 0).sum()),
                 "n": len(v), "rate": float((v >= g).mean() if g > 0 else (v > 0).mean()),
                 "ci95": wilson_interval(int((v >= g).sum() if g > 0 else (v > 0).sum()),
                                         len(v))} for g in gates]

    out = {"bundle": bundle.name, "threshold": t, "min_area_fraction": a0,
           "min_peak_probability": p0, "sources": {}, "auc": {}, "failures": failures}
    for name, e in sources.items():
        out["sources"][name] = {"kind": e["kind"], "n": len(e["peak"]),
                                "peak_gate": curve(e["peak"], PEAKS),
                                "area_rule": curve(e["area"], AREAS)}
    for tn, te in sources.items():
        for fn, fe in sources.items():
            if te["kind"] == "tumour" and fe["kind"] == "tumour_free":
                out["auc"][f"{tn} vs {fn}"] = {"peak_gate": auc(te["peak"], fe["peak"]),
                                               "area_rule": auc(te["area"], fe["area"])}
    return out


def render(result, scans):
    names = list(result["sources"])
    lines = [f"# Tumour-present decision of {result['bundle']}, per source", "",
             f"`{result.get('command', 'python -m ' + PROG)}`; {scans}. Threshold {result['threshold']}. Sensitivity: "
             f"tumour scans with any kept region; false alarms: tumour-free scans with any "
             f"kept region (95 % Wilson intervals in the JSON). Research software, not a "
             f"medical device.", ""]
    for rule, label, fixed in (
            ("peak_gate", "peak-probability gate p", f"smallest area "
             f"{result['min_area_fraction']} (the bundle's)"),
            ("area_rule", "smallest area a (share of the scan)", f"peak gate "
             f"{result['min_peak_probability']} (the bundle's)")):
        lines += [f"## {label}, at {fixed}", "",
                  "| gate | " + " | ".join(
                      f"{n} ({'sensitivity' if result['sources'][n]['kind'] == 'tumour' else 'false alarms'})"
                      for n in names) + " |",
                  "|---" * (len(names) + 1) + "|"]
        gates = [pt["gate"] for pt in result["sources"][names[0]][rule]]
        for i, g in enumerate(gates):
            lines.append(f"| {g:g} | " + " | ".join(
                f"{100 * result['sources'][n][rule][i]['rate']:.1f} %" for n in names) + " |")
        lines.append("")
    lines += ["## AUC (tumour scans of T above tumour-free scans of F)", "",
              "| T vs F | peak gate | area rule |", "|---|---|---|"]
    for pair, v in result["auc"].items():
        lines.append(f"| {pair} | {v['peak_gate']:.3f} | {v['area_rule']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = make_parser(PROG, __doc__)
    ap.add_argument("--stem", default="gate_roc")
    args = ap.parse_args(argv)
    command = f"python -m {PROG} " + " ".join(sys.argv[1:] if argv is None else argv)

    def run(b, s, log):
        return dict(measure(b, s, log, args.threads), command=command)
    return run_measurement(ap, args, PROG, run, render, args.stem)


if __name__ == "__main__":
    sys.exit(main())
