"""sall_desktop."""
