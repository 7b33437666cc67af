"""model_zoo."""
