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
