"""Measurements made in a fresh child process: the single-thread sgemm ceiling and the
memory a model needs (``python -m edge_runtime.bench.probes --memory-probe MODEL``)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np


def _child_env(**extra):
    env = dict(os.environ)
    pkg_parent = str(Path(__file__).resolve().parents[2])     # the folder above edge_runtime
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_parent, env.get("PYTHONPATH")) if p)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _run_child(args, env, timeout):
    proc = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True,
                          timeout=timeout)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"exit {proc.returncode}: {err[:200]}")
    return json.loads(lines[-1])


SGEMM_CODE = """
import json, time
import numpy as np
n = {n}
rng = np.random.default_rng(0)
a = rng.random((n, n), dtype=np.float32)
b = rng.random((n, n), dtype=np.float32)
a @ b
best, end = 0.0, time.perf_counter() + {seconds}
while True:
    t0 = time.perf_counter(); a @ b; dt = time.perf_counter() - t0
    best = max(best, 2.0 * n ** 3 / dt / 1e9)
    if time.perf_counter() > end:
        break
blas = None
try:
    cfg = np.show_config(mode="dicts")
    blas = cfg["Build Dependencies"]["blas"]["name"]
except Exception:
    pass
print(json.dumps({{"gflops": best, "n": n, "blas": blas}}))
"""

ONE_THREAD = {"OPENBLAS_NUM_THREADS": 1, "OMP_NUM_THREADS": 1, "MKL_NUM_THREADS": 1,
              "BLIS_NUM_THREADS": 1, "VECLIB_MAXIMUM_THREADS": 1, "NUMEXPR_NUM_THREADS": 1}


def sgemm_ceiling(n=512, seconds=0.5):
    """Single-thread float32 matmul GFLOP/s (best of repeated n x n products), measured in a
    subprocess whose BLAS is limited to one thread -> {"gflops", "n", "blas"} or
    {"gflops": None, "error"}."""
    try:
        return _run_child(["-c", SGEMM_CODE.format(n=int(n), seconds=float(seconds))],
                          _child_env(**ONE_THREAD), timeout=120)
    except Exception as exc:  # noqa: BLE001 - a missing ceiling does not stop the benchmark
        return {"gflops": None, "n": n, "blas": None, "error": str(exc)}


def _rss():
    import psutil
    return psutil.Process().memory_info().rss


def _peak_rss():
    """This process's peak RSS in bytes (None where unknown).

    On Linux from /proc/self/status (VmHWM: the high-water mark of this program's memory).
    Not ``ru_maxrss`` there: Linux carries it over ``fork`` + ``exec``, so a fresh child of a
    large parent (a bench started from a process with TensorFlow loaded) would report the
    parent's peak instead of its own."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    except (ImportError, OSError):
        return None
    return peak if sys.platform == "darwin" else peak * 1024


def memory_probe(model, threads, image=None):
    """In THIS process: load ``model``, run it once (and the pipeline on ``image``) ->
    RSS numbers in MB. Meant for a fresh process (``measure_memory``)."""
    from edge_runtime.interpreter import interpreter_info
    from edge_runtime import segment  # noqa: F401 - import everything the pipeline needs
    from edge_runtime.bundle import load_bundle
    from edge_runtime.imageio import load_scan
    from edge_runtime.bench.timing import _invoke_fn
    interpreter_info()                     # the interpreter package is imported now
    base = _rss()
    seg = segment.Segmenter(load_bundle(model), threads=threads)
    size = seg.spec.input_size
    _invoke_fn(seg.interpreter)(np.zeros((1, size, size, 1), dtype=np.float32))
    if image is not None:
        seg.segment(load_scan(image))
    after = _rss()
    peak = _peak_rss()
    return {"rss_base_mb": base / 2**20, "rss_after_mb": after / 2**20,
            "rss_model_mb": (after - base) / 2**20,
            "rss_peak_mb": (max(peak, after) if peak else after) / 2**20}


def measure_memory(model, threads, image=None, timeout=600):
    """``memory_probe`` in a fresh Python process -> dict (raises RuntimeError on failure)."""
    args = ["-m", "edge_runtime.bench.probes", "--memory-probe", str(model),
            "--threads", str(int(threads))]
    if image is not None:
        args += ["--image", str(image)]
    return _run_child(args, _child_env(), timeout)


def _probe_main(argv):
    import argparse
    parser = argparse.ArgumentParser(prog="python -m edge_runtime.bench.probes")
    parser.add_argument("--memory-probe", required=True, metavar="MODEL")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--image")
    args = parser.parse_args(argv)
    print(json.dumps(memory_probe(args.memory_probe, args.threads, args.image)))


if __name__ == "__main__":
    _probe_main(sys.argv[1:])
