"""Workstation side: TFLite conversion, accuracy gate and bundle packaging."""
