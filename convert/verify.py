"""Checks on a converted model: XNNPACK partitions, which interpreter packages run it, outputs.

- ``xnnpack_partitions(model_bytes)``: how much of the graph the default XNNPACK delegate takes.
  After ``allocate_tensors`` the interpreter's node list holds the original nodes followed by
  one ``DELEGATE`` node per partition; walking back from each delegate node's outputs to its
  inputs recovers the original nodes it replaced (the same numbers as TFLite's log line
  "Replacing N out of M node(s) with delegate (TfLiteXNNPackDelegate) node, yielding K
  partitions", which ai-edge-litert does not print).
- ``check_interpreters(model_bytes, x, tflite_runtime_python=None)``: ai-edge-litert always
  (in this process); tflite-runtime 2.14 in a subprocess of a numpy<2 Python that has it,
  given by argument or the ``EDGE_SEG_TFLITE_RUNTIME_PYTHON`` environment variable; otherwise
  recorded as "not checked".
"""

import json
import os
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path

import numpy as np

TFLITE_RUNTIME_ENV = "EDGE_SEG_TFLITE_RUNTIME_PYTHON"


def _package_version(dist):
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def litert_interpreter(model_bytes, threads=1, default_delegates=True):
    """An ai-edge-litert interpreter over ``model_bytes``, tensors allocated."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    kwargs = {}
    if not default_delegates:
        kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    from edge_seg.convert.export import quiet_native_stderr
    with quiet_native_stderr():   # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
        interp = Interpreter(model_content=bytes(model_bytes), num_threads=threads, **kwargs)
        interp.allocate_tensors()
    return interp


def run_interpreter(interp, x):
    """Run a batch-1 interpreter over each image of ``x`` (N, S, S, C); returns (N, S, S, C')."""
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == len(inp["shape"]) - 1:
        x = x[None]
    results = []
    for one in x:
        interp.set_tensor(inp["index"], one[None].astype(inp["dtype"], copy=False))
        interp.invoke()
        results.append(np.array(interp.get_tensor(out["index"])[0]))
    return np.stack(results).astype(np.float32, copy=False)


def run_tflite(model_bytes, x, threads=1):
    """Convenience: ai-edge-litert (XNNPACK on) over ``x`` (N, S, S, C) -> float32 outputs."""
    return run_interpreter(litert_interpreter(model_bytes, threads), x)


def _replaced_nodes(ops):
    """Indices of the original nodes that some DELEGATE node replaced.

    Walks back from each delegate node's output tensors through their producers until the
    delegate node's own input tensors (or constants / graph inputs) are reached.
    """
    original = [op for op in ops if op["op_name"] != "DELEGATE"]
    producer = {int(t): op["index"] for op in original for t in op["outputs"]}
    replaced = set()
    for d in (op for op in ops if op["op_name"] == "DELEGATE"):
        stop = {int(t) for t in d["inputs"]}
        stack, seen = [int(t) for t in d["outputs"]], set()
        while stack:
            t = stack.pop()
            if t in seen or t in stop or t not in producer:
                continue
            seen.add(t)
            node = producer[t]
            if node not in replaced:
                replaced.add(node)
                stack.extend(int(i) for i in ops[node]["inputs"] if int(i) >= 0)
    return replaced


def delegation_summary(ops):
    """``_get_ops_details()`` after allocation -> (delegated, total, partitions, undelegated ops)."""
    original = [op for op in ops if op["op_name"] != "DELEGATE"]
    partitions = sum(1 for op in ops if op["op_name"] == "DELEGATE")
    replaced = _replaced_nodes(ops)
    undelegated = sorted({op["op_name"] for op in original if op["index"] not in replaced})
    return len(replaced), len(original), partitions, undelegated


def xnnpack_partitions(model_bytes, threads=1):
    """How the default XNNPACK delegate of ai-edge-litert takes the graph.

    Returns {"package", "version", "delegated_nodes", "total_nodes", "partitions",
    "whole_graph", "undelegated_ops", "error"}; ``whole_graph`` is True when one partition
    holds every node.
    """
    result = {"package": "ai-edge-litert", "version": _package_version("ai-edge-litert"),
              "delegated_nodes": 0, "total_nodes": None, "partitions": 0,
              "whole_graph": False, "undelegated_ops": [], "error": None}
    try:
        interp = litert_interpreter(model_bytes, threads)
        ops = interp._get_ops_details()  # noqa: SLF001 - the only view of the node list
    except Exception as exc:  # noqa: BLE001 - e.g. XNNPACK cannot build a runtime
        msg = str(exc).strip().splitlines()
        result["error"] = type(exc).__name__ + (": " + msg[-1] if msg else "")
        return result
    delegated, total, partitions, undelegated = delegation_summary(ops)
    result.update(delegated_nodes=delegated, total_nodes=total, partitions=partitions,
                  whole_graph=(partitions == 1 and delegated == total),
                  undelegated_ops=undelegated)
    return result


_TFLITE_RUNTIME_SCRIPT = r"""
import json, sys
import numpy as np
model, x_path = sys.argv[1], sys.argv[2]
out = {"package": "tflite-runtime"}
try:
    import tflite_runtime
    from tflite_runtime.interpreter import Interpreter
    out["version"] = getattr(tflite_runtime, "__version__", None)
    out["numpy"] = np.__version__
    it = Interpreter(model_path=model, num_threads=1)
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    x = np.load(x_path).astype(i["dtype"])
    it.set_tensor(i["index"], x)
    it.invoke()
    np.save(x_path + ".out.npy", it.get_tensor(o["index"]).astype(np.float32))
    out["status"] = "ok"
except Exception as exc:
    msg = str(exc).strip().splitlines()
    out["status"] = "failed"
    out["detail"] = type(exc).__name__ + (": " + msg[-1] if msg else "")
print("EDGE_SEG_RESULT " + json.dumps(out))
"""


def check_tflite_runtime(model_bytes, x, python=None, timeout=300):
    """Load and run ``model_bytes`` on one input ``x`` (1, S, S, C) in tflite-runtime.

    python: the interpreter of a numpy<2 environment with tflite-runtime installed; default
    from ``EDGE_SEG_TFLITE_RUNTIME_PYTHON``. Returns a dict with ``status`` "ok", "failed" or
    "not checked" and, when it ran, the output (key ``output``, not for the manifest).
    """
    python = python or os.environ.get(TFLITE_RUNTIME_ENV)
    if not python:
        return {"package": "tflite-runtime", "version": None, "status": "not checked",
                "detail": f"no tflite-runtime Python given (set {TFLITE_RUNTIME_ENV})"}
    if not Path(python).exists():
        return {"package": "tflite-runtime", "version": None, "status": "not checked",
                "detail": f"{python}: no such Python executable"}
    with tempfile.TemporaryDirectory(prefix="edge-seg-tflrt-") as tmp:
        model_path = Path(tmp) / "model.tflite"
        model_path.write_bytes(bytes(model_bytes))
        x_path = Path(tmp) / "x.npy"
        np.save(x_path, np.asarray(x, dtype=np.float32))
        try:
            proc = subprocess.run([python, "-c", _TFLITE_RUNTIME_SCRIPT, str(model_path),
                                   str(x_path)], capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return {"package": "tflite-runtime", "version": None, "status": "failed",
                    "detail": f"{python}: {exc}"}
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("EDGE_SEG_RESULT ")]
        if not lines:
            err = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
            return {"package": "tflite-runtime", "version": None, "status": "failed",
                    "detail": f"{python}: {err}"}
        result = json.loads(lines[-1][len("EDGE_SEG_RESULT "):])
        out_path = Path(str(x_path) + ".out.npy")
        if result.get("status") == "ok" and out_path.exists():
            result["output"] = np.load(out_path)
        return result


def check_interpreters(model_bytes, x, reference=None, tflite_runtime_python=None):
    """Which interpreter packages load and run the model on ``x`` (1, S, S, C).

    reference: the expected output (e.g. ai-edge-litert's) to report the max abs difference.
    Returns a list of dicts {package, version, status, detail?, max_abs_diff?}.
    """
    x = np.asarray(x, dtype=np.float32)
    rows = []
    litert = {"package": "ai-edge-litert", "version": _package_version("ai-edge-litert")}
    try:
        out = run_tflite(model_bytes, x)
        litert["status"] = "ok"
        if reference is None:
            reference = out
        else:
            litert["max_abs_diff"] = float(np.max(np.abs(out - reference)))
    except Exception as exc:  # noqa: BLE001
        litert.update(status="failed", detail=f"{type(exc).__name__}: {exc}".splitlines()[0])
    rows.append(litert)
    tflrt = check_tflite_runtime(model_bytes, x[:1], tflite_runtime_python)
    output = tflrt.pop("output", None)
    if output is not None and reference is not None:
        tflrt["max_abs_diff"] = float(np.max(np.abs(output - np.asarray(reference)[:1])))
    rows.append(tflrt)
    return rows

