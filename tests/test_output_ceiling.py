"""A full-integer model's output tops out below 1 (255/256 for the int8 sigmoid): a threshold
or peak-probability gate above it would make a bundle say "no tumour" on every scan. The
runtime refuses such a bundle, calibrate never chooses such a setting, and (tests/test_convert.py)
the converter lowers and records it. The int8 model is the committed tiny fixture."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import FIXTURES, TINY_SIZE
from edge_runtime.bundle import load_bundle, make_manifest, write_bundle
from edge_runtime.calibrate import MIN_PEAK_PROBABILITIES, filter_chain, grid
from edge_runtime.cli import main
from edge_runtime.errors import EXIT_BUNDLE, EXIT_OK, BundleError
from edge_runtime.evaluate import evaluate_bundle
from edge_runtime.interpreter import make_interpreter, output_ceiling, unreachable_setting
from edge_runtime.preprocess import Preprocessing
from edge_runtime.segment import Segmenter
from edge_runtime.trust import trust_bundle

pytestmark = pytest.mark.device

INT8_TFLITE = FIXTURES / f"tiny_{TINY_SIZE}_int8.tflite"
TOP = 255 / 256


def _int8_bundle(path, min_peak):
    manifest = make_manifest("tiny-int8", "int8", Preprocessing(input_size=TINY_SIZE),
                             threshold=0.5, min_area_fraction=0.0,
                             min_peak_probability=min_peak, variant="tiny", preset="test")
    write_bundle(path, INT8_TFLITE.read_bytes(), manifest, "# tiny-int8\n")
    trust_bundle(path)
    return path


def _scan(path):
    a = np.zeros((TINY_SIZE, TINY_SIZE), np.uint8)
    a[20:40, 20:40] = 220
    Image.fromarray(a).save(path)
    return path


def test_ceiling_is_the_top_int8_code_and_one_for_a_float_model(tiny_tflite_bytes):
    ceiling, detail = output_ceiling(make_interpreter(INT8_TFLITE.read_bytes(), threads=1))
    assert ceiling == TOP and "int8" in detail and "zero point -128" in detail
    assert output_ceiling(make_interpreter(tiny_tflite_bytes, threads=1)) == (1.0, None)
    interp = make_interpreter(INT8_TFLITE.read_bytes(), threads=1)
    x = np.zeros((TINY_SIZE, TINY_SIZE), np.float32)
    x[20:40, 20:40] = 1.0
    from edge_runtime.interpreter import run_model
    assert float(run_model(interp, x).max()) == ceiling      # the ceiling is reached
    assert unreachable_setting(interp, 0.5, ceiling) is None
    problem = unreachable_setting(interp, 0.5, 0.998)
    assert "min_peak_probability 0.998 above 0.99609375" in problem
    assert "could never report a tumour" in problem


def test_segmenter_and_evaluation_refuse_an_unreachable_setting(tmp_path):
    bad = load_bundle(_int8_bundle(tmp_path / "bad.zip", 0.998))
    with pytest.raises(BundleError, match="bad.zip: min_peak_probability 0.998 above"):
        Segmenter(bad, threads=1)
    with pytest.raises(BundleError, match="could never report a tumour"):
        evaluate_bundle(bad, [], threads=1)
    ok = load_bundle(_int8_bundle(tmp_path / "ok.zip", TOP))
    from edge_runtime.imageio import load_scan
    result = Segmenter(ok, threads=1).segment(load_scan(_scan(tmp_path / "s.png")))
    assert result.findings["tumour_found"] is True


def test_run_cli_refuses_in_one_line_and_writes_nothing(tmp_path):
    bad = _int8_bundle(tmp_path / "bad.zip", 0.998)
    scan = _scan(tmp_path / "s.png")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["run", str(scan), "--bundle", str(bad), "--out",
                                       str(out), "--threads", "1"])
    assert result.exit_code == EXIT_BUNDLE, result.output
    assert "Traceback" not in result.output and "could never report a tumour" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())
    ok = _int8_bundle(tmp_path / "ok.zip", 0.99)      # the same model, a reachable setting
    result = CliRunner().invoke(main, ["run", str(scan), "--bundle", str(ok), "--out",
                                       str(tmp_path / "out2"), "--threads", "1", "--json"])
    assert result.exit_code == EXIT_OK, result.output
    found = json.loads([x for x in result.stdout.splitlines() if x.startswith("{")][0])
    assert found["tumour_found"] is True


def test_calibration_candidates_stay_under_the_ceiling(tmp_path):
    assert max(MIN_PEAK_PROBABILITIES) > TOP           # else this test shows nothing
    assert all(p <= TOP and t <= TOP for t, _a, p in grid((0.5, 0.0, 0.9), ceiling=TOP))
    assert max(p for _t, _a, p in grid((0.5, 0.0, 0.9))) > TOP
    chain = filter_chain((0.5, 0.0, 0.9), ceiling=TOP)
    assert max(p for _t, _a, p in chain) <= TOP and chain[0] == (0.5, 0.0, 0.9)
    bad = _int8_bundle(tmp_path / "bad.zip", 0.998)
    neg = tmp_path / "neg"
    neg.mkdir()
    for i in range(80):
        Image.fromarray(np.zeros((TINY_SIZE, TINY_SIZE), np.uint8)).save(neg / f"n{i:02d}.png")
    result = CliRunner().invoke(main, ["calibrate", str(bad), "--negatives", str(neg),
                                       "--out", str(tmp_path / "site.zip")])
    assert result.exit_code == EXIT_BUNDLE, result.output
    assert "could never report a tumour" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "site.zip").exists()


def test_bundle_info_says_when_a_setting_was_lowered_for_the_format(tmp_path):
    manifest = make_manifest("tiny-int8", "int8", Preprocessing(input_size=TINY_SIZE),
                             threshold=0.5, min_area_fraction=0.0, min_peak_probability=TOP,
                             variant="tiny", preset="test",
                             setting_capped={"min_peak_probability": {"asked": 0.998,
                                                                      "used": TOP},
                                             "reason": "above 0.99609375, the largest ..."})
    path = write_bundle(tmp_path / "capped.zip", INT8_TFLITE.read_bytes(), manifest, "# t\n")
    result = CliRunner().invoke(main, ["bundle", "info", str(path)])
    assert result.exit_code == EXIT_OK, result.output
    assert "lowered:     min_peak_probability 0.998 -> 0.996094 for this format" in \
        result.output
    plain = _int8_bundle(tmp_path / "plain.zip", TOP)
    assert "lowered:" not in CliRunner().invoke(main, ["bundle", "info", str(plain)]).output
