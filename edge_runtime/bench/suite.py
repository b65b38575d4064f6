"""``edge-seg bench KIT --suite paper``: every model of a benchmark kit measured in one run,
written as the paper's table (Markdown, CSV, JSON and, with matplotlib, a plot).

Per kit entry one row: accuracy and the conversion's Dice drop as the bundle's own gate
recorded them (none for the random-weight references), size, GFLOP per scan, p50 / p90 ms
and peak RSS at each thread count (all present models timed in turns by
``edge_runtime.bench.timing.run_benchmark``), and the speed-up and size ratio against the
paper-size Res-UNet+AG DRQ reference measured in the same run. A model the kit lacks, or whose
file fails its checks, gets a row that says so and why; nothing is left out silently.
"""

import csv
import io
import json
import math
from pathlib import Path

from edge_runtime.bench.render import _fmt
from edge_runtime.kit import accuracy_from_manifest, load_kit

OUTPUT_STEM = "kit_paper"
ROLE_LABELS = {"shipped": "shipped", "variant": "variant", "paper-reference": "paper-size ref."}
NOT_A_DEVICE = ("Research software, **not a medical device**: the accuracy columns are "
                "validation numbers recorded when each bundle was converted, not a clinical "
                "claim.")


def _one_line(exc):
    return (" ".join(str(exc).split()) or type(exc).__name__)[:300]


def shown_path(path):
    """A path as a reader can retype it: relative to the current folder when inside it, else
    with the home folder as ``~`` (no machine-specific prefix in a committed results file)."""
    p = Path(path).resolve()
    for base, prefix in ((Path.cwd().resolve(), ""), (Path.home().resolve(), "~/")):
        try:
            return prefix + str(p.relative_to(base))
        except ValueError:
            continue
    return str(p)


def _reference(rows):
    """The row every ratio is taken against: the paper-size DRQ reference, else any measured
    paper-size reference, else None."""
    refs = [r for r in rows if r["role"] == "paper-reference" and r["status"] == "ok"]
    return next((r for r in refs if r.get("format") == "drq"), refs[0] if refs else None)


def run_paper_suite(kit_dir, threads=(1, 2), runs=20, warmup=3, image=None, memory=True,
                    sgemm=True, log=None):
    """Measure every present model of the kit at ``kit_dir`` -> the table (dict: ``suite``,
    ``kit``, ``host``, ``settings``, ``sgemm``, ``reference``, ``rows``, ``warnings``).
    Raises KitError when ``kit_dir`` is not a readable kit."""
    from edge_runtime.bench.machine import machine_info, machine_warnings
    from edge_runtime.bench.timing import run_benchmark
    from edge_runtime.bundle import load_bundle
    log = log or (lambda _msg: None)
    threads = [int(t) for t in threads]
    kit = load_kit(kit_dir, materialize=True, log=log)
    present = [m for m in kit.models if m.status == "ok"]
    log(f"kit {kit_dir}: {len(kit.models)} model(s), {len(present)} present, "
        f"{sum(m.status == 'missing' for m in kit.models)} missing, "
        f"{sum(m.status == 'FAILED' for m in kit.models)} failed its checks")
    report = None
    if present:
        report = run_benchmark([str(m.path) for m in present], threads=threads, runs=runs,
                               warmup=warmup, image=image, memory=memory, sgemm=sgemm, log=log)
    machine = report["machine"] if report else machine_info()
    perf = {(r["model"], r["threads"]): r for r in (report or {}).get("results", [])}
    rows = []
    for m in kit.models:
        e = m.entry
        row = {"id": m.id, "role": m.role, "name": e.get("name") or m.id,
               "variant": e.get("variant"), "preset": e.get("preset"), "format": e.get("format"),
               "weights": e.get("weights"), "status": m.status, "file": e.get("file"),
               "accuracy_from": e.get("accuracy_from"), "parameters": e.get("parameters"),
               "gflop": e.get("gflop"), "reason": m.reason, "make": m.make}
        if m.path is not None and m.path.is_file():
            row["size_mb"] = m.path.stat().st_size / 1e6
        if m.status == "ok":
            try:
                manifest = load_bundle(m.path).manifest
            except Exception as exc:  # noqa: BLE001 - checked by load_kit; keep going
                row.update(status="FAILED", reason=_one_line(exc))
                rows.append(row)
                continue
            acc = accuracy_from_manifest(manifest)
            if acc:
                row.update({k: v for k, v in acc.items() if k != "accuracy_from"})
                row["accuracy_from"] = acc["accuracy_from"]
            elif row["role"] == "paper-reference":
                row["accuracy_from"] = "none: random weights, speed and size only"
            for t in threads:
                p = perf.get((str(m.path), t))
                if p is None:
                    continue
                if p["status"] != "ok":
                    row.update(status="FAILED", reason=p.get("error") or "failed")
                    continue
                row["gflop"] = p.get("gflop") if p.get("gflop") is not None else row["gflop"]
                row[f"p50_ms_t{t}"] = p.get("p50_ms")
                row[f"p90_ms_t{t}"] = p.get("p90_ms")
                row[f"gflops_t{t}"] = p.get("gflops_achieved")
                row[f"rss_peak_mb_t{t}"] = p.get("rss_peak_mb")
        rows.append(row)
    ref = _reference(rows)
    for row in rows:
        if ref is None or row["status"] != "ok":
            continue
        if row.get("size_mb") and ref.get("size_mb"):
            row["size_ratio_vs_ref"] = ref["size_mb"] / row["size_mb"]
        for t in threads:
            mine, theirs = row.get(f"p50_ms_t{t}"), ref.get(f"p50_ms_t{t}")
            if mine and theirs:
                row[f"speedup_vs_ref_t{t}"] = theirs / mine
    warnings = list((report or {}).get("warnings") or machine_warnings(machine))
    if ref is None:
        warnings.append("no paper-size reference measured in this run: speed-up and size "
                        "ratio columns are empty (see its row for why)")
    settings = dict((report or {}).get("settings") or {"threads": threads, "runs": runs,
                                                       "warmup": warmup,
                                                       "memory": bool(memory)})
    kit_info = {"path": shown_path(kit_dir), "created": kit.manifest.get("created"),
                "note": kit.manifest.get("note"), "entries": len(kit.models)}
    return {"suite": "paper", "kit": kit_info,
            "host": machine, "settings": settings,
            "sgemm": (report or {}).get("sgemm"), "reference": ref["id"] if ref else None,
            "rows": rows, "warnings": warnings}


# ----------------------------------------------------------------------------- rendering

def host_lines(table):
    """The host, in words: CPU, ISA features, interpreter and version, threads, ..."""
    m, s = table["host"], table["settings"]
    isa = ", ".join(m.get("isa") or ()) or "unknown (no /proc/cpuinfo flags)"
    dot = {True: "yes", False: "no", None: "unknown"}[m.get("int8_dot")]
    sg = table.get("sgemm") or {}
    return [
        f"- CPU: {m.get('cpu')} ({m.get('arch')}), {m.get('cores_usable')} of "
        f"{m.get('cores_logical')} cores usable, governor {m.get('governor') or 'unreadable'}, "
        f"{m.get('memory_gb')} GB",
        f"- ISA features: {isa}; int8 dot product: {dot}",
        f"- interpreter: {m.get('interpreter')} {m.get('interpreter_version')}; Python "
        f"{m.get('python')}, numpy {m.get('numpy')}; {m.get('os')}",
        f"- threads: {', '.join(map(str, s.get('threads') or ()))}; {s.get('runs')} timed runs "
        f"after {s.get('warmup')} warm-up per model and thread count, all models in turns; "
        f"input: {s.get('input', 'uniform random [0, 1)')}; load average at start "
        f"{_fmt(m.get('load_avg_1min'), 2)}"
        + (f"; fp32 sgemm ceiling (1 thread) {sg['gflops']:.1f} GFLOP/s" if sg.get("gflops")
           else ""),
    ]


def _cols(table):
    """(header, key, digits) of the Markdown table."""
    t = table["settings"]["threads"]
    cols = [("role", "role", None), ("model", "name", None), ("variant", "variant", None),
            ("format", "format", None), ("status", "status", None), ("Dice", "dice", 3),
            ("mIoU (2-class)", "miou_2class", 3), ("flagged", "fp_scan_rate", 3),
            ("Dice drop", "dice_drop", 4), ("MB", "size_mb", 2),
            ("× smaller", "size_ratio_vs_ref", 1), ("GFLOP", "gflop", 2)]
    for n in t:
        cols += [(f"p50 ms @{n}T", f"p50_ms_t{n}", 1), (f"p90 ms @{n}T", f"p90_ms_t{n}", 1),
                 (f"× faster @{n}T", f"speedup_vs_ref_t{n}", 1)]
    cols += [(f"GFLOP/s @{t[0]}T", f"gflops_t{t[0]}", 1),
             (f"peak RSS MB @{t[0]}T", f"rss_peak_mb_t{t[0]}", 0)]
    return cols


def _cell(row, key, digits):
    v = row.get(key)
    if key == "role":
        return ROLE_LABELS.get(v, v or "-")
    if key == "status" and v == "ok" and row.get("weights") == "random":
        return "ok (random weights)"
    return _fmt(v, digits) if digits is not None else _fmt(v)


def render_markdown(table, command=None):
    t = table["settings"]["threads"]
    ref = next((r for r in table["rows"] if r["id"] == table.get("reference")), None)
    rows = table["rows"]
    n_ok = sum(r["status"] == "ok" for r in rows)
    lines = ["# edge-seg: the paper's table, measured on this machine", "",
             f"> {NOT_A_DEVICE}", "", "Host:", *host_lines(table), "",
             f"Kit: `{table['kit']['path']}` (made {table['kit'].get('created')}): "
             f"{len(rows)} model(s), {n_ok} measured, "
             f"{sum(r['status'] == 'missing' for r in rows)} missing, "
             f"{sum(r['status'] == 'FAILED' for r in rows)} failed."]
    if command:
        lines += ["", f"Command: `{command}`"]
    lines += ["", "Accuracy (Dice: mean per scan over validation scans with a tumour; 2-class "
              "mIoU pooled over their pixels, the paper's metric; flagged: share of tumour-free "
              "validation scans with any predicted tumour; Dice drop: float model minus this "
              "bundle) comes from each bundle's own conversion gate; the paper-size reference "
              "has random weights and no accuracy. Latency: interpreter only "
              "(set_tensor + invoke + get_tensor), p50 / p90 over the timed runs. "
              + (f"`× smaller` / `× faster`: the paper-size reference `{ref['name']}` "
                 f"({ref['format']}) divided by this model, measured in the same run."
                 if ref else "No paper-size reference was measured: no ratios."), ""]
    cols = _cols(table)
    lines.append("| " + " | ".join(h for h, _k, _d in cols) + " | note |")
    lines.append("|" + "---|" * (len(cols) + 1))
    for r in rows:
        note = r.get("reason") or ""
        if r["status"] != "ok" and r.get("make"):
            note += f"; make it: `{r['make']}`"
        if r["status"] == "ok" and r.get("accuracy_from"):
            note = f"accuracy: {r['accuracy_from']}"
        note = note.replace("|", "/")
        lines.append("| " + " | ".join(_cell(r, k, d) for _h, k, d in cols) + f" | {note} |")
    arith = [r for r in rows if r["status"] == "ok" and r.get("gflop")]
    if arith:
        lines += ["", f"Arithmetic at {t[0]} thread(s): "
                  + "; ".join(f"{r['name']} {r['gflop']:.2f} GFLOP per scan at "
                              f"{_fmt(r.get(f'gflops_t{t[0]}'), 1)} GFLOP/s" for r in arith)
                  + ". A board's time per scan is at least GFLOP per scan / its peak GFLOP/s "
                    "(docs/BENCH.md)."]
    if table.get("plot"):
        lines += ["", f"Plot: {table['plot']}"]
    for w in table.get("warnings") or ():
        lines.append(f"\n> warning: {w}")
    return "\n".join(lines) + "\n"


def csv_fields(table):
    fields = ["id", "role", "name", "variant", "preset", "format", "weights", "status", "dice",
              "miou_2class", "fp_scan_rate", "dice_drop", "accuracy_from", "size_mb",
              "size_ratio_vs_ref", "parameters", "gflop"]
    for n in table["settings"]["threads"]:
        fields += [f"p50_ms_t{n}", f"p90_ms_t{n}", f"speedup_vs_ref_t{n}", f"gflops_t{n}",
                   f"rss_peak_mb_t{n}"]
    fields += ["reason", "make", "file", "host_cpu", "host_arch", "host_isa", "interpreter",
               "interpreter_version", "python"]
    return fields


def render_csv(table):
    m = table["host"]
    host = {"host_cpu": m.get("cpu"), "host_arch": m.get("arch"),
            "host_isa": " ".join(s.replace(" ", "-") for s in m.get("isa") or ()),
            "interpreter": m.get("interpreter"),
            "interpreter_version": m.get("interpreter_version"), "python": m.get("python")}
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=csv_fields(table), extrasaction="ignore",
                       lineterminator="\n")
    w.writeheader()
    for r in table["rows"]:
        out = {**r, **host}
        w.writerow({k: "" if out.get(k) is None or (isinstance(out.get(k), float)
                                                    and not math.isfinite(out[k]))
                    else out[k] for k in w.fieldnames})
    return buf.getvalue()


def render_json(table):
    return json.dumps(table, indent=2, default=str) + "\n"


def plot_png(table):
    """The table as a PNG (bytes), or (None, why) when matplotlib is not installed:
    left, p50 latency per model and thread count (log scale); right, Dice against p50 latency
    at the first thread count for the models with a recorded accuracy."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None, ("skipped: matplotlib is not installed (pip install 'edge-seg[plot]' "
                      "or pip install matplotlib); the Markdown, CSV and JSON hold every number")
    t = table["settings"]["threads"]
    rows = [r for r in table["rows"] if r["status"] == "ok"]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 0.5 * max(len(table["rows"]), 4) + 1.5))
    labels = [f"{r['name']} ({r.get('format') or '?'})" for r in table["rows"]]
    height = 0.8 / max(len(t), 1)
    for j, n in enumerate(t):
        ys = [i + j * height for i in range(len(table["rows"]))]
        xs = [r.get(f"p50_ms_t{n}") or 0 for r in table["rows"]]
        ax.barh(ys, xs, height=height, label=f"{n} thread(s)")
    for i, r in enumerate(table["rows"]):
        if r["status"] != "ok":
            ax.text(0.01, i, f" {r['status']}", transform=ax.get_yaxis_transform(),
                    va="center", fontsize=7, color="tab:red")
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(labels))], labels, fontsize=7)
    ax.invert_yaxis()
    if any(r.get(f"p50_ms_t{n}") for r in rows for n in t):
        ax.set_xscale("log")
    ax.set_xlabel("p50 ms per scan (interpreter)")
    ax.legend(fontsize=7)
    ax.grid(True, axis="x", which="both", alpha=0.3)
    pts = [r for r in rows if r.get("dice") is not None and r.get(f"p50_ms_t{t[0]}")]
    for r in pts:
        ax2.scatter(r[f"p50_ms_t{t[0]}"], r["dice"], s=30 + 8 * (r.get("size_mb") or 1),
                    alpha=0.6, edgecolors="k")
        ax2.annotate(f"{r['name']} ({r['format']})", (r[f"p50_ms_t{t[0]}"], r["dice"]),
                     fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax2.set_xlabel(f"p50 ms at {t[0]} thread(s)")
    ax2.set_ylabel("validation Dice (the bundle's gate)")
    ax2.set_title("accuracy vs latency (marker area ~ size)", fontsize=9)
    if not pts:
        ax2.text(0.5, 0.5, "no model with a recorded accuracy", ha="center",
                 transform=ax2.transAxes)
    ax2.grid(True, alpha=0.3)
    m = table["host"]
    fig.suptitle(f"{m.get('cpu')} ({', '.join(m.get('isa') or ()) or m.get('arch')}); "
                 f"{m.get('interpreter')} {m.get('interpreter_version')}. Not a medical device.",
                 fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue(), None


def write_suite(table, out_dir, command=None, plot=True):
    """Write ``kit_paper.md``, ``.csv``, ``.json`` and (with matplotlib) ``.png`` into
    ``out_dir``, all or none (``edge_runtime.atomic.write_many``) -> paths."""
    from edge_runtime.atomic import write_many
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    if plot:
        png, why = plot_png(table)
        if png is not None:
            files[out / f"{OUTPUT_STEM}.png"] = png
            table["plot"] = f"{OUTPUT_STEM}.png"
        else:
            table["plot"] = why
    else:
        table["plot"] = "skipped (--no-plot)"
    files[out / f"{OUTPUT_STEM}.md"] = render_markdown(table, command).encode("utf-8")
    files[out / f"{OUTPUT_STEM}.csv"] = render_csv(table).encode("utf-8")
    files[out / f"{OUTPUT_STEM}.json"] = render_json(table).encode("utf-8")
    return write_many(files)
