"""One registry of model variants and presets.

Variants say which blocks a network uses; presets say how big it is. Names carry no
configuration.
"""


from edge_seg.train.models.nets import unet_family

VARIANTS = {
    "unet": dict(residual=False, attention_gates=False, block_attention=None,
                 description="plain U-Net baseline (double conv blocks)"),
    "resunet": dict(residual=True, attention_gates=False, block_attention=None,
                    description="Res-UNet: residual blocks"),
    "resunet_ag": dict(residual=True, attention_gates=True, block_attention=None,
                       description="Res-UNet + Attention Gates on the skip connections"),
    "resunet_se": dict(residual=True, attention_gates=False, block_attention="se",
                       description="Res-UNet + Squeeze-and-Excitation in every block"),
    "resunet_cbam": dict(residual=True, attention_gates=False, block_attention="cbam",
                         description="Res-UNet + CBAM (channel and spatial attention) in every block"),
}

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


def _lookup(table, kind, name):
    if name not in table:
        import difflib
        close = difflib.get_close_matches(name, table, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown {kind} {name!r}; allowed: {', '.join(table)}{hint}")
    return table[name]


def describe():
    return {"variants": {k: v["description"] for k, v in VARIANTS.items()},
            "presets": {k: v["description"] for k, v in PRESETS.items()}}


def model_config(variant, preset, **overrides):
    cfg = {k: v for k, v in _lookup(VARIANTS, "variant", variant).items() if k != "description"}
    cfg.update({k: v for k, v in _lookup(PRESETS, "preset", preset).items() if k != "description"})
    unknown = sorted(set(overrides) - {"base_filters", "depth", "input_size", "batch_size",
                                        "dynamic_size", "input_channels"})
    if unknown:
        raise ValueError(f"unknown model overrides {unknown}; allowed: base_filters, depth, "
                         "input_size, batch_size, dynamic_size, input_channels")
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    return cfg


def build_model(variant, preset="edge", **overrides):
    """Build a Keras model: ``build_model("resunet_ag", "edge", input_size=128)``."""
    cfg = model_config(variant, preset, **overrides)
    return unet_family(name=variant, **cfg)
