"""python -m bench.batch_memory: does memory grow with the number of scans in a batch?

Runs ``edge_runtime.batch.run_batch`` (the loop behind ``edge-seg run``) with the shipped
bundle over ``--scans`` scan files (crops of the example scans at several sizes, each file
distinct) and samples the process RSS (psutil) after every scan. The target: RSS growth of
at most 5 MB between the end of the warm-up (``--warmup`` scans) and the end of the batch,
measured as the median RSS of the last 100 scans minus that of the 100 scans after the
warm-up (single samples swing by +-3 MB as the allocator serves scans of different sizes; the
end-point difference, the largest excursion and the least-squares trend are printed too).

    python -m bench.batch_memory --scans 1000 --out bench/results
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_MB = 5.0


def make_scans(folder, n, seed=0):
    """``n`` distinct PNG scans in ``folder``: crops of the examples, 96 to 512 px a side."""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(seed)
    examples = [np.asarray(Image.open(p).convert("L"))
                for p in sorted((ROOT / "examples").glob("*.png"))]
    paths = []
    for i in range(n):
        full = examples[i % len(examples)]
        h = int(rng.integers(96, full.shape[0] + 1))
        w = int(np.clip(h * rng.uniform(0.6, 1.6), 96, full.shape[1]))
        y, x = int(rng.integers(0, full.shape[0] - h + 1)), int(rng.integers(0, full.shape[1] - w + 1))
        p = Path(folder) / f"scan_{i:05d}.png"
        Image.fromarray(full[y:y + h, x:x + w]).save(p)
        paths.append(p)
    return paths


def measure(n_scans=1000, warmup=100, threads=1, work=None):
    import os

    import psutil

    from edge_runtime.batch import run_batch
    from edge_runtime.bundle import load_bundle
    from edge_runtime.segment import Segmenter

    proc = psutil.Process()
    work = Path(work or tempfile.mkdtemp(prefix="edge-seg-batchmem-"))
    (work / "in").mkdir(parents=True, exist_ok=True)
    (work / "out").mkdir(exist_ok=True)
    paths = make_scans(work / "in", n_scans)
    seg = Segmenter(load_bundle(), threads=threads)
    samples = []
    sink = open(os.devnull, "w")

    def on_result(path, findings):     # what `edge-seg run --json` does with each result
        sink.write(json.dumps(findings) + "\n")
        samples.append(proc.memory_info().rss)

    def on_failure(path, problem):
        samples.append(proc.memory_info().rss)

    start = time.time()
    summary = run_batch(paths, seg, work / "out", on_result=on_result, on_failure=on_failure)
    seconds = time.time() - start
    sink.close()
    import numpy as np
    mb = [s / 2**20 for s in samples]
    warm = mb[warmup - 1]
    after = np.asarray(mb[warmup - 1:])
    slope = float(np.polyfit(np.arange(after.size), after, 1)[0]) * 1000 if after.size > 1 else 0.0
    r = {
        "scans": n_scans, "done": len(summary.done), "failed": len(summary.failed),
        "warmup_scans": warmup, "threads": threads,
        "rss_after_warmup_mb": round(warm, 1), "rss_final_mb": round(mb[-1], 1),
        "rss_max_after_warmup_mb": round(max(mb[warmup - 1:]), 1),
        "growth_after_warmup_mb": round(mb[-1] - warm, 2),
        "max_growth_after_warmup_mb": round(max(mb[warmup - 1:]) - warm, 2),
        "trend_mb_per_1000_scans": round(slope, 2),
        "median_rss_last_100_mb": round(float(np.median(mb[-100:])), 1),
        "median_rss_after_warmup_100_mb": round(float(np.median(mb[warmup - 1:warmup + 99])), 1),
        "rss_at": {str(k): round(mb[k - 1], 1) for k in (1, 10, warmup, 250, 500, 750, n_scans)
                   if k <= n_scans},
        "seconds": round(seconds, 1), "target_growth_mb": TARGET_MB,
    }
    r["growth_median_mb"] = round(r["median_rss_last_100_mb"]
                                  - r["median_rss_after_warmup_100_mb"], 2)
    r["passes"] = r["growth_median_mb"] <= TARGET_MB
    return r


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.batch_memory", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scans", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="write batch_memory.md and .json here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="edge-seg-batchmem-") as work:
        r = measure(args.scans, args.warmup, args.threads, work)
    lines = [f"run_batch over {r['scans']} scans ({r['done']} done, {r['failed']} failed, "
             f"{r['seconds']} s, {r['threads']} thread):",
             f"  growth: {r['growth_median_mb']:+} MB (median RSS of the last 100 scans "
             f"{r['median_rss_last_100_mb']} MB minus that of the 100 after the "
             f"{r['warmup_scans']}-scan warm-up {r['median_rss_after_warmup_100_mb']} MB); "
             f"target <= {TARGET_MB} MB: {'PASS' if r['passes'] else 'FAIL'}",
             f"  single samples: RSS after the warm-up {r['rss_after_warmup_mb']} MB, at the end "
             f"{r['rss_final_mb']} MB ({r['growth_after_warmup_mb']:+} MB), largest excursion "
             f"{r['max_growth_after_warmup_mb']:+} MB; least-squares trend "
             f"{r['trend_mb_per_1000_scans']:+} MB per 1000 scans",
             "  RSS (MB) after scan: " + ", ".join(f"{k}: {v}" for k, v in r["rss_at"].items())]
    print("\n".join(lines))
    if args.out:
        from edge_runtime import atomic
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        cmd = f"python -m bench.batch_memory --scans {args.scans} --warmup {args.warmup}"
        atomic.write_text(out / "batch_memory.md",
                          f"# Batch memory\n\n`{cmd}`\n\n```\n" + "\n".join(lines) + "\n```\n")
        atomic.write_json(out / "batch_memory.json", {"command": cmd, **r})
    return 0 if r["passes"] else 1


if __name__ == "__main__":
    sys.exit(main())
