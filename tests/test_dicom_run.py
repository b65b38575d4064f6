"""`edge-seg run STUDY/` on synthetic DICOM studies with the shipped bundle: one answer per
series, a volume, a DICOM SEG that lands on the right slices, and bad input named."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

pytest.importorskip("pydicom")
highdicom = pytest.importorskip("highdicom")
pytestmark = pytest.mark.device

from edge_runtime.cli import main  # noqa: E402
from edge_runtime.dicom.synthetic import example_stack, write_series  # noqa: E402
from edge_runtime.errors import EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run(*args):
    return CliRunner().invoke(main, ["run", *map(str, args), "--threads", 1])


def digest(folder):
    return {p: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    from pydicom.uid import generate_uid
    root = tmp_path_factory.mktemp("study") / "STUDY"
    uid = generate_uid()
    a = write_series(root / "SER1", example_stack(EXAMPLES, 7), study_uid=uid,
                     series_number=3, slice_spacing=4.0)
    b = write_series(root / "SER2", example_stack(EXAMPLES, 5, which=1, seed=1), study_uid=uid,
                     series_number=5, description="T1 enhanced", enhanced=True,
                     slice_spacing=3.0, pixel_spacing=(0.6, 0.6))
    return root, a, b


def test_two_series_study_gives_two_answers_and_segs(study, tmp_path):
    import pydicom
    root, files_a, _files_b = study
    before = digest(root)
    out = tmp_path / "out"
    res = run(root, "--out", out)
    assert res.exit_code == EXIT_OK, res.stderr
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 2
    assert all("volume" in line and "mL" in line and "position differences" in line
               for line in lines)
    assert "2 done, 0 failed" in res.stderr
    assert digest(root) == before                           # inputs untouched

    reports = {r["series_number"]: r for r in
               (json.loads(p.read_text()) for p in out.glob("*_series.json"))}
    assert sorted(reports) == [3, 5]
    r = reports[3]
    assert r["spacing"] == {"spacing_mm": 4.0, "method": "position differences",
                            "problem": None}
    assert r["slices"] == 7 and r["slices_with_tumour"]
    assert 1 not in r["slices_with_tumour"] and 7 not in r["slices_with_tumour"]  # dark ends
    areas = [s["area_mm2"] for s in r["per_slice"]]
    assert r["volume_ml"] == pytest.approx(sum(areas) * 4.0 / 1000, rel=1e-3)
    assert r["largest_cross_section_mm2"] == pytest.approx(max(areas), abs=0.01)
    assert r["longest_diameter_mm"] > 10
    assert Path(r["outputs"]["montage"]).is_file()

    # the SEG: the right series, one frame per slice with a tumour, each on its slice
    seg = highdicom.seg.segread(r["outputs"]["seg"])
    ref = seg.ReferencedSeriesSequence[0]
    assert ref.SeriesInstanceUID == r["series_instance_uid"]
    assert seg.StudyInstanceUID == r["study_instance_uid"]
    assert int(seg.NumberOfFrames) == len(r["slices_with_tumour"])
    sources = {pydicom.dcmread(p).SOPInstanceUID: p for p in files_a}
    alg = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert r["bundle"]["name"] in alg.AlgorithmName
    assert "not for diagnostic use" in seg.SeriesDescription
    by_sop = {s["sop_instance_uid"]: s for s in r["per_slice"]}
    pixels = seg.pixel_array if seg.pixel_array.ndim == 3 else seg.pixel_array[None]
    for i, frame in enumerate(seg.PerFrameFunctionalGroupsSequence):
        src_uid = frame.DerivationImageSequence[0].SourceImageSequence[0] \
            .ReferencedSOPInstanceUID
        src = pydicom.dcmread(sources[src_uid], stop_before_pixels=True)
        pos = frame.PlanePositionSequence[0].ImagePositionPatient
        assert np.allclose([float(v) for v in pos], [float(v) for v in
                                                     src.ImagePositionPatient])
        mask_png = Path(by_sop[src_uid]["findings"].replace("_findings.json", "_mask.png"))
        expected = np.asarray(Image.open(mask_png)) > 0
        np.testing.assert_array_equal(pixels[i] > 0, expected)
    shared = seg.SharedFunctionalGroupsSequence[0]
    assert [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing] == [0.5, 0.5]


def test_enhanced_series_seg_references_its_frames(study, tmp_path):
    root, _a, _b = study
    out = tmp_path / "out"
    assert run(root / "SER2", "--out", out).exit_code == EXIT_OK
    (report,) = [json.loads(p.read_text()) for p in out.glob("*_series.json")]
    seg = highdicom.seg.segread(report["outputs"]["seg"])
    assert int(seg.NumberOfFrames) == len(report["slices_with_tumour"])
    frames = sorted(int(f.DerivationImageSequence[0].SourceImageSequence[0]
                        .ReferencedFrameNumber) for f in seg.PerFrameFunctionalGroupsSequence)
    assert frames == report["slices_with_tumour"]         # frame k of the file = slice k


def test_json_lines_and_consistency_option(study, tmp_path):
    root, _a, _b = study
    res = run(root / "SER1", "--out", tmp_path / "o", "--json", "--series-consistency",
              "overlap")
    assert res.exit_code == EXIT_OK, res.stderr
    (line,) = res.stdout.strip().splitlines()
    report = json.loads(line)
    assert report["consistency"]["rule"] == "overlap"
    assert report["volume_ml"] > 0


def test_out_inside_the_tree_is_refused(study):
    root, _a, _b = study
    res = run(root, "--out", root / "SER1" / "results")
    assert res.exit_code == EXIT_USAGE
    assert "inside the DICOM folder" in res.stderr and not (root / "SER1" / "results").exists()


def test_single_dicom_file_keeps_the_per_file_path(study, tmp_path):
    _root, files_a, _b = study
    res = run(files_a[3], "--out", tmp_path / "o")
    assert res.exit_code == EXIT_OK
    assert (tmp_path / "o" / f"{files_a[3].stem}_findings.json").is_file()
    assert not list((tmp_path / "o").glob("*_series.json"))


def test_bad_study_each_problem_named_rest_processed(tmp_path):
    import pydicom
    from pydicom.uid import generate_uid
    root = tmp_path / "BAD"
    stack = example_stack(EXAMPLES, 6)
    # a series with a missing slice (the fourth file deleted): processed, volume refused
    gap = write_series(root / "gap", stack, series_number=1, description="gap")
    gap[3].unlink()
    # duplicate instance (a copy of a file): read once, named
    dup = write_series(root / "dup", stack[:4], series_number=2, description="dup")
    (root / "dup" / "copy_of_first.dcm").write_bytes(dup[0].read_bytes())
    # mixed orientations in one series: refused
    uid, study = generate_uid(), generate_uid()
    write_series(root / "mix", stack[:2], series_uid=uid, study_uid=study, series_number=3,
                 name="ax")
    write_series(root / "mix", stack[2:4], series_uid=uid, study_uid=study, series_number=3,
                 name="sag",
                 orientation=(0, 1, 0, 0, 0, -1))
    # a truncated file and an image without pixel data in an otherwise good series
    good = write_series(root / "good", stack[:5], series_number=4, description="good")
    data = good[4].read_bytes()
    good[4].write_bytes(data[: len(data) // 2])
    ds = pydicom.dcmread(good[3])
    del ds.PixelData
    ds.save_as(good[3])
    # a slice whose compressed data cannot be decoded: that series gets no SEG
    broken = write_series(root / "broken", stack[:4], series_number=6, description="broken",
                          compression="rle")
    ds = pydicom.dcmread(broken[2])
    ds.PixelData = ds.PixelData[:200] + b"\x00" * 64
    ds.save_as(broken[2])
    (root / "README.TXT").write_text("export notes")
    (root / "good" / "thumbs.db").write_bytes(b"\x00\x01junk")
    before = digest(root)
    out = tmp_path / "out"
    res = run(root, "--out", out)
    assert res.exit_code == EXIT_SOME_FAILED
    err = res.stderr
    assert "skipped: " in err and "README.TXT: not a DICOM file" in err
    assert "thumbs.db: not a DICOM file" in err
    assert "duplicate instance" in err
    assert "truncated" in err and "without pixel data" in err
    assert "mixed orientations" in err
    reports = {r["description"]: r for r in
               (json.loads(p.read_text()) for p in out.glob("*_series.json"))}
    assert reports["gap"]["volume_ml"] is None
    assert "1 slice(s) missing" in reports["gap"]["volume_refused"]
    assert Path(reports["gap"]["outputs"]["seg"]).is_file()      # SEG of what was sent
    assert reports["dup"]["slices"] == 4 and reports["dup"]["volume_ml"] is not None
    assert reports["good"]["slices"] == 3
    assert "seg" not in reports["broken"]["outputs"]
    assert "no partial SEG" in reports["broken"]["seg_refused"]
    assert not list(out.glob(".*"))                              # no temporary files left
    assert digest(root) == before
    assert "4 done, 4 failed" in err        # gap, dup, good, broken; 3 files + mixed


def test_series_without_tumour_is_an_answer_with_an_empty_seg(tmp_path):
    write_series(tmp_path / "DARK", example_stack(EXAMPLES, 3, dark_ends=2))
    res = run(tmp_path / "DARK", "--out", tmp_path / "o")
    assert res.exit_code == EXIT_OK, res.stderr
    assert "no tumour found" in res.stdout
    (report,) = [json.loads(p.read_text()) for p in (tmp_path / "o").glob("*_series.json")]
    assert report["slices_with_tumour"] == [] and report["volume_ml"] == 0.0
    assert "montage" not in report["outputs"]
    seg = highdicom.seg.segread(report["outputs"]["seg"])
    assert int(seg.NumberOfFrames) == 1 and not seg.pixel_array.any()


def test_missing_dicom_extra_is_one_line_exit_4(study, tmp_path):
    import subprocess
    import sys
    root, _a, _b = study
    code = ("import sys; sys.modules['pydicom'] = None; "
            "from edge_runtime.cli import main; main()")
    proc = subprocess.run([sys.executable, "-c", code, "run", str(root), "--out",
                           str(tmp_path / "o")], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], check=False)
    assert proc.returncode == 4
    assert "pip install 'edge-seg[dicom]'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_no_pixel_spacing_refuses_sizes_in_mm(tmp_path):
    write_series(tmp_path / "NOPS", example_stack(EXAMPLES, 4), pixel_spacing=None)
    res = run(tmp_path / "NOPS", "--out", tmp_path / "o")
    assert res.exit_code == EXIT_OK, res.stderr
    assert "no volume: no PixelSpacing" in res.stdout and "no sizes in mm" in res.stdout
    (report,) = [json.loads(p.read_text()) for p in (tmp_path / "o").glob("*_series.json")]
    assert report["volume_ml"] is None and report["largest_cross_section_mm2"] is None
    assert report["slices_with_tumour"]


def test_instance_number_order_is_said_and_gaps_refuse_the_volume(tmp_path):
    files = write_series(tmp_path / "NOPOS", example_stack(EXAMPLES, 5), positions=False)
    files[2].unlink()
    res = run(tmp_path / "NOPOS", "--out", tmp_path / "o")
    assert res.exit_code == EXIT_OK, res.stderr
    assert "ordered by InstanceNumber" in res.stdout
    assert "no volume: InstanceNumbers have gaps" in res.stdout
