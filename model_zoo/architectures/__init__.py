"""Network architectures of the model zoo.

This package's ``__init__`` stays torch-free on purpose: :mod:`model_zoo.cards` needs
:class:`~model_zoo.architectures.tasks.TaskSpec` and must be importable without torch. The torch
modules (:mod:`.backbones`, :mod:`.student`) register themselves with :mod:`model_zoo.registry`
when :func:`model_zoo.registry.get_model` first needs them.
"""
