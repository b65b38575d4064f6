"""Losses and in-training metrics (backend-neutral keras.ops)."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="edge_seg")
def dice_loss(y_true, y_pred, smooth=1.0):
    """Soft Dice over the whole batch (patches without tumour are well defined)."""
    y_true = ops.cast(y_true, y_pred.dtype)
    inter = ops.sum(y_true * y_pred)
    return 1.0 - (2.0 * inter + smooth) / (ops.sum(y_true) + ops.sum(y_pred) + smooth)


@keras.saving.register_keras_serializable(package="edge_seg")
def dice_bce_loss(y_true, y_pred):
    """Dice + binary cross-entropy (the paper's loss family)."""
    y_true = ops.cast(y_true, y_pred.dtype)
    bce = ops.mean(keras.losses.binary_crossentropy(y_true, y_pred))
    return dice_loss(y_true, y_pred) + bce


LOSSES = {"dice_bce": dice_bce_loss, "dice": dice_loss,
          "bce": keras.losses.BinaryCrossentropy()}


def get_loss(name):
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; allowed: {', '.join(LOSSES)}")
    return LOSSES[name]
