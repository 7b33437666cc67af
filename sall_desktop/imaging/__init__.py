"""sall_desktop.imaging."""
