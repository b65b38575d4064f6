"""One scan in, mask + probability + findings out, exactly as the bundle's manifest says."""

import time
from dataclasses import dataclass, field

import numpy as np

from edge_runtime import __version__
from edge_runtime.errors import BundleError
from edge_runtime.interpreter import (input_shape, make_interpreter, refuse_unreachable,
                                      run_model)
from edge_runtime.postprocess import findings as mask_findings
from edge_runtime.postprocess import postprocess
from edge_runtime.preprocess import prepare_image, restore
from edge_runtime.safeio import shown


@dataclass
class Result:
    mask: np.ndarray          # bool [H, W], the scan's own size
    prob: np.ndarray          # float32 [H, W], tumour probability
    findings: dict            # JSON-ready, see Segmenter.segment
    timing_ms: dict = field(default_factory=dict)


class Segmenter:
    """Runs one bundle's model on scans; build once, call ``segment`` per scan.

    ``threads``: interpreter threads (None: ``interpreter.default_threads()``).
    """

    def __init__(self, bundle, threads=None):
        self.bundle = bundle
        self.spec = bundle.preprocessing
        self.threshold = bundle.threshold
        self.min_area_fraction = bundle.min_area_fraction
        self.min_peak_probability = bundle.min_peak_probability
        self.interpreter = make_interpreter(bundle.model_bytes, threads=threads,
                                            label=bundle.path)
        shape = input_shape(self.interpreter)
        size = self.spec.input_size
        if shape != (1, size, size, 1):
            raise BundleError(f"{shown(bundle.path)}: model input shape {shape} does not match the "
                              f"manifest's input size {size} (expected (1, {size}, {size}, 1))")
        refuse_unreachable(self.interpreter, self.threshold, self.min_peak_probability,
                           bundle.path)

    def predict(self, gray):
        """2-D scan -> tumour probability [H, W] (float32) at the scan's own size."""
        x, geo = prepare_image(gray, self.spec)
        return restore(run_model(self.interpreter, x), geo)

    def segment(self, scan):
        """``Scan`` -> ``Result`` with the mask, probability map and findings.

        Findings hold ``postprocess.findings`` plus source, input {width, height, format,
        mode}, spacing_mm, threshold, min_area_fraction, min_peak_probability, bundle {name, sha256, format},
        timing_ms {preprocess, inference, postprocess} and edge_seg_version.
        """
        t0 = time.perf_counter()
        x, geo = prepare_image(scan.pixels, self.spec)
        t1 = time.perf_counter()
        small = run_model(self.interpreter, x)
        t2 = time.perf_counter()
        prob = restore(small, geo)
        mask = postprocess(prob, self.threshold, self.min_area_fraction,
                           min_peak_probability=self.min_peak_probability)
        found = mask_findings(mask, prob, scan.spacing_mm)
        t3 = time.perf_counter()
        timing = {"preprocess": round(1000 * (t1 - t0), 2),
                  "inference": round(1000 * (t2 - t1), 2),
                  "postprocess": round(1000 * (t3 - t2), 2)}
        h, w = mask.shape
        info = {
            "source": str(scan.path),
            "input": {"width": w, "height": h, "format": scan.source_format,
                      "mode": scan.source_mode},
            "spacing_mm": list(scan.spacing_mm) if scan.spacing_mm else None,
            **found,
            "threshold": self.threshold,
            "min_area_fraction": self.min_area_fraction,
            "min_peak_probability": self.min_peak_probability,
            "bundle": {"name": self.bundle.name, "sha256": self.bundle.sha256,
                       "format": self.bundle.format},
            "timing_ms": timing,
            "edge_seg_version": __version__,
        }
        return Result(mask, prob, info, timing)
