"""Measure models on this machine: size, load time, latency, memory, arithmetic rate.

``run_benchmark(models, threads, runs, warmup, image)`` measures every model (a bundle .zip,
an unpacked bundle folder or a bare .tflite) at every thread count and returns a report dict
(``machine``, ``settings``, ``sgemm``, ``results``, ``warnings``); ``format_table``,
``results_csv`` and ``report_json`` render it. ``edge-seg bench`` is a thin shell over this.

How things are measured (docs/BENCH.md has the field list):

- Models are measured **in turns**: for each thread count every model is loaded, warmed up,
  then timed round-robin, one inference per model per round, the order rotating each round,
  so slow drift of a shared or throttling machine hits all models alike and their ratio is fair.
- ``load_ms``: building the interpreter from the model bytes and allocating tensors (XNNPACK
  delegate applied); ``first_ms``: the first inference (XNNPACK packs weights then).
- Latency: ``invoke`` with the input already set (set_tensor + invoke + get_tensor), ``runs``
  times after ``warmup`` untimed runs: mean, std, p50, p90, p99, min, max; FPS = 1000/mean.
- End to end (``--image``): read the file, preprocess, infer, restore, postprocess and
  findings, exactly as ``edge-seg run`` does, with the split into its parts.
- Memory: a fresh Python process per model and thread count loads the model, runs it (and the
  end-to-end pipeline when an image is given) and reports its peak RSS and the RSS the model
  added above an interpreter-ready process (psutil; ru_maxrss for the peak).
- Arithmetic: GFLOP per inference counted from the .tflite flatbuffer (convolutions,
  transposed convolutions, fully connected, batch matmul; see ``count_macs``), the achieved
  GFLOP/s at the median latency, and a single-thread float32 sgemm ceiling measured in a
  subprocess with every BLAS limited to one thread (numpy matmul, 512x512).
"""

import gc
import json
import math
import os
import platform
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

# ----------------------------------------------------------------------------- arithmetic cost
#
# Only the multiply-accumulate-heavy ops are counted, from the tensor shapes stored in the
# model (a fixed-batch export has every shape); one MAC is two FLOPs:
#   CONV_2D            output N*Ho*Wo*Co x Kh*Kw*Ci        (filter [Co, Kh, Kw, Ci])
#   DEPTHWISE_CONV_2D  output N*Ho*Wo*Co x Kh*Kw           (filter [1, Kh, Kw, Co])
#   TRANSPOSE_CONV     input  N*H*W*Ci  x Kh*Kw*Co         (every input pixel meets the kernel)
#   FULLY_CONNECTED    output elements x input features    (weights [O, I])
#   BATCH_MATMUL       output elements x the shared dimension
# Element-wise ops, pooling and resizing are not counted (a few % of a U-Net's arithmetic).
# The reader implements just enough of the FlatBuffers wire format for the TFLite schema
# (tables, vectors, scalars) to work with no flatbuffers/tensorflow package on the device.

# BuiltinOperator codes (tensorflow/compiler/mlir/lite/schema/schema.fbs)
CONV_2D = 3
DEPTHWISE_CONV_2D = 4
FULLY_CONNECTED = 9
TRANSPOSE_CONV = 67
BATCH_MATMUL = 126
COUNTED = {CONV_2D: "CONV_2D", DEPTHWISE_CONV_2D: "DEPTHWISE_CONV_2D",
           FULLY_CONNECTED: "FULLY_CONNECTED", TRANSPOSE_CONV: "TRANSPOSE_CONV",
           BATCH_MATMUL: "BATCH_MATMUL"}


class _Table:
    """A FlatBuffers table: field access by field id."""

    __slots__ = ("buf", "pos", "vt", "vt_len")

    def __init__(self, buf, pos):
        self.buf, self.pos = buf, pos
        self.vt = pos - struct.unpack_from("<i", buf, pos)[0]
        self.vt_len = struct.unpack_from("<H", buf, self.vt)[0]

    def _offset(self, field_id):
        slot = 4 + 2 * field_id
        if slot + 2 > self.vt_len:
            return 0
        return struct.unpack_from("<H", self.buf, self.vt + slot)[0]

    def scalar(self, field_id, fmt, default=0):
        off = self._offset(field_id)
        return default if not off else struct.unpack_from("<" + fmt, self.buf, self.pos + off)[0]

    def _target(self, field_id):
        off = self._offset(field_id)
        if not off:
            return None
        at = self.pos + off
        return at + struct.unpack_from("<I", self.buf, at)[0]

    def vector(self, field_id, fmt):
        """A vector of scalars -> tuple (empty when absent)."""
        at = self._target(field_id)
        if at is None:
            return ()
        n = struct.unpack_from("<I", self.buf, at)[0]
        return struct.unpack_from(f"<{n}{fmt}", self.buf, at + 4)

    def tables(self, field_id):
        """A vector of tables -> list of _Table."""
        at = self._target(field_id)
        if at is None:
            return []
        n = struct.unpack_from("<I", self.buf, at)[0]
        out = []
        for i in range(n):
            el = at + 4 + 4 * i
            out.append(_Table(self.buf, el + struct.unpack_from("<I", self.buf, el)[0]))
        return out


def _prod(values):
    out = 1
    for v in values:
        out *= max(int(v), 1)
    return out


def count_macs(model_bytes):
    """-> {"macs": int, "gflop": float (2 x MACs / 1e9), "by_op": {name: macs}, "ops": int,
    "counted_ops": int}; raises ValueError when the bytes are not a TFLite model."""
    buf = bytes(model_bytes)
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise ValueError("not a TFLite flatbuffer (no TFL3 identifier)")
    try:
        model = _Table(buf, struct.unpack_from("<I", buf, 0)[0])
        codes = []
        for oc in model.tables(1):                       # operator_codes
            deprecated = oc.scalar(0, "b", 0)            # deprecated_builtin_code: byte
            builtin = oc.scalar(3, "i", 0)               # builtin_code: int
            codes.append(max(deprecated, builtin))
        subgraphs = model.tables(2)
        if not subgraphs:
            raise ValueError("model has no subgraph")
        sub = subgraphs[0]                               # the main graph
        shapes = [t.vector(0, "i") for t in sub.tables(0)]
        by_op, n_ops, n_counted = {}, 0, 0
        for op in sub.tables(3):
            n_ops += 1
            code = codes[op.scalar(0, "I", 0)]
            if code not in COUNTED:
                continue
            ins = op.vector(1, "i")
            outs = op.vector(2, "i")
            macs = _op_macs(code, [shapes[i] if i >= 0 else () for i in ins],
                            [shapes[i] for i in outs])
            if macs:
                n_counted += 1
                by_op[COUNTED[code]] = by_op.get(COUNTED[code], 0) + macs
    except (struct.error, IndexError) as exc:
        raise ValueError(f"damaged TFLite flatbuffer ({exc})") from None
    total = sum(by_op.values())
    return {"macs": total, "gflop": 2.0 * total / 1e9, "by_op": by_op, "ops": n_ops,
            "counted_ops": n_counted}


def _op_macs(code, ins, outs):
    out = outs[0] if outs else ()
    if code == CONV_2D and len(ins) >= 2 and len(ins[1]) == 4:
        return _prod(out) * _prod(ins[1][1:])
    if code == DEPTHWISE_CONV_2D and len(ins) >= 2 and len(ins[1]) == 4:
        return _prod(out) * _prod(ins[1][1:3])
    if code == TRANSPOSE_CONV and len(ins) >= 3 and len(ins[1]) == 4:
        return _prod(ins[2]) * _prod(ins[1][:3])
    if code == FULLY_CONNECTED and len(ins) >= 2 and len(ins[1]) == 2:
        return _prod(out) * int(ins[1][1])
    if code == BATCH_MATMUL and len(ins) >= 2 and ins[0]:
        return _prod(out) * int(ins[0][-1])
    return 0


def model_gflop(model_bytes, manifest=None):
    """GFLOP per inference: counted from the flatbuffer, else a manifest's ``gflops`` field,
    else None."""
    try:
        return count_macs(model_bytes)["gflop"]
    except ValueError:
        pass
    value = (manifest or {}).get("gflops")
    return float(value) if isinstance(value, (int, float)) else None


# ----------------------------------------------------------------------------- the machine

# ARM "CPU part" codes -> core names (for /proc/cpuinfo on Raspberry Pi and friends).
ARM_PARTS = {"0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55",
             "0xd07": "Cortex-A57", "0xd08": "Cortex-A72", "0xd09": "Cortex-A73",
             "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76", "0xd0d": "Cortex-A77",
             "0xd41": "Cortex-A78", "0xc07": "Cortex-A7", "0xc08": "Cortex-A8",
             "0xc09": "Cortex-A9", "0xc0f": "Cortex-A15"}


def _read_text(path):
    try:
        return Path(path).read_text(errors="replace").replace("\x00", "").strip()
    except OSError:
        return None


def cpu_model():
    """A human name for the CPU: x86 'model name', an ARM board's model and core, or
    platform.processor()."""
    info = _read_text("/proc/cpuinfo") or ""
    fields = {}
    for line in info.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    if fields.get("model name") and not fields["model name"].lower().startswith("arm"):
        return fields["model name"]
    parts = []
    board = _read_text("/proc/device-tree/model") or fields.get("model")
    if board:
        parts.append(board)
    core = ARM_PARTS.get((fields.get("cpu part") or "").lower())
    if core:
        parts.append(core)
    if not parts:
        parts.append(fields.get("hardware") or fields.get("model name")
                     or platform.processor() or "unknown CPU")
    return ", ".join(parts)


def cpu_governors():
    """Sorted set of scaling governors of all CPUs, or None when unreadable."""
    govs = set()
    base = Path("/sys/devices/system/cpu")
    try:
        cpus = sorted(base.glob("cpu[0-9]*"))
    except OSError:
        return None
    for cpu in cpus:
        value = _read_text(cpu / "cpufreq" / "scaling_governor")
        if value:
            govs.add(value)
    return sorted(govs) or None


def machine_info():
    """The machine line: CPU, arch, cores, governor, memory, Python, OS, interpreter."""
    import psutil
    try:
        from edge_runtime.interpreter import interpreter_info
        interp = interpreter_info()
    except Exception as exc:  # noqa: BLE001 - report it, models will fail one by one
        interp = {"package": None, "version": None, "error": str(exc)}
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = os.cpu_count()
    try:
        freq = psutil.cpu_freq()
        max_mhz = round(freq.max) if freq and freq.max else None
    except Exception:  # noqa: BLE001 - not available in every container
        max_mhz = None
    try:
        load1 = round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        load1 = None
    govs = cpu_governors()
    return {
        "cpu": cpu_model(),
        "arch": platform.machine(),
        "cores_logical": os.cpu_count(),
        "cores_physical": psutil.cpu_count(logical=False),
        "cores_usable": affinity,
        "cpu_max_mhz": max_mhz,
        "governor": ",".join(govs) if govs else None,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_avg_1min": load1,
        "python": platform.python_version(),
        "os": platform.platform(),
        "numpy": np.__version__,
        "interpreter": interp.get("package"),
        "interpreter_version": interp.get("version"),
    }


def machine_warnings(machine):
    warnings = []
    gov = machine.get("governor")
    if gov is None:
        warnings.append("CPU governor unreadable (no cpufreq in /sys): cannot check that "
                        "clocks are fixed; compare ratios from one run, not absolute times")
    elif gov != "performance":
        warnings.append(f"CPU governor is '{gov}', not 'performance': latencies vary with "
                        "clock scaling (sudo cpupower frequency-set -g performance)")
    load, cores = machine.get("load_avg_1min"), machine.get("cores_usable") or 1
    if load is not None and load > 0.5 * cores:
        warnings.append(f"machine is busy (load average {load} on {cores} cores): "
                        "absolute times are pessimistic; ratios within this run stay fair")
    return warnings


# ----------------------------------------------------------------------------- subprocesses

def _child_env(**extra):
    env = dict(os.environ)
    pkg_parent = str(Path(__file__).resolve().parent.parent)
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


def _float_arithmetic(format_name):
    """True when a model of this format computes in float32, so that the float32 sgemm
    ceiling bounds it. DRQ and int8 models run int8 kernels (VNNI, NEON dot product), which
    an fp32 ceiling does not bound (they reach 200-500 % of it on AVX-512 VNNI)."""
    from edge_runtime.formats import get_format
    try:
        return get_format(format_name).arithmetic == "float32"
    except ValueError:
        return False


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
    args = ["-m", "edge_runtime.benchmark", "--memory-probe", str(model),
            "--threads", str(int(threads))]
    if image is not None:
        args += ["--image", str(image)]
    return _run_child(args, _child_env(), timeout)


# ----------------------------------------------------------------------------- measuring

RESULT_FIELDS = (
    "model", "name", "format", "variant", "threads", "status", "error",
    "file_bytes", "size_mb", "interpreter", "interpreter_version",
    "load_ms", "first_ms", "warmup", "runs",
    "mean_ms", "std_ms", "p50_ms", "p90_ms", "p99_ms", "min_ms", "max_ms", "fps",
    "gflop", "gflops_achieved", "sgemm_gflops_1t", "pct_of_sgemm",
    "rss_model_mb", "rss_peak_mb",
    "e2e_runs", "e2e_ms", "e2e_read_ms", "e2e_pre_ms", "e2e_interp_ms", "e2e_post_ms",
)


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
        live = []                                      # [row, segmenter, invoke, x, times]
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
                live.append([row, seg, invoke, x, []])
            except Exception as exc:  # noqa: BLE001
                _fail(row, _one_line(exc))
        _timed_rounds(live, warmup, runs, log, nthreads)
        if scan is not None:
            _e2e_rounds(live, image, e2e_runs, log)
        for item in live:
            row = item[0]
            if row["status"] != "ok":
                continue
            row.update(_stats(item[4]))
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


def _drop(item, exc):
    _fail(item[0], _one_line(exc))


def _timed_rounds(live, warmup, runs, log, nthreads):
    for _ in range(warmup):
        for item in list(live):
            if item[0]["status"] != "ok":
                continue
            try:
                item[2](item[3])
            except Exception as exc:  # noqa: BLE001
                _drop(item, exc)
    log(f"timing {sum(1 for i in live if i[0]['status'] == 'ok')} model(s) x {runs} runs "
        f"at {nthreads} thread(s), interleaved")
    perf = time.perf_counter
    for r in range(runs):
        order = _rotation(live, r)
        if not order:
            break
        for item in order:
            invoke, x = item[2], item[3]
            try:
                t0 = perf()
                invoke(x)
                item[4].append(1000 * (perf() - t0))
            except Exception as exc:  # noqa: BLE001
                _drop(item, exc)


def _rotation(live, r):
    """Models still ok in round ``r``, the starting one rotated each round (fair order)."""
    active = [i for i in live if i[0]["status"] == "ok"]
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
            seg = item[1]
            try:
                t0 = perf()
                scan = load_scan(image)
                t1 = perf()
                result = seg.segment(scan)
                t2 = perf()
            except Exception as exc:  # noqa: BLE001
                _drop(item, exc)
                continue
            p = parts[id(item)]
            p["total"].append(1000 * (t2 - t0))
            p["read"].append(1000 * (t1 - t0))
            p["pre"].append(result.timing_ms.get("preprocess", math.nan))
            p["interp"].append(result.timing_ms.get("inference", math.nan))
            p["post"].append(result.timing_ms.get("postprocess", math.nan))
    for item in live:
        p = parts[id(item)]
        if item[0]["status"] != "ok" or not p["total"]:
            continue
        item[0].update(e2e_runs=len(p["total"]), e2e_ms=statistics.median(p["total"]),
                       e2e_read_ms=statistics.median(p["read"]),
                       e2e_pre_ms=statistics.median(p["pre"]),
                       e2e_interp_ms=statistics.median(p["interp"]),
                       e2e_post_ms=statistics.median(p["post"]))


# ----------------------------------------------------------------------------- rendering

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
    return (f"machine: {m['cpu']}, {m['arch']}, {cores}, governor {gov}, "
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
             "python": m["python"], "os": m["os"]}
    rows = [{**r, **extra} for r in report["results"]]
    return rows_to_csv(rows, RESULT_FIELDS + tuple(extra))


def _probe_main(argv):
    import argparse
    parser = argparse.ArgumentParser(prog="python -m edge_runtime.benchmark")
    parser.add_argument("--memory-probe", required=True, metavar="MODEL")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--image")
    args = parser.parse_args(argv)
    print(json.dumps(memory_probe(args.memory_probe, args.threads, args.image)))


if __name__ == "__main__":
    _probe_main(sys.argv[1:])
