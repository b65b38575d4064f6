"""edge-seg device runtime: brain tumour segmentation with a TFLite interpreter.

This package must import without TensorFlow: it needs only numpy, Pillow, click,
psutil and a TFLite interpreter (ai-edge-litert or tflite-runtime).
Nothing is done at import time.
"""

__version__ = "0.1.0"
