"""Runtime hook of the CPU bundle (both executables): hide NVIDIA GPUs from torch.

The CPU bundle keeps only the CUDA libraries that torch's CUDA build needs to *import*; cuDNN's
engines, cuSOLVER and NVRTC's builtins are left out. On a machine with an NVIDIA driver torch
would still report CUDA as available and the first convolution would then fail, so the bundle
hides the GPUs and the device choice falls back to the CPU with its usual status-bar note.
A GPU bundle (``SALL_BUNDLE_CUDA=1 make package``) does not include this hook.
"""

import os

os.environ["CUDA_VISIBLE_DEVICES"] = ""
