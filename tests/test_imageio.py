"""load_scan: every supported kind of scan, and one clear error for each kind of bad input."""

import struct
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from edge_runtime import imageio
from edge_runtime.errors import InputImageError
from edge_runtime.imageio import MIN_SIDE, load_scan

pytestmark = pytest.mark.device  # runs in a device-only install (no TensorFlow)


def _gradient(h, w):
    return (np.add.outer(np.arange(h), np.arange(w)) % 256).astype(np.uint8)


@pytest.mark.parametrize("suffix,mode", [
    (".png", "L"), (".png", "RGB"), (".png", "RGBA"), (".png", "P"), (".png", "LA"),
    (".jpg", "L"), (".jpg", "RGB"), (".bmp", "RGB"), (".tif", "L"), (".webp", "RGB"),
])
def test_reads_common_formats_as_2d_gray_of_input_size(tmp_path, suffix, mode):
    path = tmp_path / f"scan{suffix}"
    Image.fromarray(_gradient(37, 53)).convert(mode).save(path)
    scan = load_scan(path)
    assert scan.pixels.ndim == 2
    assert (scan.height, scan.width) == (37, 53)
    assert scan.source_mode == mode
    assert scan.spacing_mm is None


def test_16bit_png_keeps_its_range(tmp_path):
    path = tmp_path / "scan16.png"
    arr = (np.arange(40 * 30, dtype=np.uint32).reshape(40, 30) * 50).astype(np.uint16)
    Image.fromarray(arr).save(path)
    scan = load_scan(path)
    assert scan.pixels.max() == arr.max() > 255
    assert scan.pixels.shape == (40, 30)


def test_rgba_composited_on_black(tmp_path):
    path = tmp_path / "a.png"
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[..., :3] = 255
    rgba[:10, :, 3] = 255      # top half opaque white, bottom half transparent white
    Image.fromarray(rgba, "RGBA").save(path)
    px = load_scan(path).pixels
    assert px[:10].min() == 255 and px[10:].max() == 0


def _expect(path, fragment, **kw):
    with pytest.raises(InputImageError) as err:
        load_scan(path, **kw)
    msg = str(err.value)
    assert str(path) in msg and fragment in msg, msg
    assert "\n" not in msg
    return msg


def test_zero_byte_file(tmp_path):
    p = tmp_path / "empty.png"
    p.write_bytes(b"")
    _expect(p, "empty file")


def test_not_an_image(tmp_path):
    p = tmp_path / "notes.png"
    p.write_text("hello, I am not a scan\n" * 20)
    _expect(p, "not an image")


def test_truncated_png(tmp_path):
    p = tmp_path / "cut.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)).save(p)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    _expect(p, "truncated")


def test_bilevel_mode_refused(tmp_path):
    p = tmp_path / "bits.png"
    Image.fromarray(_gradient(32, 32)).convert("1").save(p)
    _expect(p, "bilevel")


@pytest.mark.parametrize("size", [(1, 1), (MIN_SIDE - 1, 100)])
def test_too_small(tmp_path, size):
    p = tmp_path / "tiny.png"
    Image.new("L", size).save(p)
    _expect(p, "too small")


def test_min_side_is_accepted(tmp_path):
    p = tmp_path / "ok.png"
    Image.new("L", (MIN_SIDE, MIN_SIDE)).save(p)
    assert load_scan(p).pixels.shape == (MIN_SIDE, MIN_SIDE)


def _png_header_only(width, height):
    """A PNG that claims to be width x height (only the header is real)."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


def test_decompression_bomb_header(tmp_path):
    p = tmp_path / "bomb.png"
    p.write_bytes(_png_header_only(40000, 40000))
    _expect(p, "too large")


def test_pixel_limit_is_enforced_before_decoding(tmp_path):
    p = tmp_path / "big.png"
    Image.new("L", (64, 64)).save(p)
    _expect(p, "too large", max_pixels=1000)


def test_permission_denied(tmp_path, monkeypatch):
    p = tmp_path / "locked.png"
    Image.new("L", (32, 32)).save(p)

    def deny(path):
        raise PermissionError(13, "Permission denied", str(path))
    monkeypatch.setattr(imageio, "_open_binary", deny)
    _expect(p, "permission denied")


def test_missing_file_and_folder(tmp_path):
    _expect(tmp_path / "nope.png", "no such file")
    _expect(tmp_path, "is a folder")


# ----------------------------------------------------------------- DICOM

def write_dicom(path, pixels, spacing=(0.5, 0.8), slope=None, intercept=None,
                photometric="MONOCHROME2"):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"   # MR Image Storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MR"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    if spacing is not None:
        ds.PixelSpacing = [str(spacing[0]), str(spacing[1])]
    if slope is not None:
        ds.RescaleSlope = str(slope)
        ds.RescaleIntercept = str(intercept or 0)
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def test_dicom_spacing_rescale(tmp_path):
    arr = np.arange(24 * 20, dtype=np.uint16).reshape(24, 20)
    p = write_dicom(tmp_path / "slice.dcm", arr, spacing=(0.5, 0.8), slope=2, intercept=-100)
    scan = load_scan(p)
    assert scan.source_format == "DICOM"
    assert scan.spacing_mm == (0.5, 0.8)
    assert scan.pixels.shape == (24, 20)
    np.testing.assert_allclose(scan.pixels, arr * 2.0 - 100)


def test_dicom_monochrome1_inverted_and_detected_without_suffix(tmp_path):
    arr = np.zeros((20, 20), np.uint16)
    arr[:5] = 1000
    p = write_dicom(tmp_path / "slice_no_suffix", arr, spacing=None, photometric="MONOCHROME1")
    scan = load_scan(p)
    assert scan.spacing_mm is None
    assert scan.pixels[:5].max() == 0 and scan.pixels[5:].min() == 1000


def test_dicom_without_pydicom_names_the_extra(tmp_path, monkeypatch):
    arr = np.zeros((20, 20), np.uint16)
    p = write_dicom(tmp_path / "slice.dcm", arr)
    monkeypatch.setitem(sys.modules, "pydicom", None)   # import pydicom -> ImportError
    _expect(p, "edge-seg[dicom]")
