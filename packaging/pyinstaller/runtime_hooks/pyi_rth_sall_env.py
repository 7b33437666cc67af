"""Runtime hook (both executables): process-wide settings that must precede every import.

PyInstaller runs runtime hooks before the entry script, so nothing can import cv2 earlier.
"""

import os

# OpenCV reads its decompression-bomb cap once, when cv2 is first imported (R15). Same value as
# model_zoo.io.limits.DEFAULT_MAX_PIXELS (not imported here: model_zoo's package import loads cv2;
# tests/packaging checks the two agree).
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(100_000_000))
os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")
