"""Image decoding: the only code that opens image files (R14, R15). Qt-free.

Importing this package sets ``OPENCV_IO_MAX_IMAGE_PIXELS`` (unless the environment already
sets it) *before* ``cv2`` is imported, because OpenCV reads it once, at import. Entry points
that may import ``cv2`` earlier (directly or via another library) must set it themselves first;
``model_zoo.io.limits`` holds the value and imports nothing heavy. OpenCV's own log output is
silenced the same way (``OPENCV_LOG_LEVEL``): every decoder failure becomes a ``LoadError``.
"""

from __future__ import annotations

import os

from model_zoo.io.limits import DEFAULT_MAX_PIXELS

os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(DEFAULT_MAX_PIXELS))
os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")

import cv2  # noqa: E402, F401 - must follow the environment set-up above

from model_zoo.io.decode import SUPPORTED_SUFFIXES, read_image  # noqa: E402
from model_zoo.io.errors import REASONS, LoadError  # noqa: E402
from model_zoo.io.hashing import hash_bytes, hash_file  # noqa: E402
from model_zoo.io.loaded import ImageMeta, LoadedImage  # noqa: E402
from model_zoo.io.names import name_rules  # noqa: E402
from model_zoo.io.sniff import sniff_format  # noqa: E402

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "REASONS",
    "SUPPORTED_SUFFIXES",
    "ImageMeta",
    "LoadError",
    "LoadedImage",
    "hash_bytes",
    "hash_file",
    "name_rules",
    "read_image",
    "sniff_format",
]
