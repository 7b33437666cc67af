"""model_zoo: the Qt-free model library shared by SALL Desktop and ``training``.

Sub-modules: ``io`` (decoding, torch-free), ``cards`` (torch-free), ``registry`` (torch-free until a
model is built), ``architectures``, ``checkpoints``, ``transforms``, ``device``, ``predictor``,
``explain``, ``metrics``, ``datasets``.

Importing the package imports nothing else: the GUI process reaches ``model_zoo.io`` without
loading torch, so keep this file free of imports.
"""
