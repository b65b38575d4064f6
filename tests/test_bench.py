"""``edge-seg bench`` and the benchmark library on the tiny bundle (runs=3: fast)."""

import csv
import io
import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edge_runtime import benchmark as B

pytestmark = pytest.mark.device  # runs in a device-only install (no TensorFlow)

# Every per-model field the JSON and CSV must carry.
REQUIRED = ("model", "name", "format", "threads", "status", "error", "file_bytes", "size_mb",
            "interpreter", "interpreter_version", "load_ms", "first_ms", "mean_ms", "std_ms",
            "p50_ms", "p90_ms", "p99_ms", "min_ms", "fps", "gflop", "gflops_achieved",
            "sgemm_gflops_1t", "rss_model_mb", "rss_peak_mb", "e2e_ms", "e2e_pre_ms",
            "e2e_interp_ms", "e2e_post_ms")
MACHINE = ("cpu", "arch", "cores_logical", "governor", "python", "os")

# tiny model of conftest: 3x3 conv 1->2 channels and 1x1 conv 2->1 on 64x64
TINY_MACS = 64 * 64 * 2 * 3 * 3 * 1 + 64 * 64 * 1 * 2


def test_count_macs_of_tiny_model(tiny_tflite_bytes):
    cost = B.count_macs(tiny_tflite_bytes)
    assert cost["macs"] == TINY_MACS
    assert cost["gflop"] == pytest.approx(2 * TINY_MACS / 1e9)
    assert cost["by_op"] == {"CONV_2D": TINY_MACS}
    with pytest.raises(ValueError, match="TFL3"):
        B.count_macs(b"garbage!")


def test_count_macs_all_layer_kinds():
    tf = pytest.importorskip("tensorflow")
    keras = tf.keras
    inp = keras.Input((16, 16, 1), batch_size=1)
    x = keras.layers.Conv2D(4, 3, padding="same")(inp)                  # 16*16*4*9
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)              # 16*16*4*9
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same")(x)         # 8*8*4*9*4
    x = keras.layers.Conv2DTranspose(4, 2, strides=2)(x)                # 8*8*4*2*2*4
    x = keras.layers.Conv2D(1, 1, activation="sigmoid")(x)              # 16*16*4
    model = keras.Model(inp, x)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]                     # DRQ: int8 weights
    cost = B.count_macs(conv.convert())
    assert cost["by_op"]["DEPTHWISE_CONV_2D"] == 16 * 16 * 4 * 9
    assert cost["by_op"]["TRANSPOSE_CONV"] == 8 * 8 * 4 * 2 * 2 * 4
    assert cost["macs"] == 16 * 16 * 4 * 9 * 2 + 8 * 8 * 4 * 9 * 4 + 8 * 8 * 64 + 16 * 16 * 4


def test_count_macs_agrees_with_litert_schema(tiny_tflite_bytes):
    schema = pytest.importorskip("ai_edge_litert.schema_py_generated")
    pytest.importorskip("flatbuffers")
    model = schema.ModelT.InitFromPackedBuf(tiny_tflite_bytes, 0)
    sub = model.subgraphs[0]
    want = 0
    for op in sub.operators:
        code = model.operatorCodes[op.opcodeIndex]
        if max(code.builtinCode, code.deprecatedBuiltinCode) == B.CONV_2D:
            out = sub.tensors[op.outputs[0]].shape
            filt = sub.tensors[op.inputs[1]].shape
            want += int(np.prod(out)) * int(np.prod(filt[1:]))
    assert B.count_macs(tiny_tflite_bytes)["macs"] == want


def test_parse_threads():
    from edge_runtime.commands.bench import parse_threads
    from edge_runtime.errors import EdgeSegError
    assert parse_threads("1,2,4") == [1, 2, 4]
    assert parse_threads("2, 2 ,1") == [2, 1]
    for bad in ("0", "a", ",", "-1"):
        with pytest.raises(EdgeSegError, match="--threads"):
            parse_threads(bad)


@pytest.fixture()
def scan_png(tmp_path):
    img = np.zeros((80, 96), np.uint8)
    img[20:40, 30:60] = 220
    path = tmp_path / "scan.png"
    Image.fromarray(img).save(path)
    return path


def test_cli_bench_json_csv_and_a_failing_model(tiny_bundle, tiny_tflite_bytes, scan_png,
                                                tmp_path):
    from edge_runtime.cli import main
    bare = tmp_path / "tiny_drq.tflite"            # a bare .tflite: format from its suffix
    bare.write_bytes(tiny_tflite_bytes)
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"not a bundle")
    out_json, out_csv = tmp_path / "b.json", tmp_path / "b.csv"
    r = CliRunner().invoke(main, [
        "bench", str(tiny_bundle), str(broken), str(bare), "--threads", "1,2", "--runs", "3",
        "--warmup", "1", "--image", str(scan_png), "--json", str(out_json),
        "--csv", str(out_csv), "-q", "--allow-untrusted"])   # the bare .tflite is untrusted
    assert r.exit_code == 1, r.output                   # one model failed
    assert "FAILED" in r.output and "not a zip archive" in r.output
    assert "machine:" in r.output and "p99" in r.output

    report = json.loads(out_json.read_text())
    for key in MACHINE:
        assert key in report["machine"], key
    assert report["settings"]["runs"] == 3
    rows = report["results"]
    assert len(rows) == 6                                # 3 models x 2 thread counts
    ok = [row for row in rows if row["status"] == "ok"]
    failed = [row for row in rows if row["status"] == "FAILED"]
    assert len(ok) == 4 and len(failed) == 2
    for row in ok:
        for key in REQUIRED:
            assert row.get(key) is not None, key
        assert row["min_ms"] <= row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]
        assert row["gflop"] == pytest.approx(2 * TINY_MACS / 1e9)
        assert row["e2e_ms"] >= row["e2e_interp_ms"]
        assert row["rss_peak_mb"] > row["rss_model_mb"] > 0
    assert {row["format"] for row in ok} == {"fp32", "drq"}
    assert {row["threads"] for row in ok} == {1, 2}
    assert all(row["error"] for row in failed)

    with open(out_csv, newline="") as fh:
        csv_rows = list(csv.DictReader(fh))
    assert len(csv_rows) == 6
    for key in REQUIRED + ("machine_cpu", "machine_governor"):
        assert key in csv_rows[0], key


def test_run_benchmark_failure_mid_run_does_not_stop_others(tiny_bundle, monkeypatch):
    from edge_runtime.bench import timing
    # a model whose interpreter dies while timing: its row fails, the other is measured
    report = B.run_benchmark([str(tiny_bundle), str(tiny_bundle)], threads=[1], runs=3,
                             warmup=0, memory=False, sgemm=False)
    assert [r["status"] for r in report["results"]] == ["ok", "ok"]

    calls = {"n": 0}
    real = timing._invoke_fn

    def flaky(interp):
        fn = real(interp)
        calls["n"] += 1
        if calls["n"] == 1:
            def dying(x):
                raise RuntimeError("interpreter crashed")
            return dying
        return fn
    monkeypatch.setattr(timing, "_invoke_fn", flaky)      # the loop's own name for it
    report = B.run_benchmark([str(tiny_bundle), str(tiny_bundle)], threads=[1], runs=3,
                             warmup=0, memory=False, sgemm=False)
    first, second = report["results"]
    assert first["status"] == "FAILED" and "interpreter crashed" in first["error"]
    assert second["status"] == "ok" and second["mean_ms"] > 0
    assert "FAILED" in B.format_table(report)


def test_sgemm_ceiling_runs_single_threaded():
    sg = B.sgemm_ceiling(n=128, seconds=0.05)
    assert sg["gflops"] and sg["gflops"] > 0


def test_bench_without_default_bundle_is_one_line(monkeypatch, tmp_path):
    from edge_runtime import bundle
    from edge_runtime.cli import main
    monkeypatch.setattr(bundle, "default_bundle_path", lambda: tmp_path / "default.zip")
    r = CliRunner().invoke(main, ["bench", "--runs", "1"])
    assert r.exit_code == 3
    assert len(r.output.strip().splitlines()) == 1 and "default" in r.output
    assert CliRunner().invoke(main, ["bench", "--help"]).exit_code == 0


def test_my_modules_do_not_import_tensorflow():
    code = ("import sys, edge_runtime.metrics, edge_runtime.evaluate, edge_runtime.benchmark, "
            "edge_runtime.bench, edge_runtime.bench.suite, edge_runtime.kit, "
            "edge_runtime.commands.bench, edge_runtime.commands.evaluate; "
            "bad = [m for m in ('tensorflow', 'keras') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_table_renders_missing_values():
    report = {"settings": {"threads": [1], "runs": 1, "warmup": 0, "order": "x", "input": "y"},
              "machine": {"cpu": "c", "arch": "a", "cores_usable": 1, "cores_logical": 1,
                          "governor": None, "memory_gb": 1, "load_avg_1min": None,
                          "python": "3", "os": "o", "interpreter": "i",
                          "interpreter_version": "v"},
              "sgemm": {"gflops": None}, "results": [], "warnings": ["w"]}
    text = B.format_table(report)
    assert "governor unreadable" in text and "warning: w" in text
    io.StringIO(B.results_csv(report))


def test_fresh_process_memory_is_its_own_not_its_parents(tiny_bundle):
    """A memory probe in a child must not inherit this (big) process's peak: Linux keeps
    ru_maxrss across fork + exec, which once made every model look like 1 GB."""
    import numpy as np

    from edge_runtime.benchmark import measure_memory

    ballast = np.ones(600 * 2**20, dtype=np.uint8)   # this process now peaks above 600 MB
    mem = measure_memory(tiny_bundle, threads=1)
    assert ballast.sum() == ballast.size
    assert 0 < mem["rss_peak_mb"] < 400, mem
    assert mem["rss_peak_mb"] >= mem["rss_after_mb"] - 1
