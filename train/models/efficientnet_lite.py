"""EfficientNet-Lite0 (Tan & Le 2019; the Lite variants: no squeeze-excite, ReLU6, fixed stem
and head) in backend-neutral Keras 3, and its ImageNet weights from an npz.

- ``lite0_encoder(x, stop_after)``: stem and stages 1..``stop_after``; returns the feature
  at every stride it reaches (the taps a U-Net decoder reads).
- ``lite0_classifier()``: the whole ImageNet classifier (head, pooling, fc): only to check a
  weights file against known predictions (tests/test_lite0.py, marker ``lab``).
- ``load_lite0_weights(model, path)``: every key of the npz onto the layer of the same name
  in ``model``; a one-line ``ValueError`` for a missing, unknown or misshapen key.

The npz layout (../shared/weights/README.md): the ``efficientnet-lite0`` PyTorch port's keys,
convolutions (out, in, kh, kw), depthwise (C, 1, kh, kw), BatchNorm weight/bias/running_*;
epsilon 1e-3 (Keras' default). Layers are named ``stem``, ``block{i}_{expand,dw,project}``
(the 16 blocks numbered as in the npz), ``top`` and ``fc``, so the mapping is by name.
"""

import numpy as np
import keras
from keras import layers

from edge_seg.train.models.blocks import conv_bn_relu, mbconv_block

# (expand, kernel, stride, out channels, repeats) per stage, as in the paper's Table 1.
LITE0_STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
                (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
STEM_FILTERS = 32
HEAD_FILTERS = 1280
IMAGENET_CLASSES = 1000


def stage_blocks(stage):
    """The npz block indices of ``stage`` (1-based): stage 2 -> [1, 2]."""
    if not 1 <= stage <= len(LITE0_STAGES):
        raise ValueError(f"stage must be 1..{len(LITE0_STAGES)}, got {stage}")
    start = sum(s[4] for s in LITE0_STAGES[:stage - 1])
    return list(range(start, start + LITE0_STAGES[stage - 1][4]))


def stage_stride(stage):
    """The total stride after ``stage`` (1-based), the stem's 2 included."""
    return 2 * int(np.prod([s[2] for s in LITE0_STAGES[:stage]]))


def lite0_encoder(x, stop_after=len(LITE0_STAGES)):
    """Stem and stages 1..``stop_after`` on ``x`` (already in the [-1, 1] range the weights
    expect) -> {stride: the last feature map at that stride}."""
    if not 1 <= stop_after <= len(LITE0_STAGES):
        raise ValueError(f"stop_after must be 1..{len(LITE0_STAGES)}, got {stop_after}")
    x = conv_bn_relu(x, STEM_FILTERS, 3, "stem", strides=2, activation="relu6")
    taps = {}
    for stage, (expand, kernel, stride, filters, _repeats) in enumerate(
            LITE0_STAGES[:stop_after], start=1):
        for k, block in enumerate(stage_blocks(stage)):
            x = mbconv_block(x, filters, expand, kernel, stride if k == 0 else 1,
                             f"block{block}")
        taps[stage_stride(stage)] = x
    return taps


def lite0_classifier(input_size=224, input_channels=3, name="efficientnet_lite0"):
    """The whole ImageNet classifier on RGB in [0, 255] -> 1000 softmax probabilities."""
    inputs = keras.Input((input_size, input_size, input_channels), name="image")
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="to_lite0_range")(inputs)
    x = lite0_encoder(x)[32]
    x = conv_bn_relu(x, HEAD_FILTERS, 1, "top", activation="relu6")
    x = layers.GlobalAveragePooling2D(name="top_pool")(x)
    outputs = layers.Dense(IMAGENET_CLASSES, activation="softmax", name="fc")(x)
    return keras.Model(inputs, outputs, name=name)


# ------------------------------------------------------------------------ the npz mapping
_BN_SLOTS = ("weight", "bias", "running_mean", "running_var")   # Keras: gamma, beta, mean, var


def _conv(w):        # (out, in, kh, kw) -> (kh, kw, in, out)
    return np.transpose(w, (2, 3, 1, 0))


def _depthwise(w):   # (C, 1, kh, kw) -> (kh, kw, C, 1)
    return np.transpose(w, (2, 3, 0, 1))


def _dense(w):       # (out, in) -> (in, out)
    return np.transpose(w)


def _same(w):
    return w


def _bn_keys(prefix, layer):
    return {f"{prefix}.{slot}": (layer, i, _same) for i, slot in enumerate(_BN_SLOTS)}


def lite0_keys():
    """{npz key: (Keras layer name, weight index, transform)} for the whole network."""
    keys = {"_conv_stem.weight": ("stem_conv", 0, _conv)}
    keys.update(_bn_keys("_bn0", "stem_bn"))
    for stage, (expand, *_rest) in enumerate(LITE0_STAGES, start=1):
        for b in stage_blocks(stage):
            p = f"_blocks.{b}"
            if expand != 1:
                keys[f"{p}._expand_conv.weight"] = (f"block{b}_expand_conv", 0, _conv)
                keys.update(_bn_keys(f"{p}._bn0", f"block{b}_expand_bn"))
            keys[f"{p}._depthwise_conv.weight"] = (f"block{b}_dw_conv", 0, _depthwise)
            keys.update(_bn_keys(f"{p}._bn1", f"block{b}_dw_bn"))
            keys[f"{p}._project_conv.weight"] = (f"block{b}_project_conv", 0, _conv)
            keys.update(_bn_keys(f"{p}._bn2", f"block{b}_project_bn"))
    keys["_conv_head.weight"] = ("top_conv", 0, _conv)
    keys.update(_bn_keys("_bn1", "top_bn"))
    keys["_fc.weight"] = ("fc", 0, _dense)
    keys["_fc.bias"] = ("fc", 1, _same)
    return keys


def lite0_key_shapes(input_channels=3):
    """{npz key: its shape in the npz's (PyTorch) layout} for the whole network: what a
    weights file must hold (tests write synthetic ones from it)."""
    shapes = {"_conv_stem.weight": (STEM_FILTERS, input_channels, 3, 3)}
    bn = {f"_bn0.{slot}": (STEM_FILTERS,) for slot in _BN_SLOTS}
    shapes.update(bn)
    channels = STEM_FILTERS
    for stage, (expand, kernel, _stride, filters, _repeats) in enumerate(LITE0_STAGES, 1):
        for b in stage_blocks(stage):
            p, hidden = f"_blocks.{b}", channels * expand
            if expand != 1:
                shapes[f"{p}._expand_conv.weight"] = (hidden, channels, 1, 1)
                shapes.update({f"{p}._bn0.{slot}": (hidden,) for slot in _BN_SLOTS})
            shapes[f"{p}._depthwise_conv.weight"] = (hidden, 1, kernel, kernel)
            shapes.update({f"{p}._bn1.{slot}": (hidden,) for slot in _BN_SLOTS})
            shapes[f"{p}._project_conv.weight"] = (filters, hidden, 1, 1)
            shapes.update({f"{p}._bn2.{slot}": (filters,) for slot in _BN_SLOTS})
            channels = filters
    shapes["_conv_head.weight"] = (HEAD_FILTERS, channels, 1, 1)
    shapes.update({f"_bn1.{slot}": (HEAD_FILTERS,) for slot in _BN_SLOTS})
    shapes["_fc.weight"] = (IMAGENET_CLASSES, HEAD_FILTERS)
    shapes["_fc.bias"] = (IMAGENET_CLASSES,)
    return shapes


def _fit_stem(key, value, want, path):
    """The RGB stem kernel for a model with ``want[2]`` input channels: as is for 3, summed
    over R, G and B for 1 (a gray scan repeated over three channels gives the same)."""
    if want[2] == 1 and value.shape[2] == 3:
        return value.sum(axis=2, keepdims=True)
    raise ValueError(f"{path}: key {key!r} is an RGB stem {value.shape}; the model's stem "
                     f"takes {want[2]} input channels (allowed: 3, or 1: the kernel summed "
                     f"over R, G and B)")


def read_npz(path):
    """{key: float32 array} of an npz file; a one-line error for a missing or unreadable file."""
    from pathlib import Path
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: encoder weights file not found")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: np.asarray(npz[k], np.float32) for k in npz.files}
    except Exception as exc:  # noqa: BLE001 - zip, pickle or format problems alike
        raise ValueError(f"{path}: not a readable .npz of arrays "
                         f"({type(exc).__name__}: {exc})") from None


def load_lite0_weights(model, path):
    """Copy the EfficientNet-Lite0 weights in the npz at ``path`` into ``model`` (a
    ``lite0_classifier`` or a network built on ``lite0_encoder``), by layer name.

    Every key must be known, and every key whose layer ``model`` has must be present and of
    the right shape; keys of the parts a trimmed encoder leaves out (later stages, head, fc)
    are skipped. Raises ``ValueError`` naming the key, what it received and what is allowed.
    Returns {"loaded": [keys], "skipped": [keys]}."""
    arrays = read_npz(path)
    table = lite0_keys()
    unknown = sorted(set(arrays) - set(table))
    if unknown:
        raise ValueError(f"{path}: unknown key {unknown[0]!r} ({len(unknown)} unknown in all); "
                         f"allowed: the {len(table)} EfficientNet-Lite0 keys "
                         f"(_conv_stem.weight, _bn0.*, _blocks.0-15.*, _conv_head.weight, "
                         f"_bn1.*, _fc.*)")
    present = {layer.name: layer for layer in model.layers}
    new_weights = {}
    loaded, skipped = [], []
    for key, (layer_name, index, transform) in table.items():
        layer = present.get(layer_name)
        if layer is None:
            skipped.append(key)
            continue
        if key not in arrays:
            raise ValueError(f"{path}: missing key {key!r} for layer {layer_name!r} of "
                             f"{model.name}")
        slots = new_weights.setdefault(layer_name, layer.get_weights())
        if index >= len(slots):
            raise ValueError(f"{path}: key {key!r} is weight {index} of layer {layer_name!r}, "
                             f"which holds {len(slots)}")
        want = tuple(slots[index].shape)
        value = transform(arrays[key])
        if key == "_conv_stem.weight" and value.shape != want:
            value = _fit_stem(key, value, want, path)
        if tuple(value.shape) != want:
            raise ValueError(f"{path}: key {key!r} has shape {tuple(arrays[key].shape)} "
                             f"(as Keras {tuple(value.shape)}); layer {layer_name!r} of "
                             f"{model.name} expects {want}")
        slots[index] = value
        loaded.append(key)
    if not loaded:
        raise ValueError(f"{path}: {model.name} has no EfficientNet-Lite0 layer (stem_conv, "
                         f"block0_dw_conv, ...) to load into")
    for layer_name, slots in new_weights.items():
        present[layer_name].set_weights(slots)
    return {"loaded": loaded, "skipped": skipped}
