"""One registry of model variants and presets.

Variants say which blocks a network uses; presets say how big it is. Names carry no
configuration. Each variant belongs to a family (``FAMILIES``): the network builder, the
presets its sizes come from and the overrides it takes besides the common ones. The
Res-UNet family (``unet``) sizes by ``base_filters``/``depth``; the EfficientNet-Lite0
U-Net (``lite0``) by where its encoder stops and its decoder's widths, and it can start
from ImageNet weights (``encoder_weights``, an npz file; docs/LITE0.md).
"""


from edge_seg.train.models.nets import lite0_unet, unet_family

VARIANTS = {
    "unet": dict(family="unet", residual=False, attention_gates=False, block_attention=None,
                 description="plain U-Net baseline (double conv blocks)"),
    "resunet": dict(family="unet", residual=True, attention_gates=False, block_attention=None,
                    description="Res-UNet: residual blocks"),
    "resunet_ag": dict(family="unet", residual=True, attention_gates=True, block_attention=None,
                       description="Res-UNet + Attention Gates on the skip connections"),
    "resunet_se": dict(family="unet", residual=True, attention_gates=False,
                       block_attention="se",
                       description="Res-UNet + Squeeze-and-Excitation in every block"),
    "resunet_cbam": dict(family="unet", residual=True, attention_gates=False,
                         block_attention="cbam",
                         description="Res-UNet + CBAM (channel and spatial attention) in every block"),
    "lite0_unet": dict(family="lite0",
                       description="U-Net on a trimmed EfficientNet-Lite0 encoder (ImageNet "
                                   "weights with --encoder-weights; docs/LITE0.md)"),
}

# Sizes of the Res-UNet family.
PRESETS = {
    "paper": dict(base_filters=64, depth=4, input_size=256,
                  description="the paper's size: 64..512 filters, 1024 at the bottleneck (~32M params)"),
    "edge": dict(base_filters=12, depth=4, input_size=256,
                 description="device size: 12..96 filters, 192 at the bottleneck (~1.2M params)"),
    "edge_wide": dict(base_filters=16, depth=4, input_size=256,
                      description="a wider device size: 16..128 filters, 256 at the bottleneck"),
    "tiny": dict(base_filters=4, depth=2, input_size=64,
                 description="for tests: 4..8 filters, 16 at the bottleneck"),
}


# Sizes of the EfficientNet-Lite0 U-Net: where the encoder stops, the decoder's widths from
# the coarsest step to stride 2 (docs/LITE0.md measures them on the device CPU).
LITE0_PRESETS = {
    "edge": dict(stop_after=5, decoder_filters=(64, 32, 24), input_size=256,
                 description="encoder to stage 5 (stride 16, 112 ch), decoder 64..24 to "
                             "stride 2, bilinear logits to full size"),
    "edge_small": dict(stop_after=3, decoder_filters=(32, 24), input_size=256,
                       description="encoder to stage 3 (stride 8, 40 ch), decoder 32, 24"),
    "tiny": dict(stop_after=3, decoder_filters=(8, 8), input_size=64,
                 description="for tests: encoder to stage 3, decoder 8, 8"),
}

# The common overrides every family takes; each family adds its own.
COMMON_OVERRIDES = ("input_size", "batch_size", "dynamic_size", "input_channels")

# ``jit_compile``: whether training compiles the step with XLA unless told otherwise. On the
# TensorFlow CPU backend XLA makes the lite0 step about 8x slower (depthwise convolutions'
# gradients: 19.3 s against 2.3 s a 16 x 192 x 192 batch on one core, 2026-12-06); the
# Res-UNet step is the same with or without it (platform notes).
FAMILIES = {
    "unet": dict(builder=unet_family, presets=PRESETS, overrides=("base_filters", "depth"),
                 jit_compile=True),
    "lite0": dict(builder=lite0_unet, presets=LITE0_PRESETS, overrides=("encoder_weights",),
                  jit_compile=False),
}


def _lookup(table, kind, name, note=""):
    if name not in table:
        import difflib
        close = difflib.get_close_matches(name, table, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown {kind} {name!r}; allowed: {', '.join(table)}{note}{hint}")
    return table[name]


def family_of(variant):
    """The family (a ``FAMILIES`` key) of ``variant``."""
    return _lookup(VARIANTS, "variant", variant)["family"]


def default_jit_compile(variant):
    """Whether training ``variant`` compiles with XLA when nobody says (its family's choice)."""
    return FAMILIES[family_of(variant)]["jit_compile"]


def describe():
    """{"variants": {name: text}, "presets": {family: {name: text}}, "families": {family:
    [variants]}} for ``edge-seg train --list``."""
    return {"variants": {k: v["description"] for k, v in VARIANTS.items()},
            "presets": {f: {k: v["description"] for k, v in fam["presets"].items()}
                        for f, fam in FAMILIES.items()},
            "families": {f: [k for k, v in VARIANTS.items() if v["family"] == f]
                         for f in FAMILIES}}


def model_config(variant, preset, **overrides):
    """The builder's arguments for ``variant`` at ``preset`` with ``overrides`` (None values
    are ignored, so a caller can pass every option it has; another family's option given a
    value is refused)."""
    family = family_of(variant)
    fam = FAMILIES[family]
    cfg = {k: v for k, v in VARIANTS[variant].items() if k not in ("description", "family")}
    cfg.update({k: v for k, v in _lookup(fam["presets"], "preset", preset,
                                         f" (the presets of {variant})").items()
                if k != "description"})
    allowed = COMMON_OVERRIDES + fam["overrides"]
    every = set(COMMON_OVERRIDES).union(*(f["overrides"] for f in FAMILIES.values()))
    unknown = sorted(set(overrides) - every)
    if unknown:
        raise ValueError(f"unknown model overrides {unknown}; allowed: {', '.join(allowed)}")
    foreign = sorted(k for k, v in overrides.items() if k not in allowed and v is not None)
    if foreign:
        raise ValueError(f"{variant} ({family} family) does not take {foreign[0]}="
                         f"{overrides[foreign[0]]!r}; allowed: {', '.join(allowed)}")
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    return cfg


def build_model(variant, preset="edge", **overrides):
    """Build a Keras model: ``build_model("resunet_ag", "edge", input_size=128)``,
    ``build_model("lite0_unet", "edge", encoder_weights="lite0.npz")``."""
    cfg = model_config(variant, preset, **overrides)
    return FAMILIES[family_of(variant)]["builder"](name=variant, **cfg)
