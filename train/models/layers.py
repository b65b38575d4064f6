"""Stateful/custom layers (backend-neutral Keras 3, serialisable)."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="edge_seg")
class ChannelPool(keras.layers.Layer):
    """Mean and max over the channel axis, concatenated: (N, H, W, C) -> (N, H, W, 2).

    The spatial branch of CBAM (Woo et al. 2018).
    """

    def call(self, x):
        return ops.concatenate([ops.mean(x, axis=-1, keepdims=True),
                                ops.max(x, axis=-1, keepdims=True)], axis=-1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (2,)
