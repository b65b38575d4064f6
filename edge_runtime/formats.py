"""The one table of export formats.

It drives ``edge-seg convert --format``, the file names of converted models and bundles,
format detection, and the benchmark loop. Adding a format is adding one row.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class ExportFormat:
    name: str            # CLI value and manifest "format"
    suffix: str          # model file name: f"{stem}{suffix}"
    quantization: str    # what the converter does
    weights: str         # weight storage type in the .tflite
    io_dtype: str        # input/output tensor type the device sees
    needs_calibration: bool
    description: str
    arithmetic: str      # what the convolutions compute in on a CPU: "float32" or "int8"


FORMATS = (
    ExportFormat("fp32", "_fp32.tflite", "none", "float32", "float32", False,
                 "float32 weights and activations; the reference conversion", "float32"),
    ExportFormat("drq", "_drq.tflite", "dynamic range", "int8", "float32", False,
                 "Dynamic Range Quantization: int8 weights, float activations (the paper's)",
                 "int8"),
    ExportFormat("fp16", "_fp16.tflite", "float16 weights", "float16", "float32", False,
                 "float16 weights, dequantised to float32 at load", "float32"),
    ExportFormat("int8", "_int8.tflite", "full integer", "int8", "float32", True,
                 "int8 weights and activations calibrated on training scans; "
                 "float32 input and output are kept (quantise/dequantise inside the graph)",
                 "int8"),
)

DEFAULT_FORMAT = "drq"
FORMAT_NAMES = tuple(f.name for f in FORMATS)


def get_format(name):
    for fmt in FORMATS:
        if fmt.name == name:
            return fmt
    raise ValueError(f"unknown export format {name!r}; allowed: {', '.join(FORMAT_NAMES)}")
