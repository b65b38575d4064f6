"""The DICOM Segmentation object (SEG) of one series, with highdicom.

One binary segment, "Neoplasm" (SCT), found by an automatic algorithm identified by the
bundle's name, its sha256 and the edge-seg version. Each frame references the source
instance (and frame) it was computed on, with that slice's position, orientation and pixel
spacing (highdicom copies them from the source). For single-frame series only the slices
with a tumour are frames (an empty slice has no frame in a SEG anyway), so memory does not
grow with the series length; a series with no tumour gets a SEG with one empty frame, so
"no tumour found" is an answer a viewer shows too. The SEG IOD has no "content
qualification" attribute; the series description and content description say "research,
not for diagnostic use".
"""

import io

import numpy as np

from edge_runtime import __version__
from edge_runtime.dicom._deps import need

SERIES_DESCRIPTION = "edge-seg tumour (research, not for diagnostic use)"
CONTENT_DESCRIPTION = ("Automatic tumour segmentation by edge-seg: research software, "
                       "not a medical device, not for diagnostic use")
MANUFACTURER = "edge-seg (research software)"
SEG_SERIES_NUMBER = 9901


def algorithm(bundle_name, bundle_sha256):
    """highdicom ``AlgorithmIdentificationSequence`` naming the bundle and its hash."""
    hd = need("highdicom")
    from pydicom.sr.codedict import codes
    return hd.AlgorithmIdentificationSequence(
        name=f"edge-seg {bundle_name}"[:64],
        version=f"{__version__}",
        family=codes.cid7162.ArtificialIntelligence,
        source="edge-seg",
        parameters={"bundle": bundle_name[:64], "bundle_sha256": bundle_sha256,
                    "edge_seg_version": __version__},
    )


def read_source(path):
    """The header of a source instance (no pixel data) for highdicom."""
    pydicom = need("pydicom")
    return pydicom.dcmread(str(path), stop_before_pixels=True)


def build_seg(sources, masks, bundle_name, bundle_sha256, series_number=SEG_SERIES_NUMBER):
    """-> SEG bytes (Explicit VR Little Endian, DICOM file format).

    ``sources``: the source datasets (headers; one multi-frame dataset, or one per
    single-frame slice, in the order of ``masks``); ``masks``: [frames, rows, cols], uint8
    0/1 (used as is: no copy) or bool,
    one per source frame (multi-frame) or per source dataset (single-frame).
    """
    hd = need("highdicom")
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid
    masks = np.asarray(masks)
    if masks.dtype != np.uint8:
        masks = (masks > 0).astype(np.uint8)
    desc = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="Tumour",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm(bundle_name, bundle_sha256),
    )
    seg = hd.seg.Segmentation(
        source_images=list(sources),
        pixel_array=masks,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[desc],
        series_instance_uid=generate_uid(),
        series_number=int(series_number),
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=bundle_name[:64],
        software_versions=f"edge-seg {__version__}",
        device_serial_number=bundle_sha256[:16],
        content_description=CONTENT_DESCRIPTION[:64],
        content_label="TUMOUR",
        series_description=SERIES_DESCRIPTION,
        omit_empty_frames=True,
    )
    buf = io.BytesIO()
    seg.save_as(buf, enforce_file_format=True)
    return buf.getvalue()
