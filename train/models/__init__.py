"""Res-UNet family: layers -> blocks -> networks, and one registry of variants and presets."""

from edge_seg.train.models.registry import PRESETS, VARIANTS, build_model, describe

__all__ = ["PRESETS", "VARIANTS", "build_model", "describe"]
