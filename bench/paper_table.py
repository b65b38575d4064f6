"""Rebuild the paper's table (and more) from whatever trained runs and bundles exist.

    python -m bench.paper_table --runs-dir runs --out bench/results \
        [--bundles DIR ...] [--kit bench/paper_kit | --no-kit] [--threads 1,2] [--runs 20] \
        [--warmup 3] [--evaluate [--eval-limit N]] [--no-bench] [--kit-runs]

For every run folder ``runs/NAME/`` (``config.json``: variant; ``report.json``: validation
metrics of the Keras model) and every bundle found under ``--runs-dir`` and ``--bundles``
(matched to its run by the manifest's ``source.run``), one row per variant x format
(keras, fp32, drq, fp16, int8): validation Dice and 2-class mIoU, the share of tumour-free
scans with a false alarm, size, latency at each thread count (measured now, all bundles in
turns in one run: ``edge_runtime.bench``), GFLOP, peak RSS, and size/speed ratios against
the same variant's fp32 model. A format with no bundle is shown as ``missing``, with why.

The committed device benchmark kit (``bench/paper_kit``, ``python -m bench.kit``) is read too:
its bundles fill their rows (a fresh clone has no ``runs/*/export``), the paper-size
references get rows of their own, and every model the kit lists as missing (or lists but
this copy lacks) gives its row the kit's reason and the command that would make it.

Accuracy comes from, in order: ``--evaluate`` (the bundle scored now on the run's whole
validation split with ``edge_runtime.evaluate``; cached by model hash), else the bundle
manifest's accuracy-gate numbers (``metrics.converted``; the gate's scans), else nothing.
The Keras row comes from ``report.json`` (or the gate's ``metrics.float``).

Writes ``paper_table.md``, ``paper_table.csv``, ``paper_table.json`` and
``accuracy_vs_latency.png`` (matplotlib, imported only here) into ``--out``.
"""

import argparse
import csv
import io
import json
import math
import sys
from pathlib import Path

from bench.paper import CITATION, PAPER_ROWS, paper_ratios
from edge_seg.train.recipe import training_recipe

ROW_FORMATS = ("keras", "fp32", "drq", "fp16", "int8")
CSV_FIELDS = ("run", "variant", "format", "status", "dice", "miou_2class", "fp_scan_rate",
              "accuracy_from", "size_mb", "latency_ms_t1", "latency_ms_t2", "latency_ms",
              "gflop", "rss_peak_mb", "size_ratio_vs_fp32", "speedup_vs_fp32", "path", "error")


def log(msg):
    print(f"paper_table: {msg}", file=sys.stderr, flush=True)


def _read_json(path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def _find(obj, *keys):
    """First value of any of ``keys`` in a nested dict (breadth first), or None."""
    queue = [obj]
    while queue:
        cur = queue.pop(0)
        if not isinstance(cur, dict):
            continue
        for k in keys:
            v = cur.get(k)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                return float(v)
        queue.extend(v for v in cur.values() if isinstance(v, dict))
    return None


# ----------------------------------------------------------------------------- discovery

def find_runs(runs_dir):
    """Run folders (with config.json) directly under ``runs_dir`` -> list of dicts."""
    runs = []
    root = Path(runs_dir)
    if not root.is_dir():
        return runs
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        cfg = _read_json(d / "config.json")
        if not isinstance(cfg, dict):
            continue
        keras_file = next((d / f for f in ("best.keras", "last.keras") if (d / f).is_file()),
                          None)
        runs.append({"name": d.name, "path": d, "variant": cfg.get("variant"),
                     "preset": cfg.get("preset"), "config": cfg,
                     "report": _read_json(d / "report.json"),
                     "state": _read_json(d / "state.json"), "keras": keras_file})
    return runs


def find_bundles(dirs):
    """Bundle zips under ``dirs`` (recursive) -> list of dicts (bundle or error)."""
    from edge_runtime.bundle import load_bundle
    seen, out = set(), []
    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            continue
        for path in sorted(d.rglob("*.zip")):
            key = path.resolve()
            if key in seen:
                continue
            seen.add(key)
            item = {"path": path, "bundle": None, "error": None}
            try:
                b = load_bundle(path)
                src = b.manifest.get("source") or {}
                item.update(bundle=b, format=b.format, variant=b.manifest.get("variant"),
                            run=src.get("run") if isinstance(src, dict) else None,
                            name=b.name)
            except Exception as exc:  # noqa: BLE001 - shown in the table, others go on
                item.update(error=" ".join(str(exc).split())[:200], format=None,
                            variant=None, run=None, name=path.stem)
            out.append(item)
    return out


def _run_of(item, runs):
    names = {r["name"] for r in runs}
    if item.get("run") in names:
        return item["run"]
    stem = item.get("name") or item["path"].stem
    for fmt in ROW_FORMATS:                               # "<run>_<fmt>" naming of convert
        if stem.endswith(f"_{fmt}") and stem[:-len(fmt) - 1] in names:
            return stem[:-len(fmt) - 1]
    parent = item["path"].resolve().parent
    for r in runs:
        if parent == r["path"].resolve() or r["path"].resolve() in parent.parents:
            return r["name"]
    return item.get("run") or f"(no run) {item.get('variant') or stem}"


# ----------------------------------------------------------------------------- accuracy

def accuracy_from_manifest(manifest, which="converted"):
    """The gate's accuracy recorded in a bundle manifest (``edge_runtime.kit``), labelled as
    this table always labelled it."""
    from edge_runtime.kit import accuracy_from_manifest as from_gate
    out = from_gate(manifest, which)
    if out is not None:
        scans = (manifest.get("metrics") or {}).get("scans")
        out["accuracy_from"] = f"gate ({scans} scans)" if scans else "gate"
    return out


REFERENCE_RUN = "paper-size reference (random weights)"


def kit_items(kit_dir):
    """The kit's present bundles as ``find_bundles`` items, and its missing entries ->
    (items, {(run, format): reason})."""
    from edge_runtime.kit import is_kit, load_kit
    if kit_dir is None or not is_kit(kit_dir):
        return [], {}
    kit = load_kit(kit_dir, materialize=True, log=log)
    items, missing = [], {}
    for m in kit.models:
        e = m.entry
        run = REFERENCE_RUN if m.role == "paper-reference" else e.get("run")
        if m.status == "ok":
            from edge_runtime.bundle import load_bundle
            b = load_bundle(m.path)
            src = b.manifest.get("source") if isinstance(b.manifest.get("source"), dict) else {}
            items.append({"path": m.path, "bundle": b, "error": None, "format": b.format,
                          "variant": b.manifest.get("variant"), "name": b.name,
                          "run": run or src.get("run"), "kit_role": m.role})
            continue
        why = f"kit: {m.reason}" + (f"; make it: {m.make}" if m.make else "")
        missing[(run or f"(no run) {e.get('variant') or m.id}", e.get("format"))] = (
            m.status, why, e.get("variant"))
    return items, missing


def accuracy_from_report(report):
    if not isinstance(report, dict):
        return None
    dice = _find(report, "dice_mean", "val_dice", "dice")
    miou = _find(report, "miou_2class_pooled", "miou_2class", "mean_iou")
    if dice is None and miou is None:
        return None
    return {"dice": dice, "miou_2class": miou,
            "fp_scan_rate": _find(report, "fp_scan_rate", "val_fp_scan_rate"),
            "accuracy_from": "report.json"}


def evaluate_now(item, run, out_dir, limit):
    """Score a bundle on its run's validation split (cached by model hash and limit)."""
    from edge_runtime.evaluate import evaluate_bundle, run_validation_samples
    b = item["bundle"]
    cache = Path(out_dir) / "eval_cache" / f"{b.sha256[:16]}_{limit or 'all'}.json"
    summary = _read_json(cache)
    if summary is None:
        samples, _info = run_validation_samples(run["path"])
        if limit and limit < len(samples):
            step = len(samples) / limit
            samples = [samples[int(i * step)] for i in range(limit)]
        log(f"evaluating {b.name} on {len(samples)} validation scans")
        result = evaluate_bundle(b, samples, threads=None)
        summary = {k: result.summary.get(k) for k in
                   ("dice_mean", "miou_2class_pooled", "fp_scan_rate", "n_scored")}
        from edge_runtime import atomic
        from edge_runtime.evaluate import to_json
        atomic.write_text(cache, to_json(summary), parents=True)
    return {"dice": summary.get("dice_mean"), "miou_2class": summary.get("miou_2class_pooled"),
            "fp_scan_rate": summary.get("fp_scan_rate"),
            "accuracy_from": f"eval ({summary.get('n_scored')} val scans)"}


# ----------------------------------------------------------------------------- the table

def build_table(runs_dir, out_dir, bundle_dirs=(), threads=(1, 2), runs=20, warmup=3,
                evaluate=False, eval_limit=None, bench=True, kit_dir=None, kit_runs=False):
    """``kit_runs``: only the runs the kit lists (the paper's variants, the shipped run and
    the paper-size reference), each with the formats the kit lists for it: the paper's table
    without the research runs whose bundles were never kept."""
    runs_list = find_runs(runs_dir)
    bundles = find_bundles([runs_dir, *bundle_dirs])
    kit_bundles, kit_missing = kit_items(kit_dir)
    have = {(b.get("run"), b.get("format")) for b in bundles}
    bundles += [b for b in kit_bundles if (b["run"], b["format"]) not in have]
    def run_of(item):
        return (item["run"] if item.get("kit_role") == "paper-reference"
                else _run_of(item, runs_list))

    kit_formats = None
    if kit_runs:
        kit_formats = {}
        for run, fmt in [(b["run"], b["format"]) for b in kit_bundles] + list(kit_missing):
            kit_formats.setdefault(run, set()).add(fmt)
        runs_list = [r for r in runs_list if r["name"] in kit_formats]
        bundles = [b for b in bundles if b.get("format") in kit_formats.get(run_of(b), ())]
    log(f"{len(runs_list)} run(s), {len(bundles)} bundle(s)"
        + (f" ({len(kit_bundles)} from the kit {kit_dir}, {len(kit_missing)} listed there as "
           "missing)" if kit_dir and (kit_bundles or kit_missing) else ""))
    by_run = {r["name"]: r for r in runs_list}
    groups = {r["name"]: {} for r in runs_list}
    for item in bundles:
        run = run_of(item)
        groups.setdefault(run, {})
        fmt = item.get("format") or f"? {item['path'].name}"
        groups[run].setdefault(fmt, item)
    for (run, fmt), (_status, _why, _variant) in kit_missing.items():
        groups.setdefault(run, {})                       # a row for each, even with no run

    report = None
    measured = [it for it in bundles if it["bundle"] is not None]
    if bench and measured:
        from edge_runtime.bench import run_benchmark
        log(f"benchmarking {len(measured)} bundle(s) at threads {list(threads)}, {runs} runs")
        report = run_benchmark([str(it["path"]) for it in measured], threads=threads,
                               runs=runs, warmup=warmup, memory=True, log=log)
    perf = {}
    for r in (report or {}).get("results", []):
        perf[(r["model"], r["threads"])] = r

    rows = []
    for run_name in sorted(groups):
        run = by_run.get(run_name)
        fmts = groups[run_name]
        variant = (run or {}).get("variant") or next(
            (it.get("variant") for it in fmts.values() if it.get("variant")), None)
        variant = variant or next((v for (r, _f), (_s, _w, v) in kit_missing.items()
                                   if r == run_name and v), None)
        listed = {f for (r, f) in kit_missing if r == run_name}
        if kit_formats is not None:
            listed |= kit_formats.get(run_name, set())
        names = ((list(ROW_FORMATS) if run is not None and kit_formats is None else
                  ["keras"] * (run is not None) + [f for f in ROW_FORMATS[1:]
                                                   if f in fmts or f in listed])
                 + sorted(f for f in fmts if f not in ROW_FORMATS))
        for fmt in names:
            row = {"run": run_name, "variant": variant, "format": fmt, "status": "missing"}
            if fmt != "keras" and fmt not in fmts:
                kit_status, why, _v = kit_missing.get((run_name, fmt), (None, None, None))
                row["status"] = "FAILED" if kit_status == "FAILED" else "missing"
                row["error"] = why or (f"no {fmt} bundle under {runs_dir}/{run_name}/export/, "
                                       "--bundles or the kit")
            if fmt == "keras":
                if run is None:
                    continue
                acc = accuracy_from_report(run["report"])
                if acc is None:
                    gated = next((it for it in fmts.values() if it.get("bundle")), None)
                    acc = accuracy_from_manifest(gated["bundle"].manifest, "float") \
                        if gated else None
                if run["keras"] is not None:
                    row.update(status="ok", path=str(run["keras"]),
                               size_mb=run["keras"].stat().st_size / 1e6)
                elif acc:
                    # nothing to time for Keras: its accuracy is the row, the checkpoint is
                    # git-ignored (a fresh clone has only the report)
                    row.update(status="report only",
                               error=f"accuracy from {runs_dir}/{run_name}/report.json; no "
                                     "checkpoint here (git-ignored)")
                else:
                    row["error"] = (f"no best.keras / last.keras in {runs_dir}/{run_name} "
                                    "(checkpoints are git-ignored)")
                row.update(acc or {})
                rows.append(row)
                continue
            item = fmts.get(fmt)
            if item is None:
                rows.append(row)
                continue
            row["path"] = str(item["path"])
            row["size_mb"] = item["path"].stat().st_size / 1e6
            if item["bundle"] is None:
                row.update(status="FAILED", error=item["error"])
                rows.append(row)
                continue
            row["status"] = "ok"
            acc = None
            if evaluate and run is not None:
                try:
                    acc = evaluate_now(item, run, out_dir, eval_limit)
                except Exception as exc:  # noqa: BLE001
                    row["error"] = f"eval failed: {' '.join(str(exc).split())[:150]}"
            row.update(acc or accuracy_from_manifest(item["bundle"].manifest) or {})
            for i, t in enumerate(threads):
                p = perf.get((str(item["path"]), t))
                if p is None:
                    continue
                if p["status"] != "ok":
                    row.update(status="FAILED", error=p["error"])
                    continue
                row[f"latency_ms_t{t}"] = p["p50_ms"]
                if i == 0:
                    row["latency_ms"] = p["p50_ms"]
                    row["gflop"] = p["gflop"]
                    row["rss_peak_mb"] = p["rss_peak_mb"]
            rows.append(row)
    _ratios(rows)
    return {"rows": rows, "variants": variants_summary(runs_list, rows),
            "breakdown": breakdown(runs_list), "threads": list(threads),
            "runs": runs,
            "machine": (report or {}).get("machine"), "bench_warnings":
            (report or {}).get("warnings", []), "paper": {"citation": CITATION,
                                                          "rows": list(PAPER_ROWS),
                                                          "ratios": paper_ratios()}}


def patient_intervals(run):
    """95 % intervals of a run's validation Dice and mIoU from a bootstrap over patients:
    its report's ``by_patient`` when the report has one, else recomputed from the per-scan
    rows the report saved (``val_scans.csv``) -> dict, or {} when neither exists."""
    from edge_runtime.evaluate import patient_summary, rows_from_csv
    rep = run.get("report") if isinstance(run.get("report"), dict) else {}
    by_patient = (rep.get("summary") or {}).get("by_patient")
    if not isinstance(by_patient, dict):
        csv_path = Path(run["path"]) / "val_scans.csv"
        if not csv_path.is_file():
            return {}
        by_patient = patient_summary(rows_from_csv(csv_path.read_text(encoding="utf-8")))
    boot = by_patient.get("bootstrap") or {}
    return {"n_patients": by_patient.get("n_patients"),
            "dice_ci95": boot.get("dice_mean_ci95"),
            "miou_ci95": boot.get("miou_2class_pooled_ci95"),
            "patients_dice_below_0_5": by_patient.get("patients_dice_below_0_5")}


def variants_summary(runs_list, rows):
    """One line per run: recipe, post-processing chosen on validation, Keras accuracy, and
    the DRQ bundle's size, latency and Dice drop (the row to compare variants on)."""
    out = []
    for run in runs_list:
        rep = run.get("report") if isinstance(run.get("report"), dict) else {}
        keras = next((r for r in rows if r["run"] == run["name"] and r["format"] == "keras"), {})
        drq = next((r for r in rows if r["run"] == run["name"] and r["format"] == "drq"), {})
        ok = drq.get("status") == "ok"
        out.append({
            "run": run["name"], "variant": run.get("variant"),
            "training": (training_recipe(run.get("config"), run["state"])
                         if run.get("state") is not None else
                         training_recipe(run.get("config")) + ", no epoch finished yet"),
            "threshold": rep.get("threshold"), "min_area_fraction": rep.get("min_area_fraction"),
            "min_peak_probability": rep.get("min_peak_probability"),
            "dice": keras.get("dice"), "miou_2class": keras.get("miou_2class"),
            "fp_scan_rate": keras.get("fp_scan_rate"),
            "drq_size_mb": drq.get("size_mb") if ok else None,
            "drq_ms": drq.get("latency_ms") if ok else None,
            "drq_dice_drop": drq.get("dice_drop") if ok else None,
            **patient_intervals(run)})
    return out


def breakdown(runs_list):
    """Per tumour class and tumour-free rows from each run's report.json (the Keras model at
    the post-processing chosen on validation) -> list of dicts."""
    out = []
    for run in runs_list:
        rep = run.get("report")
        summary = rep.get("summary") if isinstance(rep, dict) else None
        if not isinstance(summary, dict):
            continue
        groups = [("all tumour scans", summary.get("tumour") or {})]
        groups += sorted((summary.get("by_class") or {}).items())
        for name, g in groups:
            out.append({"run": run["name"], "group": name, "n": g.get("n"),
                        "dice": g.get("dice_mean"), "iou": g.get("iou_mean"),
                        "miou_2class": g.get("miou_2class_pooled"),
                        "hd95_mm": g.get("hd95_mm_median"),
                        "missed": g.get("missed_scans")})
        free = summary.get("tumour_free") or {}
        if free.get("n"):
            out.append({"run": run["name"], "group": "tumour-free scans", "n": free.get("n"),
                        "fp_scans": free.get("fp_scans"),
                        "fp_scan_rate": free.get("fp_scan_rate")})
    return out


def _ratios(rows):
    base = {(r["run"]): r for r in rows if r["format"] == "fp32" and r["status"] == "ok"}
    for r in rows:
        b = base.get(r["run"])
        if not b or r["status"] != "ok" or r["format"] == "keras":
            continue
        if b.get("size_mb") and r.get("size_mb"):
            r["size_ratio_vs_fp32"] = b["size_mb"] / r["size_mb"]
        if b.get("latency_ms") and r.get("latency_ms"):
            r["speedup_vs_fp32"] = b["latency_ms"] / r["latency_ms"]


# ----------------------------------------------------------------------------- rendering

def _f(v, digits=3):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _ci(interval):
    if not interval or any(v is None or not math.isfinite(v) for v in interval):
        return ""
    return f" [{interval[0]:.3f}, {interval[1]:.3f}]"


def render_markdown(table):
    t = table["threads"]
    lat_cols = [f"ms @{n}T" for n in t]
    head = (["run", "variant", "format", "status", "val Dice", "val mIoU (2-class)",
             "FP-scan rate", "accuracy from", "size MB"] + lat_cols
            + ["GFLOP", "peak RSS MB", "size x", "speed x", "note"])
    lines = ["# edge-seg: the paper's table, rebuilt", "",
             "Accuracy: mean per-scan Dice over validation scans with a tumour; 2-class mIoU is "
             "`keras.metrics.MeanIoU(num_classes=2)` pooled over every pixel of those scans "
             "(the paper's metric); FP-scan rate: tumour-free validation scans with any "
             "predicted tumour. Latency: median ms per inference (p50), all bundles timed "
             f"in turns in one run ({table['runs']} runs); `size x`/`speed x`: vs the same "
             "variant's fp32 bundle at the first thread count.", ""]
    m = table.get("machine")
    if m:
        isa = f", {' '.join(s.replace(' ', '-') for s in m['isa'])}" if m.get("isa") else ""
        lines += [f"Machine: {m['cpu']}, {m['arch']}{isa}, {m['cores_usable']} cores, governor "
                  f"{m.get('governor') or 'unreadable'}, Python {m['python']}, "
                  f"{m.get('interpreter')} {m.get('interpreter_version')}.", ""]
    n_missing = sum(r["status"] == "missing" for r in table["rows"])
    if n_missing:
        lines += [f"{n_missing} row(s) `missing`: the note says why and, where known, the "
                  "command that would make the model.", ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table["rows"]:
        cells = [r["run"], _f(r.get("variant")), r["format"], r["status"], _f(r.get("dice")),
                 _f(r.get("miou_2class")), _f(r.get("fp_scan_rate")),
                 _f(r.get("accuracy_from")), _f(r.get("size_mb"), 2)]
        cells += [_f(r.get(f"latency_ms_t{n}"), 1) for n in t]
        cells += [_f(r.get("gflop"), 2), _f(r.get("rss_peak_mb"), 0),
                  _f(r.get("size_ratio_vs_fp32"), 2), _f(r.get("speedup_vs_fp32"), 2),
                  (r.get("error") or "").replace("|", "/")]
        lines.append("| " + " | ".join(cells) + " |")
    if not table["rows"]:
        lines.append("| (no runs or bundles found) |" + " |" * (len(head) - 1))
    if table.get("variants"):
        lines += ["", "## The variants side by side", "",
                  "One line per training run: its recipe, the post-processing chosen on its "
                  "validation split (threshold / smallest area as a share of the image / "
                  "smallest peak probability of a kept region), the Keras model's validation "
                  "numbers (report.json) and its DRQ bundle (size, latency at "
                  f"{t[0]} thread(s), Dice drop measured by the conversion gate). Runs with "
                  "the same recipe compare architectures; a fine-tuned run had more training. "
                  "In brackets: 95 % intervals from a bootstrap over validation patients "
                  "(whole patients resampled: their slices are not independent); runs whose "
                  "intervals overlap this much are not shown to differ.",
                  "",
                  "| run | variant | training | post-processing | val Dice | val mIoU (2-class) "
                  "| FP-scan rate | DRQ MB | DRQ ms | DRQ Dice drop |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for v in table["variants"]:
            post = (f"{_f(v.get('threshold'), 2)} / {_f(v.get('min_area_fraction'), 4)} / "
                    f"{_f(v.get('min_peak_probability') or 0.0, 2)}"
                    if v.get("threshold") is not None else "-")
            lines.append(f"| {v['run']} | {_f(v.get('variant'))} | {v['training']} | {post} | "
                         f"{_f(v.get('dice'))}{_ci(v.get('dice_ci95'))} | "
                         f"{_f(v.get('miou_2class'))}{_ci(v.get('miou_ci95'))} | "
                         f"{_f(v.get('fp_scan_rate'))} | {_f(v.get('drq_size_mb'), 2)} | "
                         f"{_f(v.get('drq_ms'), 1)} | {_f(v.get('drq_dice_drop'), 4)} |")
    if table.get("breakdown"):
        lines += ["", "## Per tumour class and on scans without a tumour", "",
                  "Validation patients of each run, Keras model, full resolution, at the "
                  "threshold and minimum area chosen on validation (report.json). HD95: median "
                  "95th-percentile Hausdorff distance in mm (scans with a known pixel spacing). "
                  "Missed: tumour scans with no predicted tumour.", "",
                  "| run | scans | n | Dice | IoU | mIoU (2-class) | HD95 mm | missed | "
                  "flagged as tumour |", "|---|---|---|---|---|---|---|---|---|"]
        for b in table["breakdown"]:
            flagged = (f"{b['fp_scans']} ({100 * b['fp_scan_rate']:.1f} %)"
                       if b.get("fp_scans") is not None else "")
            lines.append(f"| {b['run']} | {b['group']} | {_f(b.get('n'))} | "
                         f"{_f(b.get('dice'))} | {_f(b.get('iou'))} | "
                         f"{_f(b.get('miou_2class'))} | {_f(b.get('hd95_mm'), 1)} | "
                         f"{_f(b.get('missed'))} | {flagged} |")
    p = table["paper"]
    lines += ["", f"## The paper's numbers ({p['citation']})", "",
              "Their hardware and split, not ours: compare ratios, not absolute times.", "",
              "| model | format | mIoU (2-class) | size MB | s per image |", "|---|---|---|---|---|"]
    for r in p["rows"]:
        lat = r["latency_ms"] / 1000 if r["latency_ms"] is not None else None
        lines.append(f"| {r['label']} | {r['format']} | {_f(r['miou_2class'])} | "
                     f"{_f(r['size_mb'], 0)} | {_f(lat, 4)} |")
    ratios = p["ratios"]
    lines += ["", f"Paper DRQ vs float: {ratios['size_ratio']:.2f}x smaller, "
                  f"{ratios['speedup']:.2f}x faster."]
    ours = [r for r in table["rows"] if r["format"] == "drq" and r.get("size_ratio_vs_fp32")]
    for r in ours:
        lines.append(f"Ours ({r['run']}) DRQ vs fp32: {r['size_ratio_vs_fp32']:.2f}x smaller, "
                     f"{_f(r.get('speedup_vs_fp32'), 2)}x faster at {t[0]} thread(s).")
    for w in table.get("bench_warnings") or ():
        lines.append(f"\n> benchmark warning: {w}")
    return "\n".join(lines) + "\n"


def render_csv(table):
    fields = list(CSV_FIELDS)
    for n in table["threads"]:
        if f"latency_ms_t{n}" not in fields:
            fields.insert(fields.index("latency_ms"), f"latency_ms_t{n}")
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    w.writeheader()
    for r in table["rows"]:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in fields})
    for p in table["paper"]["rows"]:
        w.writerow({"run": f"paper: {table['paper']['citation']}", "variant": p["variant"],
                    "format": p["format"], "status": "reported",
                    "miou_2class": "" if p["miou_2class"] is None else p["miou_2class"],
                    "size_mb": p["size_mb"], "latency_ms": p["latency_ms"],
                    "accuracy_from": "paper"})
    return buf.getvalue()


FORMAT_COLOURS = {"keras": "tab:gray", "fp32": "tab:blue", "drq": "tab:orange",
                  "fp16": "tab:green", "int8": "tab:red"}


def _marker(size_mb):
    """Marker area in points^2, proportional to model size (clipped to stay readable)."""
    return min(30 + 4 * float(size_mb), 800)


def plot(table, path):
    """Accuracy (mIoU, else Dice) vs latency at the first thread count; marker area ~ size."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed: no plot (pip install matplotlib)")
        return None
    pts = [r for r in table["rows"] if r.get("latency_ms") and
           (r.get("miou_2class") is not None or r.get("dice") is not None)]
    use_miou = any(r.get("miou_2class") is not None for r in pts) or not pts
    key = "miou_2class" if use_miou else "dice"
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in pts:
        if r.get(key) is None:
            continue
        size = max(r.get("size_mb") or 1.0, 0.1)
        ax.scatter(r["latency_ms"], r[key], s=_marker(size), alpha=0.6,
                   color=FORMAT_COLOURS.get(r["format"], "tab:purple"), edgecolors="k")
        ax.annotate(f"{r['run']} {r['format']}", (r["latency_ms"], r[key]), fontsize=7,
                    xytext=(4, 4), textcoords="offset points")
    for p in table["paper"]["rows"]:
        if p["miou_2class"] is not None and use_miou:
            ax.scatter(p["latency_ms"], p["miou_2class"], marker="*", s=_marker(p["size_mb"]),
                       color="gold", edgecolors="k")
            ax.annotate(f"paper {p['format']} (their hardware)",
                        (p["latency_ms"], p["miou_2class"]), fontsize=7, xytext=(4, -10),
                        textcoords="offset points")
    for fmt, colour in FORMAT_COLOURS.items():
        ax.scatter([], [], color=colour, label=fmt)
    ax.legend(fontsize=7, loc="lower right")
    if ax.collections and any(len(c.get_offsets()) for c in ax.collections):
        ax.set_xscale("log")
    ax.set_xlabel(f"latency, ms per scan (p50, {table['threads'][0]} thread(s))")
    ax.set_ylabel("validation 2-class mIoU" if use_miou else "validation Dice (mean per scan)")
    ax.set_title("Accuracy vs latency (marker area ~ model size)")
    if not pts:
        ax.text(0.5, 0.92, "no measured models yet", transform=ax.transAxes, ha="center")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    from edge_runtime import atomic
    path = Path(path)
    try:
        with atomic.replacing(path, ".png") as tmp:
            fig.savefig(tmp, dpi=120)
    finally:
        plt.close(fig)
    return path


def write_outputs(table, out_dir):
    from edge_runtime import atomic
    from edge_runtime.evaluate import to_json
    out = Path(out_dir)
    paths = [atomic.write_text(out / "paper_table.md", render_markdown(table), parents=True),
             atomic.write_text(out / "paper_table.csv", render_csv(table), parents=True),
             atomic.write_text(out / "paper_table.json", to_json(table), parents=True)]
    png = plot(table, out / "accuracy_vs_latency.png")
    return paths + ([png] if png else [])


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.paper_table",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs-dir", default="runs", help="folder of training runs")
    parser.add_argument("--out", default="bench/results", help="output folder")
    parser.add_argument("--bundles", action="append", default=[],
                        help="more folders with bundle zips (repeatable)")
    parser.add_argument("--threads", default="1,2", help="thread counts, comma separated")
    parser.add_argument("--runs", type=int, default=20, help="timed inferences per model")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--evaluate", action="store_true",
                        help="score every bundle now on its run's validation split")
    parser.add_argument("--eval-limit", type=int, default=None,
                        help="with --evaluate: at most N validation scans (evenly spaced)")
    parser.add_argument("--no-bench", action="store_true", help="skip latency measurement")
    parser.add_argument("--kit", default="bench/paper_kit",
                        help="a device benchmark kit whose bundles and missing entries fill "
                             "the table (default %(default)s, when it exists)")
    parser.add_argument("--no-kit", action="store_true", help="do not read a kit")
    parser.add_argument("--kit-runs", action="store_true",
                        help="only the runs the kit lists, with the formats it lists: the "
                             "paper's table without the research runs")
    args = parser.parse_args(argv)
    try:
        threads = [int(t) for t in args.threads.split(",") if t.strip()]
        if not threads or min(threads) < 1:
            raise ValueError
    except ValueError:
        parser.error(f"--threads must be positive integers separated by commas, "
                     f"got {args.threads!r}")
    if args.runs < 1:
        parser.error(f"--runs must be >= 1, got {args.runs}")
    from edge_runtime.errors import EdgeSegError
    try:
        table = build_table(args.runs_dir, args.out, args.bundles, threads, args.runs,
                            args.warmup, args.evaluate, args.eval_limit, not args.no_bench,
                            kit_dir=None if args.no_kit else args.kit,
                            kit_runs=args.kit_runs and not args.no_kit)
    except EdgeSegError as exc:
        print(f"paper_table: {exc}", file=sys.stderr)
        return exc.exit_code
    try:
        for p in write_outputs(table, args.out):
            print(p)
    except OSError as exc:
        print(f"paper_table: {args.out}: cannot write results ({exc.strerror or exc})",
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
