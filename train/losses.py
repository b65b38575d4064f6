"""Losses and in-training metrics (backend-neutral keras.ops)."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="edge_seg")
def dice_loss(y_true, y_pred, smooth=1.0):
    """Soft Dice over the whole batch (patches without tumour are well defined)."""
    y_true = ops.cast(y_true, y_pred.dtype)
    inter = ops.sum(y_true * y_pred)
    return 1.0 - (2.0 * inter + smooth) / (ops.sum(y_true) + ops.sum(y_pred) + smooth)


def _mean_bce(y_true, y_pred):
    return ops.mean(keras.losses.binary_crossentropy(y_true, y_pred))


@keras.saving.register_keras_serializable(package="edge_seg")
def dice_bce_loss(y_true, y_pred):
    """Dice + binary cross-entropy (the paper's loss family)."""
    y_true = ops.cast(y_true, y_pred.dtype)
    return dice_loss(y_true, y_pred) + _mean_bce(y_true, y_pred)


@keras.saving.register_keras_serializable(package="edge_seg")
def scan_dice_loss(y_true, y_pred, smooth=1.0):
    """Soft Dice per sample, averaged over the samples that hold a tumour.

    The reported metric is the mean Dice per scan, so a small tumour counts as much as a large
    one; the batch-pooled ``dice_loss`` lets large tumours dominate. Samples without a tumour
    have no Dice to learn (the cross-entropy term teaches them); a batch with none gives 0.
    """
    y_true = ops.cast(y_true, y_pred.dtype)
    n = ops.shape(y_true)[0]
    t = ops.reshape(y_true, (n, -1))
    p = ops.reshape(y_pred, (n, -1))
    inter = ops.sum(t * p, axis=1)
    per = 1.0 - (2.0 * inter + smooth) / (ops.sum(t, axis=1) + ops.sum(p, axis=1) + smooth)
    has = ops.cast(ops.sum(t, axis=1) > 0, per.dtype)
    return ops.sum(per * has) / ops.maximum(ops.sum(has), 1.0)


@keras.saving.register_keras_serializable(package="edge_seg")
def scan_dice_bce_loss(y_true, y_pred):
    """Per-scan Dice (``scan_dice_loss``) + binary cross-entropy."""
    y_true = ops.cast(y_true, y_pred.dtype)
    return scan_dice_loss(y_true, y_pred) + _mean_bce(y_true, y_pred)


@keras.saving.register_keras_serializable(package="edge_seg")
class DistillLoss(keras.losses.Loss):
    """A run with a teacher (``edge_seg.train.distill``): ``base(mask, p) + weight *
    BCE(teacher, p)``; ``y_true`` holds the mask in channel 0 and the teacher's map (0..1)
    in channel 1. ``base`` is a name of ``LOSSES``."""

    def __init__(self, base="dice_bce", weight=1.0, name="distill", **kwargs):
        super().__init__(name=name, **kwargs)
        self.base, self.weight = base, float(weight)
        self._base = get_loss(base)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        hard, soft = y_true[..., :1], y_true[..., 1:2]
        return self._base(hard, y_pred) + self.weight * _mean_bce(soft, y_pred)

    def get_config(self):
        return {"base": self.base, "weight": self.weight, "name": self.name}


LOSSES = {"dice_bce": dice_bce_loss, "scan_dice_bce": scan_dice_bce_loss, "dice": dice_loss,
          "scan_dice": scan_dice_loss, "bce": keras.losses.BinaryCrossentropy()}


def get_loss(name):
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; allowed: {', '.join(LOSSES)}")
    return LOSSES[name]
