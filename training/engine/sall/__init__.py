"""The SALL method: losses, teachers, soft-label cache, feature terms (sall-method.md)."""
