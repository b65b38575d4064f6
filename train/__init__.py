"""Workstation side: Res-UNet variants, data pipeline and training (needs TensorFlow/Keras)."""
