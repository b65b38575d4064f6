"""bench/arm/emulate.py: what can be checked without emulation (fast), and the real run (slow).

The slow test builds (or reuses) the cached arm64 sysroot under $EDGE_SEG_ARM_CACHE and runs
edge-seg under qemu-aarch64-static: minutes on a warm cache, more on a cold one.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.arm import emulate

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "arm" / "emulate.sh"


# ----------------------------------------------------------------------------- mask comparison

def test_identical_masks():
    a = np.zeros((20, 30), np.uint8)
    a[5:10, 5:15] = 255
    row = emulate.mask_agreement(a, a.copy())
    assert row["status"] == "identical"
    assert row["dice"] == 1.0 and row["differing_px"] == 0


def test_both_empty_is_identical():
    row = emulate.mask_agreement(np.zeros((8, 8)), np.zeros((8, 8)))
    assert row["status"] == "identical" and row["dice"] == 1.0


def test_boundary_flip_is_close():
    a = np.zeros((100, 100), bool)
    a[20:80, 20:80] = True                  # 3600 px
    b = a.copy()
    b[20, 20] = False                       # one boundary pixel flipped
    row = emulate.mask_agreement(a, b)
    assert row["status"] == "close"
    assert row["differing_px"] == 1
    assert row["dice"] == pytest.approx(2 * 3599 / (3600 + 3599))
    assert row["off_boundary_px"] == 0 and "boundary" in row["detail"]


def test_flips_away_from_the_boundary_are_counted():
    a = np.zeros((100, 100), bool)
    a[20:80, 20:80] = True
    b = a.copy()
    b[50, 50] = False                       # a hole inside the tumour
    b[5, 5] = True                          # a speck far outside it
    b[19, 40] = True                        # grows the edge by one pixel: on the boundary
    row = emulate.mask_agreement(a, b)
    assert row["differing_px"] == 3 and row["off_boundary_px"] == 2
    assert "2 differing px off" in row["detail"]


def test_boundary_only_flips_below_the_tolerance_are_a_warning():
    a = np.zeros((100, 100), bool)
    a[40:60, 40:60] = True                  # 400 px
    b = a.copy()
    b[40, 40:44] = False                    # 4 edge pixels lost: Dice 0.99497 < 0.999
    b[39, 50] = True                        # 1 grown
    row = emulate.mask_agreement(a, b)
    assert row["off_boundary_px"] == 0 and row["dice"] < 0.999
    assert row["status"] == ("boundary" if row["dice"] >= emulate.BOUNDARY_FLOOR
                             else "DIFFERENT")
    b2 = a.copy()
    b2[40, 40:42] = False                   # 2 px: Dice 0.9975, on the boundary
    assert emulate.mask_agreement(a, b2)["status"] == "boundary"
    assert emulate.rows_ok([{"status": "boundary"}, {"status": "identical"}])
    b2[50, 50] = False                      # plus a hole inside: no longer rounding
    assert emulate.mask_agreement(a, b2)["status"] == "DIFFERENT"
    assert not emulate.rows_ok([{"status": "DIFFERENT"}])


def test_low_dice_is_different():
    a = np.zeros((10, 10), bool)
    a[2:5, 2:5] = True
    b = np.zeros((10, 10), bool)
    b[2:5, 2:4] = True
    row = emulate.mask_agreement(a, b)
    assert row["status"] == "DIFFERENT"
    assert row["dice"] == pytest.approx(2 * 6 / 15)


def test_one_empty_is_different():
    a = np.zeros((10, 10), bool)
    b = a.copy()
    b[0, 0] = True
    row = emulate.mask_agreement(a, b)
    assert row["status"] == "DIFFERENT" and row["dice"] == 0.0


def test_shape_mismatch_is_different():
    row = emulate.mask_agreement(np.zeros((4, 5)), np.zeros((5, 4)))
    assert row["status"] == "DIFFERENT" and "shape" in row["detail"]


def test_tolerance_is_a_parameter():
    a = np.zeros((10, 10), bool)
    a[0:5, :] = True
    b = a.copy()
    b[0, 0] = False
    assert emulate.mask_agreement(a, b, tolerance=0.999)["status"] == "DIFFERENT"
    assert emulate.mask_agreement(a, b, tolerance=0.98)["status"] == "close"


def _save(path, mask):
    Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(path)


def test_compare_runs_reads_mask_pngs(tmp_path):
    ref, arm = tmp_path / "x86", tmp_path / "arm"
    ref.mkdir()
    arm.mkdir()
    m = np.zeros((32, 32), bool)
    m[8:24, 8:24] = True
    _save(ref / "a_mask.png", m)
    _save(arm / "a_mask.png", m)
    flipped = m.copy()
    flipped[8, 8] = False
    _save(ref / "b_mask.png", m)
    _save(arm / "b_mask.png", flipped)
    _save(ref / "c_mask.png", m)            # no aarch64 result
    (ref / "a_overlay.png").write_bytes(b"not compared")
    rows = {r["scan"]: r for r in emulate.compare_runs(ref, arm, tolerance=0.99)}
    assert [rows[k]["status"] for k in "abc"] == ["identical", "close", "MISSING"]
    assert not emulate.rows_ok(list(rows.values()))
    assert emulate.rows_ok([rows["a"], rows["b"]])
    assert not emulate.rows_ok([])          # nothing compared is not a pass
    assert "MISSING" in emulate.format_row(rows["c"])


def test_summary_line_counts():
    report = {"interpreters": {
        "litert": {"masks": [{"status": "identical", "dice": 1.0},
                             {"status": "close", "dice": 0.9995}]},
        "tflite_runtime": {"masks": [{"status": "DIFFERENT", "dice": 0.5}]},
        "x": {"masks": [{"status": "boundary", "dice": 0.9986}]}}}
    line = emulate.summary_line(report)
    assert "x: 0 identical, 0 close, 1 WARNING boundary-only" in line and "0.99860" in line
    assert "litert: 1 identical, 1 close (min Dice 0.99950)" in line
    assert "tflite_runtime: 0 identical, 0 close, 1 DIFFERENT" in line


# ----------------------------------------------------------------------------- arguments

@pytest.fixture()
def inputs(tmp_path):
    bundle = tmp_path / "b.zip"
    bundle.write_bytes(b"zip")
    scans = tmp_path / "scans"
    scans.mkdir()
    return bundle, scans


def test_parse_defaults(inputs, tmp_path, monkeypatch):
    bundle, scans = inputs
    monkeypatch.setenv("EDGE_SEG_ARM_CACHE", str(tmp_path / "cache"))
    args = emulate.parse_args(["--bundle", str(bundle), "--scans", str(scans)])
    assert args.interpreters == ["litert", "tflite_runtime"]
    assert args.cache == (tmp_path / "cache").resolve()
    assert args.out == args.cache / "out"
    assert args.tolerance == emulate.DICE_TOLERANCE
    assert args.scans == [scans.resolve()]


def test_parse_default_bundle_is_the_shipped_one():
    parser = emulate.build_parser()
    assert parser.get_default("bundle") == ROOT / "edge_runtime" / "models" / "default.zip"
    assert parser.get_default("scans") == [ROOT / "examples"]


def test_parse_cache_default_without_env(monkeypatch):
    monkeypatch.delenv("EDGE_SEG_ARM_CACHE", raising=False)
    assert emulate.default_cache() == Path.home() / ".cache" / "edge-seg" / "arm64"


def test_parse_options(inputs, tmp_path):
    bundle, scans = inputs
    args = emulate.parse_args(["--bundle", str(bundle), "--scans", str(scans), str(bundle),
                               "--interpreters", "tflite_runtime, tflite_runtime",
                               "--cache", str(tmp_path / "c"), "--out", str(tmp_path / "o"),
                               "--tolerance", "0.99", "--no-bench"])
    assert args.interpreters == ["tflite_runtime"]
    assert args.out == (tmp_path / "o").resolve()
    assert len(args.scans) == 2 and args.no_bench and args.tolerance == 0.99


@pytest.mark.parametrize("extra, message", [
    (["--interpreters", "tensorflow"], "--interpreters"),
    (["--interpreters", ","], "--interpreters"),
    (["--tolerance", "1.5"], "--tolerance"),
    (["--tolerance", "0"], "--tolerance"),
])
def test_parse_rejects(inputs, extra, message):
    bundle, scans = inputs
    with pytest.raises(emulate.UsageError, match=message):
        emulate.parse_args(["--bundle", str(bundle), "--scans", str(scans), *extra])


def test_parse_missing_paths(inputs, tmp_path):
    bundle, scans = inputs
    with pytest.raises(emulate.UsageError, match="bundle not found"):
        emulate.parse_args(["--bundle", str(tmp_path / "nope.zip"), "--scans", str(scans)])
    with pytest.raises(emulate.UsageError, match="scans not found"):
        emulate.parse_args(["--bundle", str(bundle), "--scans", str(tmp_path / "nope")])


def test_parse_out_may_not_hold_the_scans(inputs):
    bundle, scans = inputs
    with pytest.raises(emulate.UsageError, match="overlaps"):
        emulate.parse_args(["--bundle", str(bundle), "--scans", str(scans), "--out", str(scans)])
    with pytest.raises(emulate.UsageError, match="overlaps"):
        emulate.parse_args(["--bundle", str(bundle), "--scans", str(scans),
                            "--out", str(scans.parent)])


def test_exit_codes_are_distinct():
    codes = [emulate.EXIT_OK, emulate.EXIT_MISMATCH, emulate.EXIT_USAGE, emulate.EXIT_SETUP,
             emulate.EXIT_NO_NETWORK]
    assert len(set(codes)) == len(codes)
    assert emulate.NoNetwork("x").exit_code == 77


def test_main_usage_error_is_one_line(tmp_path, capsys):
    assert emulate.main(["--bundle", str(tmp_path / "missing.zip")]) == emulate.EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("arm: usage: bundle not found")


def test_script_help_runs():
    proc = subprocess.run(["bash", str(SCRIPT), "--help"], capture_output=True, text=True,
                          env=dict(os.environ, PYTHON=sys.executable), timeout=60)
    assert proc.returncode == 0 and "--bundle" in proc.stdout and "77" in proc.stdout


def test_ci_hook_summary_on_usage_error(tmp_path):
    proc = subprocess.run(["bash", str(ROOT / "bench" / "arm" / "ci.sh"),
                           "--bundle", str(tmp_path / "missing.zip")],
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHON=sys.executable))
    assert proc.returncode == emulate.EXIT_USAGE
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("ARM aarch64 check: FAILED (exit 2): bundle not found")


def test_network_errors_are_recognised():
    assert emulate._looks_offline("Temporary failure in name resolution")
    assert emulate._looks_offline("ERROR: ... Max retries exceeded with url: /simple/numpy/")
    assert not emulate._looks_offline("No matching distribution found for numpy")


def test_cpuinfo_is_a_cortex_a72(tmp_path):
    emulate.write_cpuinfo(tmp_path)
    text = (tmp_path / "proc" / "cpuinfo").read_text()
    assert "CPU part\t: 0xd08" in text and "CPU implementer\t: 0x41" in text
    assert text.count("processor\t:") == (os.cpu_count() or 1)


# ----------------------------------------------------------------------------- the kit

def test_emulation_kit_leaves_out_the_paper_size_references(tmp_path, tiny_bundle):
    from edge_runtime.kit import add_bundle, load_kit, missing_entry, write_kit
    kit = tmp_path / "kit"
    write_kit(kit, [add_bundle(kit, tiny_bundle, "shipped", "shipped"),
                    add_bundle(kit, tiny_bundle, "ref", "paper-reference"),
                    missing_entry("v", "variant", reason="not converted", make="x")])
    copy = emulate.emulation_kit(kit, tmp_path / "copy")
    assert (copy / "models" / "shipped.zip").is_file()
    assert not (copy / "models" / "ref.zip").exists()
    models = {m.id: m for m in load_kit(copy).models}
    assert models["shipped"].status == "ok"
    assert models["ref"].status == "missing" and "not in this copy" in models["ref"].reason
    assert models["v"].status == "missing"


def test_emulation_kit_with_references_carries_their_templates_only(tmp_path, tiny_bundle):
    from edge_runtime.kit import (add_bundle, load_kit, materialize_seeded, write_kit,
                                  write_seeded_template)
    kit = tmp_path / "kit"
    template = write_seeded_template(kit / "models" / "ref.template.zip", tiny_bundle)
    full = materialize_seeded(template, 0, tmp_path / "work" / "ref.zip")
    write_kit(kit, [add_bundle(kit, tiny_bundle, "shipped", "shipped"),
                    add_bundle(kit, full, "ref", "paper-reference",
                               seeded_from={"template": "models/ref.template.zip", "seed": 0,
                                            "scheme": "pcg64-raw-v1"})])
    assert (kit / "models" / "ref.zip").is_file()
    copy = emulate.emulation_kit(kit, tmp_path / "copy", references=True)
    assert (copy / "models" / "ref.template.zip").is_file()
    assert not (copy / "models" / "ref.zip").exists()      # made again where the suite runs
    models = {m.id: m for m in load_kit(copy, materialize=True).models}
    assert models["ref"].status == "ok" and (copy / "models" / "ref.zip").is_file()


def test_check_kit_table(tmp_path):
    good = {"host": {"arch": "aarch64", "isa": ["NEON"]},
            "rows": [{"id": "shipped", "status": "ok", "p50_ms_t1": 5.0},
                     {"id": "ref", "status": "missing", "reason": "not in this copy"}]}
    path = tmp_path / "t.json"
    path.write_text(json.dumps(good))
    summary, problems = emulate.check_kit_table(path)
    assert problems == [] and summary["measured"] == 1 and summary["missing"] == 1
    _summary, problems = emulate.check_kit_table(path, complete=True)   # --kit-references
    assert problems == ["ref: missing (not in this copy)"]
    bad = dict(good, rows=[{"id": "shipped", "status": "FAILED", "reason": "crash"},
                           {"id": "v", "status": "missing", "reason": ""}])
    path.write_text(json.dumps(bad))
    _summary, problems = emulate.check_kit_table(path)
    assert len(problems) == 3 and "crash" in problems[0] and "no model measured" in problems


def test_parse_kit_must_hold_a_kit_json(inputs, tmp_path):
    bundle, scans = inputs
    with pytest.raises(emulate.UsageError, match="kit.json"):
        emulate.parse_args(["--bundle", str(bundle), "--scans", str(scans),
                            "--kit", str(tmp_path)])
    args = emulate.parse_args(["--bundle", str(bundle), "--scans", str(scans),
                               "--kit", str(tmp_path), "--no-kit"])
    assert args.no_kit


# ----------------------------------------------------------------------------- emulation

@pytest.mark.slow
def test_emulated_aarch64_matches_x86(tiny_bundle, tmp_path):
    """The whole check under qemu on the tiny bundle (both interpreters, bench included)."""
    if not shutil.which("qemu-aarch64-static") and os.geteuid() != 0:
        pytest.skip("qemu-user-static is not installed and apt-get needs root")
    scans = tmp_path / "scans"
    scans.mkdir()
    yy, xx = np.mgrid[:96, :80]
    img = 40 + 200 * (((yy - 40) ** 2 + (xx - 45) ** 2) < 15 ** 2)
    Image.fromarray(img.astype(np.uint8)).save(scans / "bright.png")
    Image.fromarray(np.full((64, 64), 90, np.uint8)).save(scans / "flat.png")
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(SCRIPT), "--bundle", str(tiny_bundle), "--scans",
                           str(scans), "--out", str(out)], capture_output=True, text=True,
                          env=dict(os.environ, PYTHON=sys.executable), timeout=3600)
    if proc.returncode == emulate.EXIT_NO_NETWORK:
        pytest.skip(proc.stderr.strip().splitlines()[-1])
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "arm_report.json").read_text())
    assert report["ok"]
    for name in ("litert", "tflite_runtime"):
        res = report["interpreters"][name]
        assert {r["scan"] for r in res["masks"]} == {"bright", "flat"}
        assert all(r["status"] in ("identical", "close") for r in res["masks"])
        assert res["bench"]["status"] == "ok"
        assert res["kit"]["exit"] == 0 and res["kit"]["measured"] >= 1
        assert res["kit"]["arch"] == "aarch64" and "NEON" in res["kit"]["isa"]
    assert "tflite-runtime" in report["interpreters"]["tflite_runtime"]["version"]
    assert "ai-edge-litert" in report["interpreters"]["litert"]["version"]
    tests = report["interpreters"]["litert"]["device_tests"]
    assert tests["passed"] > 0 and tests["failed"] == 0 and tests["exit"] == 0
    assert "site-packages" in tests["edge_runtime"]


# ----------------------------------------------------------------------------- device tests

def test_parse_device_tests_are_on_by_default(inputs):
    bundle, scans = inputs
    args = emulate.parse_args(["--bundle", str(bundle), "--scans", str(scans)])
    assert args.no_device_tests is False
    args = emulate.parse_args(["--bundle", str(bundle), "--scans", str(scans),
                               "--no-device-tests"])
    assert args.no_device_tests is True


def test_the_chosen_device_tests_exist_and_are_device_tests():
    assert emulate.DEVICE_TESTS
    for name in emulate.DEVICE_TESTS:
        text = (ROOT / name).read_text()
        assert "pytestmark = pytest.mark.device" in text, name


PASSED_OUTPUT = """edge_runtime imported from /c/venv-litert/lib/python3.11/site-packages/edge_runtime/__init__.py
........................................................................ [ 94%]
....                                                                     [100%]
============================= slowest 5 durations ==============================
36.99s call     tests/test_shipped.py::test_shipped_bundle_finds_the_tumour_in_each_example
73 passed, 3 skipped, 1 deselected in 75.33s (0:01:15)
"""

FAILED_OUTPUT = """edge_runtime imported from /c/venv-litert/lib/python3.11/site-packages/edge_runtime/__init__.py
.....F...E
=========================== short test summary info ============================
FAILED tests/test_cli_run.py::test_dicom_with_spacing_gives_area_mm2 - Module...
FAILED tests/test_bundle.py::test_round_trip[a - b] - assert 1 == 2
ERROR tests/test_imageio.py::test_truncated_png - OSError: boom
2 failed, 7 passed, 1 error in 12.01s
"""


def test_parse_pytest_summary_counts_and_names():
    ok = emulate.parse_pytest_summary(PASSED_OUTPUT)
    assert ok["counts"] == {"passed": 73, "skipped": 3, "deselected": 1}
    assert ok["seconds"] == 75.33 and ok["failed_tests"] == []
    assert ok["edge_runtime"].endswith("site-packages/edge_runtime/__init__.py")
    bad = emulate.parse_pytest_summary(FAILED_OUTPUT)
    assert bad["counts"] == {"failed": 2, "passed": 7, "errors": 1}
    assert bad["failed_tests"] == ["tests/test_cli_run.py::test_dicom_with_spacing_gives_area_mm2",
                                   "tests/test_bundle.py::test_round_trip[a",
                                   "tests/test_imageio.py::test_truncated_png"]
    collection = emulate.parse_pytest_summary(
        "ERROR tests/test_kit.py\n!!! Interrupted: 1 error during collection !!!\n"
        "=== 14 skipped, 1 error in 2.5s ===\n")
    assert collection["counts"] == {"skipped": 14, "errors": 1}
    assert collection["failed_tests"] == ["tests/test_kit.py"]
    nothing = emulate.parse_pytest_summary("\nno tests ran in 0.01s\n")
    assert nothing["counts"] == {} and nothing["edge_runtime"] is None
    assert emulate.parse_pytest_summary("Segmentation fault")["counts"] is None


def test_check_device_tests_problems():
    venv = "/c/venv-litert"
    summary, problems = emulate.check_device_tests(PASSED_OUTPUT, 0, venv)
    assert problems == [] and summary["passed"] == 73 and summary["skipped"] == 3
    _s, problems = emulate.check_device_tests(FAILED_OUTPUT, 1, venv)
    assert len(problems) == 1 and problems[0].startswith("3 failed: ")
    assert "tests/test_cli_run.py::test_dicom_with_spacing_gives_area_mm2" in problems[0]
    # the source tree's edge_runtime, not the installed wheel: not a test of the install
    other = PASSED_OUTPUT.replace("/c/venv-litert/lib/python3.11/site-packages", "/src")
    _s, problems = emulate.check_device_tests(other, 0, venv)
    assert problems == [f"edge_runtime imported from /src/edge_runtime/__init__.py, "
                        f"not from the venv {venv}"]
    _s, problems = emulate.check_device_tests("Segmentation fault", -11, venv)
    assert any("pytest exit -11, no summary: Segmentation fault" in p for p in problems)
    _s, problems = emulate.check_device_tests("x: timed out after 1200 s", None, venv)
    assert any(p.startswith("timed out") for p in problems)
    only_skips = PASSED_OUTPUT.replace("73 passed, ", "")
    _s, problems = emulate.check_device_tests(only_skips, 0, venv)
    assert problems == ["no test passed"]
    _s, problems = emulate.check_device_tests(PASSED_OUTPUT, 4, venv)
    assert problems and problems[0].startswith("pytest exit 4")


def test_summary_line_names_the_device_tests():
    report = {"interpreters": {"litert": {
        "masks": [{"status": "identical", "dice": 1.0}],
        "device_tests": {"passed": 70, "failed": 0, "errors": 0, "skipped": 3}}}}
    assert emulate.summary_line(report) == \
        "litert: 1 identical, 0 close, device tests 70 passed, 3 skipped"


def test_device_tests_folder_holds_only_tests_and_examples(tmp_path):
    folder = emulate.device_tests_folder(tmp_path / "dt")
    assert sorted(p.name for p in folder.iterdir()) == ["examples", "pytest.ini", "tests"]
    assert not list(folder.rglob("__pycache__"))
    ini = (folder / "pytest.ini").read_text()
    assert ini.startswith("[pytest]") and "device:" in ini and "slow:" in ini
    assert (folder / "tests" / "fixtures" / "tiny_64.tflite").is_file()
    args = emulate.pytest_args(folder)
    assert args[:2] == ["-P", "-c"] and "no:cacheprovider" in args
    assert args[-len(emulate.DEVICE_TESTS):] == list(emulate.DEVICE_TESTS)


def _run_folder(folder, *tests):
    """The stage's pytest command, run by this host's python (fast; no emulation)."""
    args = emulate.pytest_args(folder, tests)
    return subprocess.run([sys.executable, *args], cwd=folder, capture_output=True, text=True,
                          timeout=300, env={k: v for k, v in os.environ.items()
                                            if not k.startswith("PYTEST_")})


def test_device_tests_command_on_real_pytest_output(tmp_path):
    """The stage's command and checks on this host: a real pytest run passes, and a failing
    test is named."""
    folder = emulate.device_tests_folder(tmp_path / "dt")
    # the edge_runtime this python imports outside a checkout (here: the installed one)
    where = subprocess.run([sys.executable, "-P", "-c", "import edge_runtime; "
                            "print(edge_runtime.__file__)"], cwd=folder, capture_output=True,
                           text=True, timeout=60, check=True).stdout.strip()
    site = Path(where).resolve().parent.parent
    proc = _run_folder(folder, "tests/test_runtime_postprocess.py")
    summary, problems = emulate.check_device_tests(proc.stdout + proc.stderr, proc.returncode,
                                                   site)
    assert problems == [], proc.stdout[-2000:]
    assert summary["passed"] >= 5 and summary["edge_runtime"].startswith(str(site))
    (folder / "tests" / "test_zz_broken.py").write_text(
        "import pytest\npytestmark = pytest.mark.device\n\n"
        "def test_fine():\n    assert True\n\n"
        "def test_broken():\n    assert 1 == 2\n")
    proc = _run_folder(folder, "tests/test_zz_broken.py")
    summary, problems = emulate.check_device_tests(proc.stdout + proc.stderr, proc.returncode,
                                                   site)
    assert proc.returncode == 1 and summary["passed"] == 1 and summary["failed"] == 1
    assert problems == ["1 failed: tests/test_zz_broken.py::test_broken"]


def test_wheel_cache_keys_stay_warm(tmp_path):
    """A warm wheel folder (the key every earlier run wrote) is used without the network;
    the tests' wheels have a folder and a key of their own."""
    reqs = emulate.VENVS["litert"]["requirements"]
    key = (f"recipe{emulate.RECIPE}:{emulate.PYTHON}:{','.join(emulate.WHEEL_PLATFORMS)}:"
           f"{','.join(reqs)}")
    (tmp_path / "wheels-litert").mkdir()
    (tmp_path / "wheels-litert" / ".edge-seg-arm.json").write_text(json.dumps({"key": key}))
    assert emulate.download_wheels(tmp_path, "litert") == (tmp_path / "wheels-litert", False)
    key = key.replace(",".join(reqs), ",".join(emulate.TEST_REQUIREMENTS))
    (tmp_path / "wheels-tests").mkdir()
    (tmp_path / "wheels-tests" / ".edge-seg-arm.json").write_text(json.dumps({"key": key}))
    assert emulate.download_wheels(tmp_path, "tests", requirements=emulate.TEST_REQUIREMENTS) \
        == (tmp_path / "wheels-tests", False)


def test_emulated_commands_keep_the_trust_list_and_drop_other_settings(tmp_path, monkeypatch):
    """A bundle trusted for the x86 run is trusted for the emulated one (EDGE_SEG_TRUST
    passes); the host's other EDGE_SEG_* and PYTHON* settings do not."""
    monkeypatch.setattr(emulate, "qemu_binary", lambda: "qemu-aarch64-static")
    monkeypatch.setenv("EDGE_SEG_TRUST", str(tmp_path / "trusted.json"))
    monkeypatch.setenv("EDGE_SEG_INTERPRETER", "tflite_runtime")
    monkeypatch.setenv("PYTHONPATH", "/somewhere")
    env = emulate.ArmVenv(tmp_path, tmp_path / "sysroot", "litert").env(EXTRA="1")
    assert env["EDGE_SEG_TRUST"] == str(tmp_path / "trusted.json")
    assert "EDGE_SEG_INTERPRETER" not in env and "PYTHONPATH" not in env
    assert env["EXTRA"] == "1" and env["PYTHONNOUSERSITE"] == "1"
