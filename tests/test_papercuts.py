"""What a user sees on every command: no native INFO noise, a short `bundle info`, and no file
named after an option."""

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from edge_runtime.cli import main

pytestmark = pytest.mark.device  # runs in a device-only install (no TensorFlow)

ROOT = Path(__file__).resolve().parents[1]


def test_run_prints_no_native_info_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "edge_runtime.cli", "run", str(ROOT / "examples" / "glioma_718.png"),
         "--out", str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "XNNPACK delegate" not in proc.stderr and "INFO:" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "1 done, 0 failed"


def test_bundle_info_is_a_summary_and_full_prints_everything():
    short = CliRunner().invoke(main, ["bundle", "info"])
    full = CliRunner().invoke(main, ["bundle", "info", "--full"])
    assert short.exit_code == 0 and full.exit_code == 0
    lines = short.output.splitlines()
    assert len(lines) <= 15, short.output
    text = short.output
    assert "resunet_se_gpu_p192_soup50_drq" in text and "threshold 0.5" in text
    assert "Dice drop +0.0018" in text and "tumour-free flagged 2.8 %" in text
    assert len(full.output.splitlines()) > 3 * len(lines)
    assert "max_abs_prob_diff" in full.output and "max_abs_prob_diff" not in text


@pytest.mark.parametrize("option", ["--json", "--csv"])
def test_bench_refuses_an_option_as_a_file_name(tmp_path, monkeypatch, option):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["bench", option, "--threads", "1", "--runs", "1"])
    assert result.exit_code == 2
    assert "looks like an option" in result.output
    assert not (tmp_path / "--threads").exists()


def test_fp32_sgemm_ceiling_is_applied_to_float_formats_only():
    from edge_runtime.benchmark import TABLE_COLUMNS, _float_arithmetic
    from edge_runtime.formats import FORMATS
    assert {f.name for f in FORMATS if _float_arithmetic(f.name)} == {"fp32", "fp16"}
    assert not _float_arithmetic("unknown")
    assert ("%fp32 sgemm", "pct_of_sgemm", 0) in TABLE_COLUMNS
