"""Building blocks as small named functions.

Every layer a block creates is named from the block's ``name`` so a saved model reads like
the code. Choices made for the device (see ../shared/notes/platform.md):
- Conv -> BatchNorm -> ReLU ordering, so BatchNorm folds into the convolution on export;
- no Conv2DTranspose (tflite-runtime 2.14 cannot load it after DRQ): upsampling is
  UpSampling2D + convolution;
- no Dense layers (FULLY_CONNECTED v12 breaks tflite-runtime 2.14): 1x1 convolutions instead.
"""

import keras
from keras import layers

from edge_seg.train.models.layers import ChannelPool


def conv_bn_relu(x, filters, kernel_size, name, strides=1, activation="relu"):
    x = layers.Conv2D(filters, kernel_size, strides=strides, padding="same", use_bias=False,
                      kernel_initializer="he_normal", name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    if activation:
        x = layers.Activation(activation, name=f"{name}_{activation}")(x)
    return x


def squeeze_excite(x, name, ratio=8):
    """Squeeze-and-Excitation (Hu et al. 2018) with 1x1 convolutions for the two FC layers."""
    channels = x.shape[-1]
    hidden = max(channels // ratio, 4)
    s = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_squeeze")(x)
    s = layers.Conv2D(hidden, 1, activation="relu", name=f"{name}_reduce")(s)
    s = layers.Conv2D(channels, 1, activation="sigmoid", name=f"{name}_expand")(s)
    return layers.Multiply(name=f"{name}_scale")([x, s])


def cbam(x, name, ratio=8, kernel_size=7):
    """Convolutional Block Attention Module (Woo et al. 2018): channel then spatial attention."""
    channels = x.shape[-1]
    hidden = max(channels // ratio, 4)
    mlp_1 = layers.Conv2D(hidden, 1, activation="relu", name=f"{name}_mlp_1")
    mlp_2 = layers.Conv2D(channels, 1, name=f"{name}_mlp_2")
    avg = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_avgpool")(x)
    mx = layers.GlobalMaxPooling2D(keepdims=True, name=f"{name}_maxpool")(x)
    ch = layers.Add(name=f"{name}_channel_sum")([mlp_2(mlp_1(avg)), mlp_2(mlp_1(mx))])
    ch = layers.Activation("sigmoid", name=f"{name}_channel_gate")(ch)
    x = layers.Multiply(name=f"{name}_channel_scale")([x, ch])
    sp = ChannelPool(name=f"{name}_channel_pool")(x)
    sp = layers.Conv2D(1, kernel_size, padding="same", activation="sigmoid",
                       name=f"{name}_spatial_gate")(sp)
    return layers.Multiply(name=f"{name}_spatial_scale")([x, sp])


BLOCK_ATTENTION = {None: None, "se": squeeze_excite, "cbam": cbam}


def residual_block(x, filters, name, attention=None):
    """Two 3x3 conv-BN(-ReLU) layers with a projected shortcut (He et al. 2016; Zhang et al.
    2018's Res-UNet); optional SE or CBAM on the residual branch before the addition."""
    shortcut = x
    y = conv_bn_relu(x, filters, 3, f"{name}_1")
    y = conv_bn_relu(y, filters, 3, f"{name}_2", activation=None)
    if attention is not None:
        y = BLOCK_ATTENTION[attention](y, f"{name}_{attention}")
    if shortcut.shape[-1] != filters:
        shortcut = conv_bn_relu(shortcut, filters, 1, f"{name}_shortcut", activation=None)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.Activation("relu", name=f"{name}_out")(y)


def plain_block(x, filters, name, attention=None):
    """Two 3x3 conv-BN-ReLU layers: the plain U-Net block (Ronneberger et al. 2015)."""
    x = conv_bn_relu(x, filters, 3, f"{name}_1")
    x = conv_bn_relu(x, filters, 3, f"{name}_2")
    if attention is not None:
        x = BLOCK_ATTENTION[attention](x, f"{name}_{attention}")
    return x


def attention_gate(skip, gating, inter_channels, name):
    """Additive attention gate (Oktay et al. 2018; Schlemper et al. 2019).

    ``skip`` (H x W) is weighted by coefficients computed at the gating signal's coarser
    resolution (H/2 x W/2) and upsampled: alpha = sigmoid(psi(relu(W_x skip + W_g g))).
    """
    theta_x = layers.Conv2D(inter_channels, 2, strides=2, padding="same", use_bias=False,
                            name=f"{name}_theta_x")(skip)
    phi_g = layers.Conv2D(inter_channels, 1, padding="same", name=f"{name}_phi_g")(gating)
    f = layers.Add(name=f"{name}_sum")([theta_x, phi_g])
    f = layers.Activation("relu", name=f"{name}_relu")(f)
    psi = layers.Conv2D(1, 1, padding="same", activation="sigmoid", name=f"{name}_psi")(f)
    alpha = layers.UpSampling2D(2, interpolation="bilinear", name=f"{name}_alpha_up")(psi)
    return layers.Multiply(name=f"{name}_gated")([skip, alpha])


def up_block(x, filters, name):
    """Reduce channels with a 1x1 conv at the coarse resolution (cheap), then upsample 2x."""
    x = conv_bn_relu(x, filters, 1, f"{name}_reduce")
    return layers.UpSampling2D(2, interpolation="nearest", name=f"{name}_upsample")(x)


def depthwise_bn_relu(x, kernel_size, name, strides=1, activation="relu6"):
    """Depthwise convolution -> BatchNorm (-> activation), named like ``conv_bn_relu``."""
    x = layers.DepthwiseConv2D(kernel_size, strides=strides, padding="same", use_bias=False,
                               name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    if activation:
        x = layers.Activation(activation, name=f"{name}_{activation}")(x)
    return x


def mbconv_block(x, filters, expand, kernel_size, strides, name):
    """Inverted residual (MobileNetV2; EfficientNet-Lite's MBConv without squeeze-excite):
    1x1 expansion (skipped when ``expand`` is 1) -> depthwise -> linear 1x1 projection, with
    ReLU6, and a residual addition where the stride is 1 and the channels match."""
    inputs = x
    channels = x.shape[-1]
    if expand != 1:
        x = conv_bn_relu(x, channels * expand, 1, f"{name}_expand", activation="relu6")
    x = depthwise_bn_relu(x, kernel_size, f"{name}_dw", strides=strides)
    x = conv_bn_relu(x, filters, 1, f"{name}_project", activation=None)
    if strides == 1 and channels == filters:
        x = layers.Add(name=f"{name}_add")([x, inputs])
    return x


def segmentation_head(x, name="head"):
    return layers.Conv2D(1, 1, activation="sigmoid", dtype="float32", name=f"{name}_sigmoid")(x)


__all__ = ["conv_bn_relu", "squeeze_excite", "cbam", "residual_block", "plain_block",
           "attention_gate", "up_block", "depthwise_bn_relu", "mbconv_block", "segmentation_head",
           "keras"]
