"""Decorator registries for models and backbones, modelled on torchvision's ``models/_api.py``.

A builder is registered once under a name with ``@register_model("name")`` and built with
``get_model("name", **kwargs)``. A duplicate name raises, so two modules can never silently
shadow each other, and nothing dispatches on a type string with ``if name == ...``.

This module does not import torch: the built-in architectures are imported (and thereby
registered) the first time a lookup needs them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from torch import nn

F = TypeVar("F", bound=Callable[..., Any])

# Modules whose import registers the built-in builders. Imported lazily so that importing the
# registry (or model_zoo) never pulls in torch.
_BUILTIN_MODULES = ("model_zoo.architectures.backbones", "model_zoo.architectures.student")


class RegistryError(ValueError):
    """An unknown name was looked up, or a name was registered twice."""


@dataclass(frozen=True, slots=True)
class BackboneEntry:
    """A registered backbone builder and the pretrained weights it can start from.

    Args:
        name: registry name, e.g. ``"resnet50"``.
        builder: ``builder(*, pretrained: bool) -> Backbone`` returning a module that maps
            ``[B, 3, H, W]`` images to a pooled ``[B, feature_dim]`` feature.
        feature_dim: ``F``, the width of the pooled feature.
        weights: torchvision weights enum name (``"ResNet50_Weights.IMAGENET1K_V2"``); the
            source of the default input size, mean/std and interpolation.
        min_input_size: smallest square input side, in pixels, the trunk accepts.
    """

    name: str
    builder: Callable[..., Any]
    feature_dim: int
    weights: str
    min_input_size: int


class _Registry:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Any] = {}

    def add(self, name: str, entry: Any) -> None:
        if not isinstance(name, str) or not name:
            raise RegistryError(f"a {self.kind} name must be a non-empty string, got {name!r}")
        if name in self._entries:
            raise RegistryError(f"a {self.kind} is already registered under the name {name!r}")
        self._entries[name] = entry

    def get(self, name: str) -> Any:
        _ensure_builtins()
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "none"
            raise RegistryError(f"unknown {self.kind} {name!r}; registered: {known}") from None

    def names(self) -> list[str]:
        _ensure_builtins()
        return sorted(self._entries)


_MODELS = _Registry("model")
_BACKBONES = _Registry("backbone")
_builtins_loaded = False


def _ensure_builtins() -> None:
    global _builtins_loaded
    if _builtins_loaded:
        return
    # Set first: the imported modules call register_* while this import is in progress.
    _builtins_loaded = True
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


def register_model(name: str) -> Callable[[F], F]:
    """Register a model builder under ``name``.

    Builders take keyword-only arguments and return an ``nn.Module``.

    Args:
        name: registry name; must not be registered yet.

    Returns:
        A decorator that registers the function and returns it unchanged.

    Raises:
        RegistryError: when ``name`` is already taken.

    Example:
        >>> @register_model("my_net")
        ... def my_net(*, width: int = 8) -> nn.Module: ...
    """

    def decorator(fn: F) -> F:
        _MODELS.add(name, fn)
        return fn

    return decorator


def get_model_builder(name: str) -> Callable[..., nn.Module]:
    """Return the builder registered under ``name`` (RegistryError if unknown)."""
    builder: Callable[..., nn.Module] = _MODELS.get(name)
    return builder


def get_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the model registered under ``name`` with keyword arguments ``kwargs``.

    Example:
        >>> model = get_model("sall_student", backbone="resnet18")
    """
    return get_model_builder(name)(**kwargs)


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return _MODELS.names()


def register_backbone(
    name: str, *, feature_dim: int, weights: str, min_input_size: int = 32
) -> Callable[[F], F]:
    """Register a backbone builder ``fn(*, pretrained: bool) -> Backbone`` under ``name``.

    Args:
        name: registry name, e.g. ``"resnet18"``; must not be registered yet.
        feature_dim: width ``F`` of the pooled feature the backbone returns.
        weights: torchvision weights enum name for ``pretrained=True`` and default data config.
        min_input_size: smallest square input side in pixels.

    Raises:
        RegistryError: when ``name`` is already taken.
    """

    def decorator(fn: F) -> F:
        _BACKBONES.add(
            name,
            BackboneEntry(
                name=name,
                builder=fn,
                feature_dim=feature_dim,
                weights=weights,
                min_input_size=min_input_size,
            ),
        )
        return fn

    return decorator


def get_backbone_entry(name: str) -> BackboneEntry:
    """Return the registry entry of backbone ``name`` (RegistryError if unknown)."""
    entry: BackboneEntry = _BACKBONES.get(name)
    return entry


def get_backbone(name: str, **kwargs: Any) -> nn.Module:
    """Build backbone ``name``; ``kwargs`` go to its builder (``pretrained``)."""
    backbone: nn.Module = get_backbone_entry(name).builder(**kwargs)
    return backbone


def list_backbones() -> list[str]:
    """Names of all registered backbones, sorted."""
    return _BACKBONES.names()
