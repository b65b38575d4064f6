"""The committed tiny model (tests/fixtures/tiny_64.tflite) is what its script builds."""

import numpy as np
import pytest

from conftest import TINY_SIZE, TINY_TFLITE


def _run(model_bytes, x):
    from edge_runtime.interpreter import make_interpreter, run_model
    return run_model(make_interpreter(model_bytes, threads=1), x)


def test_committed_tiny_model_computes_what_the_script_builds():
    pytest.importorskip("tensorflow")
    from fixtures.make_tiny_tflite import build_tiny_tflite

    rng = np.random.default_rng(0)
    x = rng.random((1, TINY_SIZE, TINY_SIZE, 1), dtype=np.float32)
    x[0, 20:40, 20:40, 0] = 1.0
    committed = _run(TINY_TFLITE.read_bytes(), x)
    rebuilt = _run(build_tiny_tflite(), x)
    np.testing.assert_allclose(committed, rebuilt, atol=1e-6)


def test_committed_int8_model_is_what_the_script_builds():
    pytest.importorskip("tensorflow")
    from fixtures.make_tiny_tflite import INT8_OUT, build_tiny_tflite

    x = np.zeros((1, TINY_SIZE, TINY_SIZE, 1), np.float32)
    x[0, 20:40, 20:40, 0] = 1.0
    committed = _run(INT8_OUT.read_bytes(), x)
    rebuilt = _run(build_tiny_tflite(int8=True), x)
    np.testing.assert_allclose(committed, rebuilt, atol=1 / 256 + 1e-6)   # one int8 code


@pytest.mark.device
def test_tiny_model_marks_bright_regions_only():
    x = np.zeros((1, TINY_SIZE, TINY_SIZE, 1), np.float32)
    x[0, 20:40, 20:40, 0] = 1.0
    prob = np.asarray(_run(TINY_TFLITE.read_bytes(), x)).reshape(TINY_SIZE, TINY_SIZE)
    assert prob[30, 30] > 0.99 and prob[5, 5] < 0.01
