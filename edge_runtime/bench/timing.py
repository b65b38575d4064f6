"""The timing loop: every model of a run loaded, warmed up and timed in turns."""

import gc
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_runtime.bench.machine import machine_info, machine_warnings
from edge_runtime.bench.modelfile import model_gflop
from edge_runtime.bench.probes import measure_memory, sgemm_ceiling

RESULT_FIELDS = (
    "model", "name", "format", "variant", "threads", "status", "error",
    "file_bytes", "size_mb", "interpreter", "interpreter_version",
    "load_ms", "first_ms", "warmup", "runs",
    "mean_ms", "std_ms", "p50_ms", "p90_ms", "p99_ms", "min_ms", "max_ms", "fps",
    "gflop", "gflops_achieved", "sgemm_gflops_1t", "pct_of_sgemm",
    "rss_model_mb", "rss_peak_mb",
    "e2e_runs", "e2e_ms", "e2e_read_ms", "e2e_pre_ms", "e2e_interp_ms", "e2e_post_ms",
)


def _float_arithmetic(format_name):
    """True when a model of this format computes in float32, so that the float32 sgemm
    ceiling bounds it. DRQ and int8 models run int8 kernels (VNNI, NEON dot product), which
    an fp32 ceiling does not bound (they reach 200-500 % of it on AVX-512 VNNI)."""
    from edge_runtime.formats import get_format
    try:
        return get_format(format_name).arithmetic == "float32"
    except ValueError:
        return False


def _invoke_fn(interp):
    """A function x(1,S,S,1) float32 -> output array: set_tensor + invoke + get_tensor."""
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    if inp["dtype"] != np.float32:
        from edge_runtime.interpreter import run_model
        return lambda x: run_model(interp, x)
    in_idx, out_idx = inp["index"], out["index"]

    def invoke(x):
        interp.set_tensor(in_idx, x)
        interp.invoke()
        return interp.get_tensor(out_idx)
    return invoke


def _one_line(exc):
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


class _Target:
    """One model to measure: its bundle (or why it cannot be loaded) and its cost."""

    def __init__(self, path):
        self.path = str(path)
        self.bundle, self.error, self.gflop = None, None, None
        self.file_bytes = None
        try:
            from edge_runtime.bundle import load_bundle
            p = Path(path)
            self.file_bytes = (sum(f.stat().st_size for f in p.iterdir() if f.is_file())
                               if p.is_dir() else p.stat().st_size) if p.exists() else None
            self.bundle = load_bundle(path)
            self.gflop = model_gflop(self.bundle.model_bytes, self.bundle.manifest)
        except Exception as exc:  # noqa: BLE001 - this model's row says FAILED, others go on
            self.error = _one_line(exc)

    def format(self):
        """The manifest's format; for a bare .tflite, the one its file suffix names."""
        from edge_runtime.formats import FORMATS
        if self.bundle is not None and getattr(self.bundle, "kind", "zip") != "tflite":
            return self.bundle.manifest.get("format")
        for fmt in FORMATS:
            if self.path.endswith(fmt.suffix):
                return fmt.name
        return None

    def base_row(self, threads):
        m = self.bundle.manifest if self.bundle else {}
        name = m.get("name") or Path(self.path).stem
        return {
            "model": self.path, "name": name, "format": self.format(),
            "variant": m.get("variant"), "threads": threads, "status": "ok", "error": "",
            "file_bytes": self.file_bytes,
            "size_mb": self.file_bytes / 1e6 if self.file_bytes is not None else None,
            "model_bytes": len(self.bundle.model_bytes) if self.bundle else None,
            "gflop": self.gflop,
        }


def _fail(row, reason):
    row["status"] = "FAILED"
    row["error"] = reason


def _stats(samples_ms):
    a = np.asarray(samples_ms, dtype=np.float64)
    mean = float(a.mean())
    return {
        "mean_ms": mean, "std_ms": float(a.std(ddof=1)) if a.size > 1 else 0.0,
        "p50_ms": float(np.percentile(a, 50)), "p90_ms": float(np.percentile(a, 90)),
        "p99_ms": float(np.percentile(a, 99)), "min_ms": float(a.min()),
        "max_ms": float(a.max()), "fps": 1000.0 / mean if mean > 0 else None,
    }


def _bench_input(seg, scan):
    size = seg.spec.input_size
    if scan is not None:
        from edge_runtime.preprocess import prepare_image
        x, _geo = prepare_image(scan.pixels, seg.spec)
        return x[None, :, :, None].astype(np.float32)
    rng = np.random.default_rng(0)
    return rng.random((1, size, size, 1), dtype=np.float32)


@dataclass(eq=False)
class Live:
    """A model being timed at one thread count: its result row, segmenter, the timed call,
    its input and the latencies collected so far (ms)."""

    row: dict
    seg: object
    invoke: object
    x: np.ndarray
    times: list = field(default_factory=list)

    @property
    def ok(self):
        return self.row["status"] == "ok"

    def drop(self, exc):
        """This model failed mid-run: its row says why, the others go on."""
        _fail(self.row, _one_line(exc))


def run_benchmark(models, threads=(1,), runs=50, warmup=5, image=None, memory=True,
                  sgemm=True, e2e_runs=None, log=None):
    """Measure ``models`` (paths) at each thread count in ``threads`` -> report dict.

    ``image``: a scan for the end-to-end timing (and as the latency input; random input
    otherwise). ``e2e_runs``: end-to-end repetitions (default min(runs, 10)).
    ``memory``: measure RSS in a fresh process per model and thread count.
    ``log``: callable(str) for progress lines.
    """
    from edge_runtime.imageio import load_scan
    from edge_runtime.segment import Segmenter
    log = log or (lambda _msg: None)
    threads = [int(t) for t in threads]
    if not models:
        raise ValueError("no models to benchmark")
    if any(t < 1 for t in threads):
        raise ValueError(f"threads must be positive integers, got {threads}")
    if runs < 1 or warmup < 0:
        raise ValueError(f"runs must be >= 1 and warmup >= 0, got runs={runs} warmup={warmup}")
    e2e_runs = max(1, min(runs, 10)) if e2e_runs is None else int(e2e_runs)
    machine = machine_info()
    warnings = machine_warnings(machine)
    scan = load_scan(image) if image is not None else None
    log("measuring the single-thread sgemm ceiling")
    sg = sgemm_ceiling() if sgemm else {"gflops": None, "n": None, "blas": None}
    targets = [_Target(m) for m in models]
    for t in targets:
        if t.bundle is not None:
            warnings.extend(w for w in t.bundle.warnings)
    rows = []
    for nthreads in threads:
        live = []                                      # [Live]
        for tgt in targets:
            row = tgt.base_row(nthreads)
            row.update(interpreter=machine["interpreter"],
                       interpreter_version=machine["interpreter_version"],
                       warmup=warmup, runs=runs, sgemm_gflops_1t=sg.get("gflops"))
            rows.append(row)
            if tgt.error:
                _fail(row, tgt.error)
                continue
            log(f"loading {row['name']} ({nthreads} thread{'s' if nthreads > 1 else ''})")
            try:
                gc.collect()
                t0 = time.perf_counter()
                seg = Segmenter(tgt.bundle, threads=nthreads)
                row["load_ms"] = 1000 * (time.perf_counter() - t0)
                invoke = _invoke_fn(seg.interpreter)
                x = _bench_input(seg, scan)
                t0 = time.perf_counter()
                invoke(x)
                row["first_ms"] = 1000 * (time.perf_counter() - t0)
                live.append(Live(row, seg, invoke, x))
            except Exception as exc:  # noqa: BLE001
                _fail(row, _one_line(exc))
        _timed_rounds(live, warmup, runs, log, nthreads)
        if scan is not None:
            _e2e_rounds(live, image, e2e_runs, log)
        for item in live:
            row = item.row
            if not item.ok:
                continue
            row.update(_stats(item.times))
            if row.get("gflop") and row.get("p50_ms"):
                row["gflops_achieved"] = row["gflop"] / (row["p50_ms"] / 1000)
                if sg.get("gflops") and _float_arithmetic(row.get("format")):
                    row["pct_of_sgemm"] = 100 * row["gflops_achieved"] / (sg["gflops"] * nthreads)
        del live
        gc.collect()
        if memory:
            for row in rows:
                if row["threads"] != nthreads or row["status"] != "ok":
                    continue
                log(f"memory of {row['name']} ({nthreads} threads) in a fresh process")
                try:
                    mem = measure_memory(row["model"], nthreads, image)
                    row["rss_model_mb"] = mem["rss_model_mb"]
                    row["rss_peak_mb"] = mem["rss_peak_mb"]
                except Exception as exc:  # noqa: BLE001 - timing stays valid
                    warnings.append(f"{row['model']}: memory not measured ({_one_line(exc)})")
    for row in rows:
        for key in RESULT_FIELDS:
            row.setdefault(key, None)
    settings = {"threads": threads, "runs": runs, "warmup": warmup, "e2e_runs": e2e_runs,
                "image": str(image) if image is not None else None,
                "input": "the prepared image" if image is not None else "uniform random [0, 1)",
                "order": "interleaved round-robin, rotating start", "memory": bool(memory)}
    return {"machine": machine, "settings": settings, "sgemm": sg, "results": rows,
            "warnings": warnings}


def _timed_rounds(live, warmup, runs, log, nthreads):
    for _ in range(warmup):
        for item in list(live):
            if not item.ok:
                continue
            try:
                item.invoke(item.x)
            except Exception as exc:  # noqa: BLE001
                item.drop(exc)
    log(f"timing {sum(1 for i in live if i.ok)} model(s) x {runs} runs "
        f"at {nthreads} thread(s), interleaved")
    perf = time.perf_counter
    for r in range(runs):
        order = _rotation(live, r)
        if not order:
            break
        for item in order:
            invoke, x = item.invoke, item.x
            try:
                t0 = perf()
                invoke(x)
                item.times.append(1000 * (perf() - t0))
            except Exception as exc:  # noqa: BLE001
                item.drop(exc)


def _rotation(live, r):
    """Models still ok in round ``r``, the starting one rotated each round (fair order)."""
    active = [i for i in live if i.ok]
    k = r % len(active) if active else 0
    return active[k:] + active[:k]


def _e2e_rounds(live, image, e2e_runs, log):
    from edge_runtime.imageio import load_scan
    log(f"end to end on {image}, {e2e_runs} runs")
    parts = {id(i): {"total": [], "read": [], "pre": [], "interp": [], "post": []} for i in live}
    perf = time.perf_counter
    for r in range(e2e_runs):
        order = _rotation(live, r)
        if not order:
            break
        for item in order:
            try:
                t0 = perf()
                scan = load_scan(image)
                t1 = perf()
                result = item.seg.segment(scan)
                t2 = perf()
            except Exception as exc:  # noqa: BLE001
                item.drop(exc)
                continue
            p = parts[id(item)]
            p["total"].append(1000 * (t2 - t0))
            p["read"].append(1000 * (t1 - t0))
            p["pre"].append(result.timing_ms.get("preprocess", math.nan))
            p["interp"].append(result.timing_ms.get("inference", math.nan))
            p["post"].append(result.timing_ms.get("postprocess", math.nan))
    for item in live:
        p = parts[id(item)]
        if not item.ok or not p["total"]:
            continue
        item.row.update(e2e_runs=len(p["total"]), e2e_ms=statistics.median(p["total"]),
                        e2e_read_ms=statistics.median(p["read"]),
                        e2e_pre_ms=statistics.median(p["pre"]),
                        e2e_interp_ms=statistics.median(p["interp"]),
                        e2e_post_ms=statistics.median(p["post"]))
