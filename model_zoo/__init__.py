"""model_zoo: the Qt-free model library shared by SALL Desktop and ``training``.

Sub-modules: ``io`` (decoding, torch-free), ``cards`` (torch-free), ``registry`` (torch-free until a
model is built), ``architectures``, ``checkpoints``, ``transforms``, ``device``, ``predictor``,
``explain``, ``metrics``, ``datasets``.

Importing the package imports ``model_zoo.io`` (OpenCV, pydicom; never torch), so the GUI process
reaches the decoders without loading torch. Keep torch out of this file.
"""

# OpenCV reads its pixel cap once, when cv2 is first imported (R15). model_zoo.io sets it before
# importing cv2, and every model_zoo sub-module runs this file first, so none can import cv2
# ahead of the cap.
import model_zoo.io  # noqa: F401
