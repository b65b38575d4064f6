"""One registry of model variants and presets.

Variants say which blocks a network uses; presets say how big it is. Names carry no
configuration.
"""

import numpy as np

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


def widen_input(model, variant, preset, channels, **overrides):
    """A new ``variant``/``preset`` network taking ``channels`` input channels, with every
    weight of ``model`` (a registry network with fewer) copied by layer name. The kernels
    that read the input get zeros for the new channels, so the new network computes exactly
    what ``model`` computes on channel 0 until training moves them."""
    new = build_model(variant, preset, input_channels=channels, **overrides)
    for layer in new.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        try:
            old = model.get_layer(layer.name).get_weights()
        except ValueError:
            raise ValueError(f"{model.name}: no layer {layer.name!r} to copy; is it a "
                             f"{variant} {preset} network?") from None
        if len(old) != len(weights):
            raise ValueError(f"{model.name}: layer {layer.name!r} holds {len(old)} weights, "
                             f"a {variant} {preset} network's {len(weights)}")
        out = []
        for w_new, w_old in zip(weights, old):
            if w_new.shape == w_old.shape:
                out.append(w_old)
            elif (w_new.ndim == 4 and w_new.shape[:2] == w_old.shape[:2]
                  and w_new.shape[3] == w_old.shape[3] and w_old.shape[2] < w_new.shape[2]):
                k = np.zeros(w_new.shape, w_old.dtype)
                k[:, :, :w_old.shape[2]] = w_old
                out.append(k)
            else:
                raise ValueError(f"{model.name}: layer {layer.name!r} has a weight of shape "
                                 f"{w_old.shape}, cannot become {w_new.shape}")
        layer.set_weights(out)
    return new


def he_mean_abs(kernel_shape):
    """The expected mean |w| of a he_normal kernel of this (kh, kw, in, out) shape."""
    fan_in = int(np.prod(kernel_shape[:3]))
    return float(np.sqrt(2.0 / fan_in) * np.sqrt(2.0 / np.pi))


def next_batchnorm(model, conv):
    """The BatchNormalization layer that takes ``conv``'s output and nothing else, or None."""
    import keras
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization) and layer.input is conv.output:
            return layer
    return None


def rescale_input_convs(model):
    """Bring the kernels of the convolutions that read the input to their he_normal size
    (mean |w|), without changing what the network computes -> [(layer name, s), ...].

    Each such convolution (bias-free, followed by its batch norm, as in every
    ``conv_bn_relu``) has its kernel divided by s; the norm's moving mean is divided by s,
    its moving variance by s², and gamma multiplied by sqrt(var + eps s²) / sqrt(var + eps),
    which keeps inference exact; in training the norm's batch statistics absorb s. Adam moves
    each weight by about the learning rate per step, so a kernel s times its initial size
    learns s times slower: a bundle's folded kernels (``convert.recover``) can be far above
    it (runs/CONTEXT.md)."""
    import keras
    done = []
    for conv in model.layers:
        if not isinstance(conv, keras.layers.Conv2D) or conv.input is not model.inputs[0]:
            continue
        weights = conv.get_weights()
        if len(weights) != 1:
            raise ValueError(f"{model.name}: {conv.name} has a bias; only bias-free "
                             f"convolutions before a batch norm can be rescaled")
        bn = next_batchnorm(model, conv)
        if bn is None:
            raise ValueError(f"{model.name}: no batch norm after {conv.name}")
        kernel = weights[0]
        s = float(np.abs(kernel).mean() / he_mean_abs(kernel.shape))
        gamma, beta, mean, var = bn.get_weights()
        eps = bn.epsilon
        conv.set_weights([kernel / s])
        bn.set_weights([gamma * np.sqrt(var + eps * s * s) / np.sqrt(var + eps), beta,
                        mean / s, var / (s * s)])
        done.append((conv.name, s))
    return done
