"""Scoring an in-memory Keras model (training's report, conversion's gate): a ``predict_fn``
over ``model.predict_on_batch``. Keras is not imported here: the caller has the model."""

import numpy as np


def predict_fn_for_keras(model):
    """``predict_fn`` for an in-memory Keras model (no TensorFlow import here)."""
    def predict(batch):
        return np.asarray(model.predict_on_batch(batch), dtype=np.float32)
    return predict
