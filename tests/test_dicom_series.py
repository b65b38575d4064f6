"""DICOM series: finding, grouping, ordering, decoding; geometry and the consistency rule."""

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pydicom")
pytestmark = pytest.mark.device

from edge_runtime.dicom import geometry  # noqa: E402
from edge_runtime.dicom.consistency import apply_rule  # noqa: E402
from edge_runtime.dicom.pixels import load_slice  # noqa: E402
from edge_runtime.dicom.series import ORDER_BY_NUMBER, ORDER_BY_POSITION, scan_tree  # noqa: E402
from edge_runtime.dicom.synthetic import SAGITTAL, write_series  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def ramp_stack(n, size=32):
    """Slices whose value says their index: slice k is k*100 + a small gradient."""
    grad = np.add.outer(np.arange(size), np.arange(size)).astype(np.float64)
    return [(k + 1) * 100 + grad for k in range(n)]


# ------------------------------------------------------------------ geometry

def test_spacing_from_positions_even():
    s = geometry.slice_spacing([0.0, 5.0, 10.0, 15.0], spacing_between=4.0, thickness=3.0)
    assert s == {"spacing_mm": 5.0, "method": "position differences", "problem": None}


def test_spacing_refused_for_a_missing_slice():
    s = geometry.slice_spacing([0.0, 5.0, 15.0, 20.0])
    assert s["spacing_mm"] is None and "1 slice(s) missing" in s["problem"]


def test_missing_slices_found_when_many_gaps_are_doubled():
    s = geometry.slice_spacing([0.0, 5.0, 15.0])
    assert s["spacing_mm"] is None and "1 slice(s) missing" in s["problem"]
    assert "2 slice(s) missing" in geometry.slice_spacing([0.0, 10.0, 15.0, 25.0])["problem"]


def test_spacing_refused_for_repeated_or_uneven_positions():
    assert "share a position" in geometry.slice_spacing([0.0, 5.0, 5.0, 10.0])["problem"]
    assert "uneven" in geometry.slice_spacing([0.0, 5.0, 8.0, 13.0])["problem"]


def test_spacing_fallbacks_name_their_source():
    assert geometry.slice_spacing(None, 4.0, 3.0)["method"] == "SpacingBetweenSlices"
    assert geometry.slice_spacing(None, None, 3.0) == {
        "spacing_mm": 3.0, "method": "SliceThickness", "problem": None}
    assert geometry.slice_spacing(None)["spacing_mm"] is None


def test_longest_diameter_is_the_rectangle_diagonal_in_mm():
    m = np.zeros((50, 50), bool)
    m[10:20, 5:45] = True             # 10 rows x 40 columns, centres 9 x 39 apart
    assert geometry.longest_diameter_mm(m, (2.0, 0.5)) == pytest.approx(np.hypot(18, 19.5))
    assert geometry.longest_diameter_mm(np.zeros((5, 5), bool), (1, 1)) == 0.0


def test_tumour_size_volume_and_refusal():
    ok = geometry.tumour_size([0, 100.0, 200.0, 0], [0, 10, 20, 0],
                              {"spacing_mm": 5.0, "problem": None})
    assert ok["volume_ml"] == pytest.approx(1.5) and ok["slices_with_tumour"] == [1, 2]
    assert ok["largest_cross_section_mm2"] == 200.0 and ok["longest_diameter_mm"] == 20
    refused = geometry.tumour_size([100.0], [10], {"spacing_mm": None, "problem": "x"})
    assert refused["volume_ml"] is None


def test_consistency_overlap_keeps_supported_components_only():
    own = np.zeros((20, 20), bool)
    own[2:5, 2:5] = True              # supported by the neighbour
    own[12:15, 12:15] = True          # alone
    nbr = np.zeros_like(own)
    nbr[4:8, 4:8] = True
    kept = apply_rule("overlap", own, [nbr])
    assert kept[2:5, 2:5].all() and not kept[12:15, 12:15].any()
    assert apply_rule("overlap", own, []).sum() == own.sum()        # no neighbours: kept
    assert not apply_rule("any", own, [np.zeros_like(own)]).any()
    assert apply_rule("off", own, [np.zeros_like(own)]).sum() == own.sum()
    with pytest.raises(ValueError, match="allowed: off, overlap, any"):
        apply_rule("sometimes", own, [])


# ------------------------------------------------------------------ scanning a tree

def test_series_grouped_and_ordered_along_the_normal(tmp_path):
    imgs = ramp_stack(5)
    # sagittal, written in reverse order of position and with shuffled file names
    paths = write_series(tmp_path / "a", imgs, orientation=SAGITTAL, slice_spacing=-2.5)
    for i, p in enumerate(paths):
        p.rename(p.with_name(f"x{(7 * i) % 5}.dcm"))
    write_series(tmp_path / "b" / "deeper", ramp_stack(3), series_number=7)
    series, skipped, failed = scan_tree(tmp_path)
    assert (skipped, failed) == ([], [])
    assert sorted(len(s.slices) for s in series) == [3, 5]
    five = next(s for s in series if len(s.slices) == 5)
    assert five.ordering == ORDER_BY_POSITION
    d = five.distances
    assert np.all(np.diff(d) > 0)
    assert five.spacing()["spacing_mm"] == pytest.approx(2.5)
    # ordered by position: the last-written slice (most negative) comes first
    values = [float(load_slice(s).pixels[0, 0]) for s in five.slices]
    assert values == [500.0, 400.0, 300.0, 200.0, 100.0]


def test_instance_number_fallback_is_said(tmp_path):
    write_series(tmp_path, ramp_stack(3), positions=False)
    (series,), _, _ = scan_tree(tmp_path)
    assert series.ordering == ORDER_BY_NUMBER
    assert [s.instance_number for s in series.slices] == [1, 2, 3]
    assert series.spacing()["method"] == "SliceThickness"


def test_enhanced_multiframe_gives_one_slice_per_frame(tmp_path):
    write_series(tmp_path, ramp_stack(4), enhanced=True, slice_spacing=3.0,
                 pixel_spacing=(0.7, 0.8))
    (series,), _, _ = scan_tree(tmp_path)
    assert [s.frame for s in series.slices] == [0, 1, 2, 3]
    assert series.spacing()["spacing_mm"] == pytest.approx(3.0)
    scan = load_slice(series.slices[2])
    assert scan.spacing_mm == (0.7, 0.8) and float(scan.pixels[0, 0]) == 300.0


@pytest.mark.parametrize("compression", ["rle", "jpeg2000", "jpegls"])
def test_lossless_compressed_series_decode_exactly(tmp_path, compression):
    pytest.importorskip("pylibjpeg")
    imgs = ramp_stack(2, size=40)
    write_series(tmp_path, imgs, compression=compression)
    (series,), _, failed = scan_tree(tmp_path)
    assert failed == []
    np.testing.assert_array_equal(load_slice(series.slices[1]).pixels, imgs[1])


def test_jpeg_baseline_decodes_close(tmp_path):
    pytest.importorskip("pylibjpeg")
    imgs = [np.tile(np.linspace(0, 4000, 64), (64, 1))]
    write_series(tmp_path, imgs, compression="jpeg")
    (series,), _, _ = scan_tree(tmp_path)
    got = load_slice(series.slices[0]).pixels.astype(float)
    assert np.corrcoef(got.ravel(), imgs[0].ravel())[0, 1] > 0.99


def test_pydicom_test_files_decode_alike():
    pytest.importorskip("pylibjpeg")
    from pydicom.data import get_testdata_file

    from edge_runtime.dicom.series import read_header, slices_of
    ref = None
    for name in ("MR_small.dcm", "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm",
                 "MR_small_jpeg_ls_lossless.dcm", "MR_small_bigendian.dcm",
                 "MR_small_implicit.dcm"):
        ds, skip, problem = read_header(get_testdata_file(name))
        assert (skip, problem) == (None, None), name
        (sl,) = slices_of(ds, get_testdata_file(name))
        px = load_slice(sl).pixels
        if ref is None:
            ref = px
        np.testing.assert_array_equal(px, ref, err_msg=name)


def test_monochrome1_and_rescale_read_as_monochrome2(tmp_path):
    imgs = ramp_stack(1, size=32)
    write_series(tmp_path / "plain", imgs)
    write_series(tmp_path / "inv", imgs, monochrome1=True, rescale=(2.0, -50.0))
    got = {}
    for s in scan_tree(tmp_path)[0]:
        got[s.slices[0].photometric] = load_slice(s.slices[0]).pixels.astype(float)
    plain, inv = got["MONOCHROME2"], got["MONOCHROME1"]
    # same picture (bright stays bright) up to an offset and the rescale's rounding
    assert np.allclose(inv - inv.min(), plain - plain.min(), atol=2.0)


def test_bad_files_each_named_once(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file
    good = write_series(tmp_path / "good", ramp_stack(3))
    (tmp_path / "notes.txt").write_text("not dicom")
    trunc = tmp_path / "trunc.dcm"
    trunc.write_bytes(good[0].read_bytes()[:-500])
    ds = pydicom.dcmread(good[1])
    del ds.PixelData
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(tmp_path / "nopixels.dcm")
    (tmp_path / "sr.dcm").write_bytes(Path(get_testdata_file("reportsi.dcm")).read_bytes())
    (tmp_path / "ct.dcm").write_bytes(Path(get_testdata_file("CT_small.dcm")).read_bytes())
    (tmp_path / "dup").mkdir()
    (tmp_path / "dup" / "copy.dcm").write_bytes(good[2].read_bytes())
    series, skipped, failed = scan_tree(tmp_path)
    reasons = {Path(p).name: r for p, r in skipped + failed}
    assert reasons["notes.txt"] == "not a DICOM file"
    assert reasons["trunc.dcm"].startswith("truncated")
    assert "without pixel data" in reasons["nopixels.dcm"]
    assert "structured report" in reasons["sr.dcm"]
    assert reasons["ct.dcm"].startswith("not MR (modality CT)")
    assert len(skipped + failed) == 5
    (s,) = series
    assert len(s.slices) == 3                        # the copy is read once
    assert any("duplicate instance" in n for n in s.notes)


def test_mixed_orientations_refused(tmp_path):
    from pydicom.uid import generate_uid
    uid, study = generate_uid(), generate_uid()
    write_series(tmp_path / "a", ramp_stack(2), series_uid=uid, study_uid=study, name="ax")
    write_series(tmp_path / "b", ramp_stack(2), series_uid=uid, study_uid=study,
                 orientation=SAGITTAL, name="sag")
    (series,), _, _ = scan_tree(tmp_path)
    assert series.problem.startswith("mixed orientations (2 distinct")


def test_dicomdir_medium_from_pydicom(tmp_path):
    """pydicom's DICOMDIR test medium: the index files are skipped, the localizers with three
    orientations in one series are refused, the one-slice series are read."""
    import shutil

    from pydicom.data import get_testdata_file
    src = Path(get_testdata_file("DICOMDIR")).parent
    shutil.copytree(src, tmp_path / "medium")
    series, skipped, failed = scan_tree(tmp_path / "medium")
    assert failed == []
    assert any(Path(p).name == "DICOMDIR" and r.startswith("DICOMDIR index")
               for p, r in skipped)
    refused = [s for s in series if s.problem]
    assert refused and all(s.problem.startswith("mixed orientations") for s in refused)
    ok = [s for s in series if not s.problem]
    assert ok and all(s.spacing()["method"] == "SliceThickness" for s in ok
                      if len(s.slices) == 1)
