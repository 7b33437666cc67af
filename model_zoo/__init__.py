"""model_zoo: the Qt-free model library shared by SALL Desktop and ``training``.

Sub-modules: ``io`` (decoding, torch-free), ``cards`` (torch-free), ``registry`` (torch-free until a
model is built), ``architectures``, ``checkpoints``, ``transforms``, ``device``, ``predictor``,
``explain``, ``metrics``, ``datasets``.

Importing the package imports nothing but ``os``: cards and the registry stay readable without
numpy, OpenCV or torch, and the GUI reaches ``model_zoo.io`` without loading torch.
"""

import os as _os

# OpenCV reads its pixel cap once, when cv2 is first imported (R15), and several sub-modules
# import cv2; every one of them runs this file first. Same value as
# model_zoo.io.limits.DEFAULT_MAX_PIXELS (tests/unit/model_zoo/test_fileio.py checks they agree).
_os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", "100000000")
