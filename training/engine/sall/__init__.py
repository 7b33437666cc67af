"""The SALL method: losses, teachers, soft-label cache, feature terms (docs/sall-method.md)."""
