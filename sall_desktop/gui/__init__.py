"""sall_desktop.gui."""
