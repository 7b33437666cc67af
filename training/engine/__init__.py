"""Torch side of training: data, the loop, stages, evaluation (imports torch and model_zoo)."""
