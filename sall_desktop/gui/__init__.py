"""sall_desktop.gui: every PySide6 import of the app lives in this package."""
