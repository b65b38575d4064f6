"""A benchmark report rendered: the plain-text table, JSON and CSV."""

import math

from edge_runtime.bench.timing import RESULT_FIELDS


def _fmt(v, digits=1):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, float) and 0 < abs(v) < 10 ** -digits * 10:
        return f"{v:.2g}"                    # small values keep two significant digits
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def machine_line(report):
    m, sg = report["machine"], report.get("sgemm") or {}
    cores = f"{m['cores_usable']}/{m['cores_logical']} cores"
    gov = m.get("governor") or "unreadable"
    sgemm = (f"sgemm 1-thread {sg['gflops']:.1f} GFLOP/s ({sg.get('blas') or 'numpy'})"
             if sg.get("gflops") else "sgemm n/a")
    isa = f"ISA {' '.join(s.replace(' ', '-') for s in m['isa'])}, " if m.get("isa") else ""
    return (f"machine: {m['cpu']}, {m['arch']}, {isa}{cores}, governor {gov}, "
            f"{m['memory_gb']} GB, load {_fmt(m.get('load_avg_1min'), 2)}; "
            f"Python {m['python']}, {m['os']}; "
            f"{m.get('interpreter')} {m.get('interpreter_version')}; {sgemm}")


TABLE_COLUMNS = (
    # header, key, digits
    ("model", "name", None), ("fmt", "format", None), ("thr", "threads", None),
    ("status", "status", None), ("MB", "size_mb", 2), ("load ms", "load_ms", 1),
    ("first ms", "first_ms", 1), ("mean ms", "mean_ms", 2), ("std", "std_ms", 2),
    ("p50", "p50_ms", 2), ("p90", "p90_ms", 2), ("p99", "p99_ms", 2), ("min", "min_ms", 2),
    ("FPS", "fps", 1), ("GFLOP", "gflop", 3), ("GFLOP/s", "gflops_achieved", 1),
    ("%fp32 sgemm", "pct_of_sgemm", 0), ("RSS+ MB", "rss_model_mb", 1),
    ("peak MB", "rss_peak_mb", 1), ("e2e ms", "e2e_ms", 1), ("interp ms", "e2e_interp_ms", 1),
)


def format_table(report):
    """The report as a plain-text table (one row per model and thread count)."""
    s = report["settings"]
    lines = [f"edge-seg bench: {len({r['model'] for r in report['results']})} model(s) x "
             f"threads {','.join(map(str, s['threads']))}; {s['runs']} runs after "
             f"{s['warmup']} warm-up, {s['order']}; input: {s['input']}",
             machine_line(report)]
    header = [c[0] for c in TABLE_COLUMNS]
    body = []
    for r in report["results"]:
        if r["status"] != "ok":
            cells = [_fmt(r.get("name")), _fmt(r.get("format")), _fmt(r.get("threads")),
                     "FAILED", _fmt(r.get("size_mb"), 2)]
            cells += [""] * (len(header) - len(cells))
            body.append((cells, f"  {r['error']}"))
            continue
        body.append(([_fmt(r.get(key), d) if d is not None else _fmt(r.get(key))
                      for _h, key, d in TABLE_COLUMNS], None))
    widths = [max(len(h), *(len(c[0][i]) for c in body)) if body else len(h)
              for i, h in enumerate(header)]
    fmt_row = lambda cells: "  ".join(  # noqa: E731
        c.ljust(w) if i < 4 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    lines += [fmt_row(header), fmt_row(["-" * w for w in widths])]
    for cells, err in body:
        lines.append(fmt_row(cells).rstrip() + (err or ""))
    for w in report.get("warnings") or ():
        lines.append(f"warning: {w}")
    return "\n".join(lines)


def report_json(report):
    from edge_runtime.evaluate import to_json
    return to_json(report)


def results_csv(report):
    """One CSV row per model and thread count; the machine line repeated in every row."""
    from edge_runtime.evaluate import rows_to_csv
    m = report["machine"]
    extra = {"machine_cpu": m["cpu"], "machine_arch": m["arch"],
             "machine_cores": m["cores_usable"], "machine_governor": m.get("governor"),
             "machine_isa": " ".join(s.replace(" ", "-") for s in m.get("isa") or ()),
             "python": m["python"], "os": m["os"]}
    rows = [{**r, **extra} for r in report["results"]]
    return rows_to_csv(rows, RESULT_FIELDS + tuple(extra))

