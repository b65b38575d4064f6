"""Weight surgery on registry networks: what a fine-tune from an existing model needs.

``widen_input`` (more input channels, the new ones starting at zero), ``rescale_input_convs``
(input kernels back to their he_normal size without changing the function; runs/CONTEXT.md)
and their helpers. Building networks is ``registry.build_model``; this module only edits
weights of networks it built.
"""

import numpy as np

from edge_seg.train.models.registry import build_model


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
