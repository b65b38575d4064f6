"""Time and memory of one DICOM series through ``edge_runtime.dicom.process_series``.

    python -m bench.dicom_series [--slices 20 200] [--bundle ZIP] [--threads N] [--out DIR]

For each length, a synthetic MR series of 512 x 512 slices (``edge_runtime.dicom.synthetic``
from ``examples/``) is written to a temporary folder, then a fresh Python process reads,
segments and writes it exactly as ``edge-seg run SERIES/`` does (per-slice files, series
JSON, montage, SEG) and reports: the time to scan the headers, the time to process the
series, ms per slice, the resident memory after loading the model, and the peak resident
memory of that process (VmHWM). Flat memory means the peak does not grow with the series length beyond
the bit-packed masks (32 KB per slice with a tumour). Writes ``dicom_series.md`` and
``.json`` into ``--out`` (default bench/results).
"""

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(folder, bundle, threads, write_seg=True):
    """Runs in a fresh process: -> one JSON line with times and memory."""
    import time

    from edge_runtime.bundle import default_bundle_path, load_bundle
    from edge_runtime.dicom.process import process_series
    from edge_runtime.dicom.series import scan_tree
    from edge_runtime.segment import Segmenter

    def status_mb(key):
        # VmHWM, not ru_maxrss: ru_maxrss survives execve, so a child would report the
        # parent's peak (the parent held the whole synthetic series in memory).
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    seg = Segmenter(load_bundle(bundle or default_bundle_path()), threads=threads)
    t0 = time.perf_counter()
    (series,), _skipped, _failed = scan_tree(Path(folder) / "in")
    t1 = time.perf_counter()
    base = status_mb("VmRSS")
    report = process_series(series, seg, Path(folder) / "out", write_seg=write_seg)
    t2 = time.perf_counter()
    peak = status_mb("VmHWM")
    print(json.dumps({"slices": len(series.slices), "scan_s": round(t1 - t0, 3),
                      "process_s": round(t2 - t1, 3),
                      "ms_per_slice": round(1000 * (t2 - t1) / len(series.slices), 1),
                      "rss_after_model_mb": round(base, 1), "peak_rss_mb": round(peak, 1),
                      "slices_with_tumour": len(report["slices_with_tumour"]),
                      "volume_ml": report["volume_ml"],
                      "seg": write_seg,
                      "seg_bytes": (Path(report["outputs"]["seg"]).stat().st_size
                                    if write_seg else 0)}))


def render(result):
    lines = ["# One DICOM series through `process_series`: time and memory", "",
             f"Machine: {result['machine']}; bundle {result['bundle']}; threads "
             f"{result['threads']}. Synthetic 512 x 512 MR series from `examples/` "
             "(`edge_runtime.dicom.synthetic`), each run in a fresh process, everything "
             "written as `edge-seg run` does (3 files per slice, series JSON, montage, SEG). "
             "Command: `python -m bench.dicom_series`.", "",
             "| slices | with tumour | SEG | scan headers (s) | process (s) | ms / slice | RSS "
             "after model (MB) | peak RSS (MB) | SEG (KB) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in result["runs"]:
        lines.append(f"| {r['slices']} | {r['slices_with_tumour']} | "
                     f"{'yes' if r['seg'] else 'no'} | {r['scan_s']:.2f} | "
                     f"{r['process_s']:.1f} | {r['ms_per_slice']:.0f} | "
                     f"{r['rss_after_model_mb']:.0f} | {r['peak_rss_mb']:.0f} | "
                     f"{r['seg_bytes'] / 1024:.0f} |")
    for seg in (False, True):
        runs = [r for r in result["runs"] if r["seg"] == seg]
        if len(runs) >= 2:
            a, b = runs[0], runs[-1]
            lines += ["", f"{'With' if seg else 'Without'} the SEG, peak RSS grows by "
                          f"{b['peak_rss_mb'] - a['peak_rss_mb']:+.0f} MB from {a['slices']} "
                          f"to {b['slices']} slices."]
    lines += ["", "The slice loop keeps a window of three slices; what grows is the SEG, "
                  "which highdicom builds in memory from the frames with a tumour (one byte "
                  "per pixel, 0.25 MB per 512 x 512 frame, plus its own working copies)."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.dicom_series", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slices", type=int, nargs="+", default=[20, 200])
    ap.add_argument("--bundle", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="bench/results")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child-no-seg", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child, args.bundle, args.threads, write_seg=not args.child_no_seg)
        return 0
    from bench.samples import write_results
    from edge_runtime.bundle import default_bundle_path, load_bundle
    from edge_runtime.dicom.synthetic import example_stack, write_series
    runs = []
    for n in args.slices:
        with tempfile.TemporaryDirectory() as tmp:
            write_series(Path(tmp) / "in", example_stack(ROOT / "examples", n, which=0,
                                                         dark_ends=max(1, n // 10)))
            for no_seg in (True, False):
                cmd = [sys.executable, "-m", "bench.dicom_series", "--child", tmp,
                       "--threads", str(args.threads)] + (["--bundle", args.bundle]
                                                          if args.bundle else [])
                cmd += ["--child-no-seg"] if no_seg else []
                done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                                      check=False)
                if done.returncode != 0:
                    print(f"bench.dicom_series: {n} slices failed: {done.stderr[-500:]}",
                          file=sys.stderr)
                    return 1
                row = json.loads(done.stdout.strip().splitlines()[-1])
                print(f"{n} slices{'' if row['seg'] else ' (no SEG)'}: "
                      f"{row['process_s']:.1f} s ({row['ms_per_slice']:.0f} ms/slice), "
                      f"peak RSS {row['peak_rss_mb']:.0f} MB")
                runs.append(row)
    result = {"machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
              "python": platform.python_version(),
              "bundle": load_bundle(args.bundle or default_bundle_path()).name,
              "threads": args.threads, "runs": runs}
    written = write_results(args.out, "dicom_series", render(result), result)
    print(json.dumps({"written": [str(p) for p in written]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
