"""sall_desktop.services."""
