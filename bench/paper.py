"""The paper's own numbers, kept beside ours in every table (nothing here is measured).

Aprianto & Riana (2025), "Brain Tumor Segmentation Meets Efficiency: Res-UNet Improved by
Attention Mechanisms and Quantization", CommIT (Communication and Information Technology) Journal.
Reported on their own hardware and data split: compare ratios (DRQ vs Keras), not absolute
times, and remember their "mean IoU" is the 2-class Keras MeanIoU (background and tumour).
"""

CITATION = "Aprianto & Riana, CommIT 2025"

# One row per model the paper reports. None = not reported.
PAPER_ROWS = (
    {"variant": "resunet_ag", "label": "Res-UNet + attention gates", "format": "keras (fp32)",
     "miou_2class": 0.845, "dice": None, "size_mb": 127.0, "latency_ms": 314.3},
    {"variant": "resunet_ag", "label": "Res-UNet + attention gates", "format": "drq",
     "miou_2class": None, "dice": None, "size_mb": 32.0, "latency_ms": 197.3},
)


def paper_ratios():
    """The paper's DRQ-vs-float ratios: size reduction and speed-up."""
    base, drq = PAPER_ROWS
    return {"size_ratio": base["size_mb"] / drq["size_mb"],
            "speedup": base["latency_ms"] / drq["latency_ms"]}
