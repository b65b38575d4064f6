"""`edge-seg run` end to end with a tiny bundle: outputs, failures, exit codes, safety."""

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edge_runtime import atomic, outputs
from edge_runtime.cli import main
from edge_runtime.errors import EXIT_BUNDLE, EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE

pytestmark = pytest.mark.device  # runs in a device-only install (no TensorFlow)


def scan_with_blob(h, w, dtype=np.uint8, value=200):
    arr = np.zeros((h, w), dtype)
    arr[h // 3: h // 3 + h // 4, w // 3: w // 3 + w // 4] = value
    return arr


def run_cli(*args):
    return CliRunner().invoke(main, ["run", *map(str, args)])


@pytest.fixture
def run_in(tiny_bundle, tmp_path):
    out = tmp_path / "out"

    def go(*paths, extra=()):
        return run_cli(*paths, "--bundle", tiny_bundle, "--out", out, "--threads", 1, *extra)
    go.out = out
    return go


def test_odd_size_rgba_mask_matches_input(tmp_path, run_in):
    p = tmp_path / "in" / "odd.png"
    p.parent.mkdir()
    Image.fromarray(scan_with_blob(257, 301)).convert("RGBA").save(p)
    result = run_in(p)
    assert result.exit_code == EXIT_OK, result.output
    mask = Image.open(run_in.out / "odd_mask.png")
    assert mask.size == (301, 257) and mask.mode == "L"
    values = set(np.unique(np.asarray(mask)).tolist())
    assert values == {0, 255}
    overlay = Image.open(run_in.out / "odd_overlay.png")
    assert overlay.size == (301, 257) and overlay.mode == "RGB"
    f = json.loads((run_in.out / "odd_findings.json").read_text())
    assert f["tumour_found"] is True and f["input"]["width"] == 301
    assert f["bundle"]["name"] == "tiny-test" and len(f["bundle"]["sha256"]) == 64
    assert set(f["timing_ms"]) == {"preprocess", "inference", "postprocess"}
    assert f["source"] == str(p) and f["area_mm2"] is None
    for key in ("area_px", "area_fraction", "bbox", "centroid", "mean_probability",
                "max_probability"):
        assert key in f
    assert "1 done, 0 failed" in result.output


def test_8bit_and_16bit_png_and_no_tumour(tmp_path, run_in):
    d = tmp_path / "in"
    d.mkdir()
    Image.fromarray(scan_with_blob(64, 64)).save(d / "eight.png")
    Image.fromarray(scan_with_blob(80, 70, np.uint16, 40000)).save(d / "sixteen.png")
    Image.fromarray(np.full((50, 50), 90, np.uint8)).save(d / "flat.png")
    result = run_in(d, extra=["--json"])
    assert result.exit_code == EXIT_OK, result.output
    rows = {os.path.basename(r["source"]): r for r in
            (json.loads(line) for line in result.stdout.splitlines() if line.startswith("{"))}
    assert rows["eight.png"]["tumour_found"] and rows["sixteen.png"]["tumour_found"]
    assert rows["flat.png"]["tumour_found"] is False and rows["flat.png"]["area_px"] == 0
    assert Image.open(run_in.out / "sixteen_mask.png").size == (70, 80)
    assert not np.asarray(Image.open(run_in.out / "flat_mask.png")).any()


def test_folder_mixing_good_and_bad(tmp_path, run_in):
    d = tmp_path / "in"
    d.mkdir()
    Image.fromarray(scan_with_blob(64, 64)).save(d / "good.png")
    Image.fromarray(scan_with_blob(40, 48)).convert("RGB").save(d / "good2.jpg")
    (d / "empty.png").write_bytes(b"")
    (d / "notes.txt").write_text("not a scan")
    Image.new("L", (1, 1)).save(d / "dot.png")
    (d / ".hidden.png").write_bytes(b"")
    (d / "sub").mkdir()
    result = run_in(d)
    assert result.exit_code == EXIT_SOME_FAILED, result.output
    assert "2 done, 3 failed" in result.output
    for name, problem in (("empty.png", "empty file"), ("notes.txt", "not an image"),
                          ("dot.png", "too small")):
        lines = [ln for ln in result.output.splitlines() if name in ln]
        assert len(lines) == 1 and problem in lines[0], result.output
    assert ".hidden" not in result.output and "Traceback" not in result.output
    written = sorted(p.name for p in run_in.out.iterdir())
    assert written == sorted(f"{s}_{k}" for s in ("good", "good2")
                             for k in ("mask.png", "overlay.png", "findings.json"))


def test_missing_input_fails_but_batch_goes_on(tmp_path, run_in):
    good = tmp_path / "g.png"
    Image.fromarray(scan_with_blob(64, 64)).save(good)
    result = run_in(tmp_path / "nope.png", good)
    assert result.exit_code == EXIT_SOME_FAILED
    assert "no such file or folder" in result.output and "1 done, 1 failed" in result.output


def test_name_collisions_do_not_overwrite(tmp_path, run_in):
    d1, d2 = tmp_path / "d1", tmp_path / "d2"
    d1.mkdir(), d2.mkdir()
    Image.fromarray(scan_with_blob(64, 64)).save(d1 / "a.png")
    Image.fromarray(np.full((40, 40), 5, np.uint8)).save(d1 / "a.jpg")
    Image.fromarray(scan_with_blob(48, 48)).save(d2 / "a.png")
    result = run_in(d1 / "a.png", d1 / "a.jpg", d2 / "a.png")
    assert result.exit_code == EXIT_OK, result.output
    sources = {json.loads((run_in.out / f"{s}_findings.json").read_text())["source"]
               for s in ("a_png", "a_jpg", "a_png_2")}
    assert sources == {str(d1 / "a.png"), str(d1 / "a.jpg"), str(d2 / "a.png")}


def test_dicom_with_spacing_gives_area_mm2(tmp_path, run_in):
    from test_imageio import write_dicom
    p = write_dicom(tmp_path / "slice.dcm", scan_with_blob(64, 64, np.uint16, 900),
                    spacing=(0.5, 0.5))
    result = run_in(p, extra=["--json"])
    assert result.exit_code == EXIT_OK, result.output
    row = json.loads(next(ln for ln in result.stdout.splitlines() if ln.startswith("{")))
    assert row["spacing_mm"] == [0.5, 0.5]
    assert row["area_mm2"] == pytest.approx(row["area_px"] * 0.25, rel=1e-3)
    assert row["area_px"] > 0


def test_out_dir_not_writable_is_usage_error(tmp_path, run_in, tiny_bundle):
    p = tmp_path / "s.png"
    Image.fromarray(scan_with_blob(64, 64)).save(p)
    blocker = tmp_path / "file"
    blocker.write_text("I am a file")
    result = run_cli(p, "--bundle", tiny_bundle, "--out", blocker / "sub")
    assert result.exit_code == EXIT_USAGE
    assert "not writable" in result.output and "Traceback" not in result.output


def test_out_dir_may_not_be_an_input_folder(tmp_path, tiny_bundle):
    d = tmp_path / "in"
    d.mkdir()
    Image.fromarray(scan_with_blob(64, 64)).save(d / "s.png")
    result = run_cli(d, "--bundle", tiny_bundle, "--out", d)
    assert result.exit_code == EXIT_USAGE and "folder of input" in result.output
    assert sorted(p.name for p in d.iterdir()) == ["s.png"]


def test_write_failure_leaves_nothing_partial(tmp_path, run_in, monkeypatch):
    p = tmp_path / "s.png"
    Image.fromarray(scan_with_blob(64, 64)).save(p)
    run_in.out.mkdir()
    old = run_in.out / "s_mask.png"
    old.write_bytes(b"previous result")

    real_stage = atomic._stage
    calls = []

    def failing_stage(path, data):
        calls.append(path)
        if len(calls) == 2:          # the second file of three fails (disk full)
            raise OSError(28, "No space left on device")
        return real_stage(path, data)
    monkeypatch.setattr(atomic, "_stage", failing_stage)
    result = run_in(p)
    assert result.exit_code == EXIT_SOME_FAILED, result.output
    assert "No space left on device" in result.output
    assert old.read_bytes() == b"previous result"          # not clobbered
    assert sorted(x.name for x in run_in.out.iterdir()) == ["s_mask.png"]   # no temp files


def test_atomic_write_bytes_keeps_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "f.json"
    target.write_text("old")
    monkeypatch.setattr(os, "replace", lambda a, b: (_ for _ in ()).throw(OSError(5, "EIO")))
    with pytest.raises(OSError):
        atomic.write_bytes(target, b"new")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_inputs_never_overwritten(tmp_path):
    p = tmp_path / "x_mask.png"
    Image.new("L", (20, 20)).save(p)
    with pytest.raises(FileExistsError):
        outputs.write_outputs(tmp_path, "x", np.zeros((20, 20)), np.zeros((20, 20), bool),
                              {"tumour_found": False}, protected=[str(p)])


def test_no_default_bundle_is_exit_3(tmp_path, monkeypatch):
    from edge_runtime import bundle
    monkeypatch.setattr(bundle, "default_bundle_path", lambda: tmp_path / "missing.zip")
    p = tmp_path / "s.png"
    Image.fromarray(scan_with_blob(64, 64)).save(p)
    result = run_cli(p, "--out", tmp_path / "out")
    assert result.exit_code == EXIT_BUNDLE
    assert "no default model bundle" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_bad_bundle_is_exit_3(tmp_path):
    p = tmp_path / "s.png"
    Image.fromarray(scan_with_blob(64, 64)).save(p)
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"PK\x03\x04garbage")
    result = run_cli(p, "--bundle", junk)
    assert result.exit_code == EXIT_BUNDLE and "Traceback" not in result.output


def test_bare_tflite_with_flags_warns(tmp_path, tiny_tflite_bytes):
    m = tmp_path / "m.tflite"
    m.write_bytes(tiny_tflite_bytes)
    p = tmp_path / "s.png"
    Image.fromarray(scan_with_blob(64, 64)).save(p)
    args = (p, "--bundle", m, "--input-size", 64, "--threshold", 0.4, "--out", tmp_path / "out")
    refused = run_cli(*args)                    # a bare .tflite is not trusted either
    assert refused.exit_code == EXIT_BUNDLE and "not trusted" in refused.output
    result = run_cli(*args, "--allow-untrusted")
    assert result.exit_code == EXIT_OK, result.output
    assert "warning:" in result.output and "bare .tflite" in result.output
    assert "UNTRUSTED" in result.output


def test_peak_filter_override_drops_a_region_never_that_sure(tmp_path, tiny_bundle):
    """The tiny model gives a bright blob a peak of sigmoid(10) = 0.99995: kept by the
    bundle's settings, dropped when a higher peak is demanded (with a warning)."""
    p = tmp_path / "s.png"
    Image.fromarray(scan_with_blob(64, 64)).save(p)
    result = run_cli(p, "--bundle", tiny_bundle, "--out", tmp_path / "a", "--json")
    assert result.exit_code == EXIT_OK, result.output
    found = json.loads([x for x in result.stdout.splitlines() if x.startswith("{")][0])
    assert found["tumour_found"] is True and found["min_peak_probability"] == 0.0
    result = run_cli(p, "--bundle", tiny_bundle, "--out", tmp_path / "b", "--json",
                     "--min-peak-probability", 0.99999)
    assert result.exit_code == EXIT_OK, result.output
    assert "min_peak_probability 0.0 -> 0.99999" in result.output
    dropped = json.loads([x for x in result.stdout.splitlines() if x.startswith("{")][0])
    assert dropped["tumour_found"] is False and dropped["min_peak_probability"] == 0.99999
    assert run_cli(p, "--bundle", tiny_bundle, "--min-peak-probability", 1.0).exit_code == \
        EXIT_USAGE


def test_usage_errors_exit_2(tmp_path, tiny_bundle):
    assert run_cli().exit_code == EXIT_USAGE
    assert run_cli(tmp_path, "--threads", 0).exit_code == EXIT_USAGE
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_cli(empty, "--bundle", tiny_bundle)
    assert result.exit_code == EXIT_USAGE and "no input files" in result.output


def test_help():
    result = CliRunner().invoke(main, ["run", "--help"])
    assert result.exit_code == 0
    for flag in ("--out", "--bundle", "--threads", "--json", "--threshold", "--input-size"):
        assert flag in result.output
