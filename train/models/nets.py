"""Whole networks composed from blocks."""

import keras
from keras import layers

from edge_seg.train.models import blocks


def unet_family(input_size=256, base_filters=16, depth=4, residual=True, attention_gates=False,
                block_attention=None, batch_size=None, dynamic_size=False, input_channels=1,
                name="resunet"):
    """A 2-D U-Net: ``depth`` encoder levels with filters base*2**i, a bottleneck with
    base*2**depth filters, and a mirrored decoder.

    residual: residual blocks (Res-UNet) instead of plain double convolutions.
    attention_gates: gate each skip connection with the decoder's coarser signal (AG).
    block_attention: None, "se" or "cbam" inside every block.
    dynamic_size: accept any height/width divisible by 2**depth (training on patches);
      the weights are the same as for a fixed ``input_size`` model (export, device).
    input_channels: 1 (a slice; what the device runtime feeds) or more (the slice and its
      neighbours, ``train.data.with_context``: a research option, not exportable).
    """
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    if input_size % (2 ** depth):
        raise ValueError(f"input_size must be divisible by 2**depth={2 ** depth}, "
                         f"got input_size={input_size} depth={depth}")
    if block_attention not in blocks.BLOCK_ATTENTION:
        raise ValueError(f"block_attention must be one of {list(blocks.BLOCK_ATTENTION)}, "
                         f"got {block_attention!r}")
    block = blocks.residual_block if residual else blocks.plain_block
    side = None if dynamic_size else input_size
    if input_channels < 1:
        raise ValueError(f"input_channels must be >= 1, got {input_channels}")
    inputs = keras.Input((side, side, input_channels), batch_size=batch_size, name="scan")
    x = inputs
    skips = []
    for level in range(depth):
        x = block(x, base_filters * 2 ** level, f"enc{level}", block_attention)
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"enc{level}_pool")(x)
    x = block(x, base_filters * 2 ** depth, "bottleneck", block_attention)
    for level in reversed(range(depth)):
        filters = base_filters * 2 ** level
        skip = skips[level]
        if attention_gates:
            skip = blocks.attention_gate(skip, x, max(filters // 2, 4), f"ag{level}")
        up = blocks.up_block(x, filters, f"dec{level}_up")
        x = layers.Concatenate(name=f"dec{level}_concat")([up, skip])
        x = block(x, filters, f"dec{level}", block_attention)
    outputs = blocks.segmentation_head(x)
    return keras.Model(inputs, outputs, name=name)


def lite0_unet(input_size=256, stop_after=5, decoder_filters=(64, 32, 24), full_resolution=False,
               encoder_weights=None, batch_size=None, dynamic_size=False, input_channels=1,
               name="lite0_unet"):
    """A U-Net on an EfficientNet-Lite0 encoder trimmed after stage ``stop_after`` (stride 16
    after stage 5, 112 channels; stride 8 after stage 3, 40 channels), for a CPU whose int8
    units favour regular convolutions (docs/LITE0.md).

    The input is the preprocessed scan in [0, 1] (``edge_runtime.preprocess``); a Rescaling
    layer maps it to the [-1, 1] the ImageNet weights expect, so bundles and the runtime are
    unchanged. The decoder climbs from the encoder's last stride to stride 2 with one
    ``decoder_filters`` entry per step: ``up_block`` (1x1 reduce, nearest 2x), the encoder's
    feature at that stride concatenated, a 3x3 conv-BN-ReLU. Then the 1-channel logits at
    stride 2 are upsampled bilinearly to the input size and passed through a sigmoid, unless
    ``full_resolution`` adds one more decoder step at stride 1 (the scan itself as the skip).
    No Conv2DTranspose and no Dense layer (both break tflite-runtime 2.14).

    encoder_weights: an EfficientNet-Lite0 npz (``efficientnet_lite.load_lite0_weights``);
      None leaves the encoder at random initialisation.
    """
    from edge_seg.train.models.efficientnet_lite import (LITE0_STAGES, lite0_encoder,
                                                         load_lite0_weights, stage_stride)
    if not 2 <= stop_after <= len(LITE0_STAGES):
        raise ValueError(f"stop_after must be 2..{len(LITE0_STAGES)}, got {stop_after}")
    bottom = stage_stride(stop_after)
    steps = bottom.bit_length() - 2            # stride 16 -> 8, 4, 2: three steps
    if len(decoder_filters) != steps:
        raise ValueError(f"decoder_filters needs {steps} entries (strides "
                         f"{[bottom >> k for k in range(1, steps + 1)]}) after stage "
                         f"{stop_after}, got {list(decoder_filters)}")
    if input_size % bottom:
        raise ValueError(f"input_size must be divisible by the encoder's stride {bottom}, "
                         f"got input_size={input_size} stop_after={stop_after}")
    if input_channels < 1:
        raise ValueError(f"input_channels must be >= 1, got {input_channels}")
    side = None if dynamic_size else input_size
    inputs = keras.Input((side, side, input_channels), batch_size=batch_size, name="scan")
    x = layers.Rescaling(2.0, offset=-1.0, name="to_lite0_range")(inputs)
    taps = lite0_encoder(x, stop_after)
    x = taps[bottom]
    for step, filters in enumerate(decoder_filters, start=1):
        stride = bottom >> step
        up = blocks.up_block(x, filters, f"dec{stride}_up")
        x = layers.Concatenate(name=f"dec{stride}_concat")([up, taps[stride]])
        x = blocks.conv_bn_relu(x, filters, 3, f"dec{stride}")
    if full_resolution:
        filters = decoder_filters[-1]
        up = blocks.up_block(x, filters, "dec1_up")
        x = layers.Concatenate(name="dec1_concat")([up, inputs])
        x = blocks.conv_bn_relu(x, filters, 3, "dec1")
        outputs = blocks.segmentation_head(x)
    else:
        x = layers.Conv2D(1, 1, name="head_logits")(x)
        x = layers.UpSampling2D(2, interpolation="bilinear", name="head_upsample")(x)
        outputs = layers.Activation("sigmoid", dtype="float32", name="head_sigmoid")(x)
    model = keras.Model(inputs, outputs, name=name)
    if encoder_weights:
        load_lite0_weights(model, encoder_weights)
    return model
