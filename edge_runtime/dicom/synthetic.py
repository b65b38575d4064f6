"""Synthetic MR series for tests and benchmarks: 2-D scans wrapped as DICOM with pydicom.

Nothing here is a real patient. ``write_series`` writes a stack of 2-D arrays as one MR
series (single-frame MR Image Storage files, or one Enhanced MR multi-frame file) with a
plausible geometry: ``pixel_spacing`` mm pixels, slices ``slice_spacing`` mm apart along the
normal of ``orientation``, and optionally compressed (RLE, JPEG 2000, JPEG-LS lossless, JPEG
baseline), MONOCHROME1 or rescaled. ``example_stack`` makes the slices from one of the
project's example scans (``examples/*.png``), with dark slices at both ends.
"""

import datetime
from pathlib import Path

import numpy as np

from edge_runtime.dicom._deps import need

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
MR_CLASS = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR_CLASS = "1.2.840.10008.5.1.4.1.1.4.1"
COMPRESSIONS = ("none", "rle", "jpeg2000", "jpegls", "jpeg")


def example_stack(examples_dir, n_slices, which=0, dark_ends=1, seed=0):
    """``n_slices`` uint16 arrays: example scan number ``which`` of ``examples_dir`` (sorted
    ``*.png``) repeated, each slice with its own mild brightness change and noise (the same
    anatomy on neighbouring slices, as in a real series), and ``dark_ends`` near-black
    slices at each end (outside the head)."""
    from edge_runtime.imageio import load_scan
    scans = [load_scan(p).pixels for p in sorted(Path(examples_dir).glob("*.png"))]
    if not scans:
        raise ValueError(f"{examples_dir}: no example scans (*.png)")
    rng = np.random.default_rng(seed)
    shape = scans[0].shape
    out = []
    for k in range(n_slices):
        if k < dark_ends or k >= n_slices - dark_ends:
            out.append(rng.integers(0, 6, shape).astype(np.uint16))
            continue
        base = scans[which % len(scans)].astype(np.float32) * 4.0
        gain = 1.0 + 0.03 * np.sin(k)
        noisy = base * gain + rng.normal(0.0, 2.0, shape)
        out.append(np.clip(noisy, 0, 4095).astype(np.uint16))
    return out


def _base_dataset(sop_class, sop_uid, study_uid, series_uid, frame_uid, series_number,
                  description, patient_id, modality):
    pydicom = need("pydicom")
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.preamble = b"\0" * 128
    today = datetime.date(2026, 1, 1).strftime("%Y%m%d")
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_uid
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.FrameOfReferenceUID = frame_uid
    ds.PatientName, ds.PatientID = "Synthetic^EdgeSeg", patient_id
    ds.PatientBirthDate, ds.PatientSex = "", "O"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = today
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
    ds.AccessionNumber, ds.ReferringPhysicianName, ds.StudyID = "", "", "1"
    ds.Modality, ds.SeriesNumber, ds.SeriesDescription = modality, series_number, description
    ds.Manufacturer = "edge-seg synthetic"
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    return ds


def _set_pixels(ds, arr, compression):
    from pydicom import encaps
    from pydicom.uid import (
        JPEG2000Lossless,
        JPEGBaseline8Bit,
        JPEGLSLossless,
        RLELossless,
    )
    if compression not in COMPRESSIONS:
        raise ValueError(f"unknown compression {compression!r}; allowed: "
                         f"{', '.join(COMPRESSIONS)}")
    arr = np.asarray(arr)
    if compression == "jpeg":
        import io

        from PIL import Image
        frames = arr.reshape((-1,) + arr.shape[-2:])
        blobs = []
        for f in frames:
            scaled = np.clip(f.astype(np.float32) / max(1.0, float(arr.max())) * 255, 0, 255)
            buf = io.BytesIO()
            Image.fromarray(scaled.astype(np.uint8), "L").save(buf, "JPEG", quality=95)
            blobs.append(buf.getvalue())
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
        ds.PixelData = encaps.encapsulate(blobs)
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        ds.LossyImageCompression = "01"
        return
    ds.PixelData = arr.astype(np.uint16).tobytes()
    if compression != "none":
        syntax = {"rle": RLELossless, "jpeg2000": JPEG2000Lossless,
                  "jpegls": JPEGLSLossless}[compression]
        ds.compress(syntax, arr.astype(np.uint16))


def write_series(out_dir, images, *, study_uid=None, series_uid=None, series_number=1,
                 description="T1 post-contrast (synthetic)", pixel_spacing=(0.5, 0.5),
                 slice_spacing=5.0, orientation=AXIAL, origin=(-128.0, -128.0, -40.0),
                 patient_id="EDGESEG-SYNTH-1", compression="none", monochrome1=False,
                 rescale=(1.0, 0.0), modality="MR", enhanced=False, positions=True,
                 name="slice", frame_uid=None):
    """Write ``images`` (2-D arrays, uint16 range) as one series into ``out_dir`` -> list of
    the written paths (one file per slice, or one file when ``enhanced``). UIDs not given
    are made fresh. ``positions=False`` leaves out ImagePositionPatient and
    ImageOrientationPatient (the reader then orders by InstanceNumber)."""
    need("pydicom")
    from pydicom.uid import generate_uid
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    frame_uid = frame_uid or generate_uid()
    o = np.asarray(orientation, np.float64).reshape(2, 3)
    normal = np.cross(o[0], o[1])
    pos = [np.asarray(origin, np.float64) + k * slice_spacing * normal
           for k in range(len(images))]
    slope, intercept = rescale
    stored = []
    for img in images:
        v = (np.asarray(img, np.float64) - intercept) / slope
        if monochrome1:
            v = 4095 - v
        stored.append(np.clip(np.round(v), 0, 4095).astype(np.uint16))
    rows, cols = stored[0].shape
    cls = ENHANCED_MR_CLASS if enhanced else MR_CLASS
    paths = []

    def common(ds):
        ds.Rows, ds.Columns = rows, cols
        ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"

    if enhanced:
        from pydicom.dataset import Dataset
        from pydicom.sequence import Sequence
        ds = _base_dataset(cls, generate_uid(), study_uid, series_uid, frame_uid,
                           series_number, description, patient_id, modality)
        common(ds)
        ds.InstanceNumber = 1
        ds.NumberOfFrames = len(stored)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
        shared = Dataset()
        meas = Dataset()
        meas.PixelSpacing = [float(v) for v in pixel_spacing]
        meas.SliceThickness = float(slice_spacing)
        meas.SpacingBetweenSlices = float(slice_spacing)
        ori = Dataset()
        ori.ImageOrientationPatient = [float(v) for v in orientation]
        pvt = Dataset()
        pvt.RescaleSlope, pvt.RescaleIntercept, pvt.RescaleType = slope, intercept, "US"
        shared.PixelMeasuresSequence = Sequence([meas])
        shared.PlaneOrientationSequence = Sequence([ori])
        shared.PixelValueTransformationSequence = Sequence([pvt])
        ds.SharedFunctionalGroupsSequence = Sequence([shared])
        per = []
        for p in pos:
            item, pp = Dataset(), Dataset()
            pp.ImagePositionPatient = [float(v) for v in p]
            item.PlanePositionSequence = Sequence([pp])
            per.append(item)
        ds.PerFrameFunctionalGroupsSequence = Sequence(per)
        _set_pixels(ds, np.stack(stored), compression)
        path = out_dir / f"{name}_enhanced.dcm"
        ds.save_as(path, enforce_file_format=True)
        return [path]

    for k, (arr, p) in enumerate(zip(stored, pos)):
        ds = _base_dataset(cls, generate_uid(), study_uid, series_uid, frame_uid,
                           series_number, description, patient_id, modality)
        common(ds)
        ds.InstanceNumber = k + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
        if pixel_spacing is not None:
            ds.PixelSpacing = [float(v) for v in pixel_spacing]
        ds.SliceThickness = float(slice_spacing)
        if positions:
            ds.ImagePositionPatient = [float(v) for v in p]
            ds.ImageOrientationPatient = [float(v) for v in orientation]
        if (slope, intercept) != (1.0, 0.0):
            ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        _set_pixels(ds, arr, compression)
        path = out_dir / f"{name}_{k + 1:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
