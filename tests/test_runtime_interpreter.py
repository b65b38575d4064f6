"""make_interpreter / run_model / interpreter_info, and the device package's TensorFlow-freedom."""

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edge_runtime import interpreter as interp_mod
from edge_runtime.cli import main
from edge_runtime.errors import BundleError
from edge_runtime.interpreter import (ENV_VAR, InterpreterUnavailableError, interpreter_info,
                                      make_interpreter, run_model)

pytestmark = pytest.mark.device  # runs in a device-only install (no TensorFlow)

PACKAGE = Path(__file__).resolve().parents[1] / "edge_runtime"
RUNTIME_MODULES = sorted(
    ".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
    for p in PACKAGE.rglob("*.py"))


def test_bad_env_value_lists_allowed(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "onnx")
    with pytest.raises(InterpreterUnavailableError) as err:
        interpreter_info()
    assert "'onnx'" in str(err.value) and "litert, tflite_runtime, tensorflow" in str(err.value)


def test_forced_litert(monkeypatch):
    pytest.importorskip("ai_edge_litert")
    monkeypatch.setenv(ENV_VAR, "litert")
    assert interpreter_info()["package"] == "ai-edge-litert"
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and "ai-edge-litert" in result.output


def test_forced_missing_package_is_one_clear_error(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "tflite_runtime")
    monkeypatch.setitem(sys.modules, "tflite_runtime", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", None)
    with pytest.raises(InterpreterUnavailableError, match="cannot be imported"):
        interpreter_info()


@pytest.mark.parametrize("machine,pointer,is_32", [
    ("armv7l", 4, True), ("aarch64", 4, True), ("aarch64", 8, False), ("x86_64", 8, False)])
def test_no_interpreter_message_names_the_32bit_arm_case(monkeypatch, machine, pointer, is_32):
    import platform
    import struct
    monkeypatch.setattr(platform, "machine", lambda: machine)
    real = struct.calcsize
    monkeypatch.setattr(struct, "calcsize", lambda f: pointer if f == "P" else real(f))
    monkeypatch.delenv(ENV_VAR, raising=False)

    def absent(name):
        raise ImportError(name)
    monkeypatch.setattr(interp_mod, "_load_backend", absent)
    with pytest.raises(InterpreterUnavailableError) as err:
        interpreter_info()
    text = str(err.value)
    assert "no TFLite interpreter installed" in text and "\n" not in text
    assert ("32-bit ARM is not supported" in text) == is_32


def test_default_resolver_keeps_xnnpack(monkeypatch):
    seen = {}

    class FakeInterpreter:
        def __init__(self, **kwargs):
            seen.update(kwargs)

        def allocate_tensors(self):
            pass

    monkeypatch.setattr(interp_mod, "_load_backend", lambda name: (FakeInterpreter, "fake", "0"))
    monkeypatch.delenv(ENV_VAR, raising=False)
    make_interpreter(b"model", threads=3)
    assert seen["num_threads"] == 3
    assert "experimental_op_resolver_type" not in seen   # AUTO: XNNPACK applied by default
    assert "experimental_delegates" not in seen


def test_run_model_shapes(tiny_tflite_bytes, tmp_path):
    path = tmp_path / "m.tflite"
    path.write_bytes(tiny_tflite_bytes)
    for model in (tiny_tflite_bytes, path):
        it = make_interpreter(model, threads=1)
        x = np.zeros((64, 64), np.float32)
        x[20:40, 20:40] = 1.0
        prob = run_model(it, x)
        assert prob.shape == (64, 64) and prob.dtype == np.float32
        assert prob[30, 30] > 0.99 and prob[2, 2] < 0.01
        assert run_model(it, x[..., None]).shape == (64, 64)
        batch = run_model(it, np.stack([x, np.zeros_like(x)])[..., None])
        assert batch.shape == (2, 64, 64)
        np.testing.assert_allclose(batch[0], prob)
        with pytest.raises(ValueError, match=r"\(1, 64, 64, 1\)"):
            run_model(it, np.zeros((32, 32), np.float32))


def test_bad_threads_and_bad_model():
    with pytest.raises(ValueError, match="threads"):
        make_interpreter(b"xx", threads=0)
    with pytest.raises(BundleError, match="cannot load the model"):
        make_interpreter(b"\x00" * 64, threads=1)


def test_no_tensorflow_imports_in_device_package():
    pattern = re.compile(r"^\s*(import|from)\s+(tensorflow|keras|tf_keras)\b", re.M)
    offenders = [str(p) for p in PACKAGE.rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


def test_device_package_works_with_tensorflow_blocked(tiny_bundle, tmp_path):
    """Every edge_runtime module imports, and `edge-seg run` segments, with TF unimportable."""
    from PIL import Image
    scan = np.zeros((80, 90), np.uint8)
    scan[30:50, 30:60] = 200
    Image.fromarray(scan).save(tmp_path / "scan.png")
    commands = ["run"] + (["bench"] if (PACKAGE / "commands" / "bench.py").exists() else [])
    code = textwrap.dedent(f"""
        import importlib, sys
        class Blocker:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("tensorflow", "keras", "tf_keras"):
                    raise ImportError("blocked for the test: " + name)
                return None
        sys.meta_path.insert(0, Blocker())
        for name in {RUNTIME_MODULES!r}:
            importlib.import_module(name)
        from edge_runtime.cli import main
        for cmd in {commands!r}:
            try:
                main([cmd, "--help"])
            except SystemExit as exc:
                assert exc.code == 0, (cmd, exc.code)
        try:
            main(["run", {str(tmp_path / "scan.png")!r}, "--bundle", {str(tiny_bundle)!r},
                  "--out", {str(tmp_path / "out")!r}, "--threads", "1"])
        except SystemExit as exc:
            assert exc.code == 0, exc.code
        assert not any(m.split(".")[0] in ("tensorflow", "keras") for m in sys.modules)
        print("OK")
    """)
    env = {k: v for k, v in __import__("os").environ.items() if k != ENV_VAR}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "OK" in proc.stdout
    assert (tmp_path / "out" / "scan_mask.png").is_file()
