"""Layers -> blocks -> networks (the Res-UNet family, the EfficientNet-Lite0 U-Net), and one
registry of variants and presets."""

from edge_seg.train.models.registry import (FAMILIES, LITE0_PRESETS, PRESETS, VARIANTS,
                                            build_model, describe)

__all__ = ["FAMILIES", "LITE0_PRESETS", "PRESETS", "VARIANTS", "build_model", "describe"]
