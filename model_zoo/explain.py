"""Grad-CAM, Grad-CAM++ and LayerCAM attention maps per head and class, plus overlay helpers.

Grad-CAM (Selvaraju et al. 2017) weights the ``K`` channels of a convolutional activation
``A`` (``[K, h, w]``) by the spatial mean of the gradient of one logit ``y`` with respect to
them, ``w_k = mean_ij dy/dA_kij``, and keeps the positive evidence, ``ReLU(sum_k w_k A_k)``.
Grad-CAM++ (Chattopadhay et al. 2018) replaces the mean with pixel weights ``alpha`` derived
from the exponential of the logit (see :func:`_gradcam_pp_weights`). LayerCAM (Jiang et al.
2021) weights every position by its own positive gradient, ``ReLU(sum_k ReLU(g_kij) A_kij)``:
on a shallow, fine layer the spatial mean of Grad-CAM averages away where the evidence lies,
the pixel-wise weight keeps it.

Which layer and method a model is explained with by default is the model's choice
(``model.cam_default()`` when it has one, else Grad-CAM on ``model.cam_target_layer()``).
:func:`field_of_view` finds the circular fundus so that a map can be zeroed outside it.

Speed: only the gradient of the logit with respect to the target layer's output is computed
(``torch.autograd.grad(score, activation)``); no parameter gradient is formed or accumulated
and ``.backward()`` is never called. Moreover the layers *before* the target layer run without
recording a graph: the forward hook hands the rest of the network a fresh leaf tensor that
requires grad and switches grad mode on from there. The cost of one map is therefore about one
forward plus the backward through the head only (measured in ``benchmarks/bench_explain.py``).

Caller's duties (the CAM object never touches the model's mode):

* put the model in ``eval()`` mode first. In training mode dropout makes the map random,
  BatchNorm mixes the images of a batch and updates its running statistics; a ``RuntimeWarning``
  is issued but the mode is left alone, because flipping it behind the caller's back would
  silently change their model (pytorch-grad-cam's ``BaseCAM`` does that; we do not);
* do not use the model from another thread while a map is computed (hooks make it
  non-reentrant; the app runs all inference on one worker thread: docs/architecture.md,
  Threads and processes);
* the target layer must run exactly once per forward pass.

Example:
    >>> model.eval()
    >>> with GradCAM(model) as cam:
    ...     maps = cam(batch, head="dr", output_size=(512, 512))
    >>> rgb_with_heat = overlay(rgb, maps[0].cam, opacity=0.45)
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self, TypeAlias

import cv2
import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "CAM_METHODS",
    "COLORMAPS",
    "AttentionMap",
    "CamLayer",
    "CamMethod",
    "GradCAM",
    "field_of_view",
    "overlay",
]

CamMethod = Literal["gradcam", "gradcam++", "layercam"]
CamLayer: TypeAlias = nn.Module
"""A module whose output is explained (named so that torch-free callers can type it)."""
CAM_METHODS: tuple[CamMethod, ...] = ("gradcam", "gradcam++", "layercam")

COLORMAPS: dict[str, int] = {
    name.removeprefix("COLORMAP_").lower(): int(getattr(cv2, name))
    for name in dir(cv2)
    if name.startswith("COLORMAP_")
}
"""OpenCV colour maps by lower-case name: ``jet``, ``inferno``, ``viridis``, ``turbo``, ..."""


@dataclass(frozen=True, eq=False)
class AttentionMap:
    """One attention map for one image, head and class.

    Attributes:
        head: task name whose logit is explained (e.g. ``"dr"``).
        target_class: class index explained, ``0 .. C-1``.
        cam: ``[H, W]`` float32 map in [0, 1] at the requested output size, 1 = strongest
            positive evidence; all zeros when the layer holds no positive evidence for the class.
            Read-only.
        score: the raw logit explained (no temperature, no softmax).
        method: ``"gradcam"``, ``"gradcam++"`` or ``"layercam"``.
    """

    head: str
    target_class: int
    cam: npt.NDArray[np.float32]
    score: float
    method: str

    def __post_init__(self) -> None:
        if self.cam.ndim != 2 or self.cam.dtype != np.float32:
            raise ValueError(
                f"cam must be a 2-D float32 array, got {self.cam.dtype} {self.cam.shape}"
            )


class GradCAM:
    """Grad-CAM / Grad-CAM++ / LayerCAM for a multi-task model; a context manager owning hooks.

    The model is called as ``model(x)`` and must return an object with a ``logits`` mapping
    (task -> ``[B, C]`` tensor, e.g. ``MultiTaskOutput``) or such a mapping itself.

    Args:
        model: the network; never switched between train and eval here (see module docstring).
        target_layer: module whose output ``[B, K, h, w]`` is explained.
        method: ``"gradcam"``, ``"gradcam++"`` or ``"layercam"``.

        With neither ``target_layer`` nor ``method``, the model's own default is used:
        ``model.cam_default()`` (a ``(layer, method)`` pair) when it has one, else Grad-CAM on
        ``model.cam_target_layer()``. With only ``method``, the layer is
        ``model.cam_target_layer()``; with only ``target_layer``, the method is Grad-CAM.

    Raises:
        TypeError: no target layer given and the model has no ``cam_target_layer()``.
        ValueError: unknown method.

    Example:
        >>> with GradCAM(model, method="gradcam++") as cam:
        ...     [amd_map] = cam(image[None], head="amd", target_class=3)
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        target_layer: nn.Module | None = None,
        method: CamMethod | None = None,
    ) -> None:
        default = getattr(model, "cam_default", None)
        if target_layer is None and method is None and default is not None:
            target_layer, method = default()
        method = "gradcam" if method is None else method
        if method not in CAM_METHODS:
            raise ValueError(f"method must be one of {', '.join(CAM_METHODS)}, got {method!r}")
        if target_layer is None:
            finder = getattr(model, "cam_target_layer", None)
            if finder is None:
                raise TypeError(
                    f"{type(model).__name__} has no cam_target_layer(); pass target_layer="
                )
            target_layer = finder()
        if not isinstance(target_layer, nn.Module):
            raise TypeError(f"target_layer must be an nn.Module, got {type(target_layer).__name__}")
        self.model = model
        self.target_layer = target_layer
        self.method: CamMethod = method
        self._handle: torch.utils.hooks.RemovableHandle | None = None
        self._armed = False
        self._activation: Tensor | None = None
        self._calls = 0

    # ------------------------------------------------------------------ hooks
    def __enter__(self) -> Self:
        if self._handle is not None:
            raise RuntimeError("this GradCAM is already active; it cannot be entered twice")
        self._handle = self.target_layer.register_forward_hook(self._on_forward)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def release(self) -> None:
        """Remove the hook and drop stored tensors; safe to call more than once."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self._armed = False
        self._activation = None

    def _on_forward(self, module: nn.Module, inputs: Any, output: Any) -> Tensor | None:
        if not self._armed:
            return None  # the model is used normally inside the `with` block: stay invisible
        if not isinstance(output, Tensor) or output.ndim != 4:
            raise RuntimeError(
                "the Grad-CAM target layer must output a [B, K, h, w] tensor, got "
                + (f"shape {tuple(output.shape)}" if isinstance(output, Tensor) else repr(output))
            )
        self._calls += 1
        # A leaf cut from the graph: the layers before never record one (nothing to save for
        # backward there), and the gradient we ask for stops here.
        leaf = output.detach().requires_grad_(True)
        self._activation = leaf
        torch.set_grad_enabled(True)
        # Hand on a copy so that an in-place op after the layer (DenseNet's ReLU) cannot alter
        # the activation we weight, nor hit "leaf variable used in an in-place operation".
        return leaf.clone()

    # ------------------------------------------------------------------ maps
    def __call__(
        self,
        x: Tensor,
        *,
        head: str,
        target_class: int | None = None,
        output_size: tuple[int, int] | None = None,
    ) -> list[AttentionMap]:
        """Attention maps for every image of a batch.

        Works when called inside ``torch.no_grad()`` or ``torch.inference_mode()``: grad is
        switched on locally and an inference-mode input is cloned into a normal tensor.

        Args:
            x: normalised images ``[B, 3, H, W]`` (or one image ``[3, H, W]``), on the model's
                device and dtype.
            head: task name, a key of the model's ``logits``.
            target_class: class to explain for every image; ``None`` = each image's predicted
                (argmax) class for that head.
            output_size: ``(height, width)`` of the returned maps in pixels; default ``(H, W)``.

        Returns:
            One :class:`AttentionMap` per image, in batch order.

        Raises:
            RuntimeError: used outside its ``with`` block, or the target layer did not run
                exactly once / does not influence the head.
            ValueError: unknown head, class out of range, bad input shape or output size.
        """
        if self._handle is None:
            raise RuntimeError("use GradCAM as a context manager: `with GradCAM(model) as cam:`")
        if self._armed:
            raise RuntimeError("GradCAM is not re-entrant; one map at a time")
        if not isinstance(x, Tensor) or x.ndim not in (3, 4):
            raise ValueError("x must be a [B, 3, H, W] (or [3, H, W]) image tensor")
        if x.ndim == 3:
            x = x.unsqueeze(0)
        size = (int(x.shape[-2]), int(x.shape[-1])) if output_size is None else output_size
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"output_size must be (height, width) > 0, got {output_size}")
        if self.model.training:
            warnings.warn(
                "GradCAM on a model in training mode: dropout and batch norm make the map "
                "random and update running statistics; call model.eval() first",
                RuntimeWarning,
                stacklevel=2,
            )
        try:
            with torch.inference_mode(False), torch.no_grad():
                # The hook turns grad on after the target layer; leaving no_grad() restores the
                # caller's mode whatever happens in between.
                x = x.clone() if x.is_inference() else x
                self._armed, self._calls = True, 0
                logits = self._head_logits(self.model(x), head)
                self._armed = False
                activation = self._activation
                if activation is None or self._calls != 1:
                    raise RuntimeError(
                        f"the target layer ran {self._calls} times in one forward; it must run "
                        "exactly once (is it part of this model?)"
                    )
                classes = self._classes(logits, head, target_class)
                picked = logits.gather(1, classes[:, None]).squeeze(1)
                if not picked.requires_grad:
                    raise RuntimeError(f"head {head!r} does not depend on the target layer")
                # Images of a batch are independent in eval mode, so one gradient of the sum
                # gives every image's own gradient.
                (grad,) = torch.autograd.grad(picked.sum(), activation, allow_unused=True)
                if grad is None:
                    raise RuntimeError(f"head {head!r} does not depend on the target layer")
                cams = self._cams(activation.float(), grad.float(), size)
        finally:
            self._armed = False
            self._activation = None
        scores = picked.detach().float().cpu().tolist()
        out = []
        for cam, cls, score in zip(cams, classes.tolist(), scores, strict=True):
            cam.setflags(write=False)
            out.append(AttentionMap(head, int(cls), cam, float(score), self.method))
        return out

    @staticmethod
    def _head_logits(output: Any, head: str) -> Tensor:
        logits = getattr(output, "logits", output)
        if not isinstance(logits, Mapping):
            raise TypeError(
                "the model must return a mapping of task -> logits or an object with .logits, "
                f"got {type(output).__name__}"
            )
        if head not in logits:
            raise ValueError(f"unknown head {head!r}; the model has {sorted(logits)}")
        tensor = logits[head]
        if not isinstance(tensor, Tensor) or tensor.ndim != 2:
            raise TypeError(f"logits of head {head!r} must be a [B, C] tensor")
        return tensor

    @staticmethod
    def _classes(logits: Tensor, head: str, target_class: int | None) -> Tensor:
        batch, num_classes = logits.shape
        if target_class is None:
            return logits.detach().argmax(dim=1)
        if isinstance(target_class, bool) or not 0 <= int(target_class) < num_classes:
            raise ValueError(
                f"target_class {target_class!r} is out of range for head {head!r} "
                f"(0..{num_classes - 1})"
            )
        return torch.full((batch,), int(target_class), dtype=torch.long, device=logits.device)

    def _cams(
        self, activation: Tensor, grad: Tensor, size: tuple[int, int]
    ) -> list[npt.NDArray[np.float32]]:
        with torch.no_grad():
            if self.method == "layercam":
                cam = F.relu((F.relu(grad) * activation).sum(dim=1))
            else:
                if self.method == "gradcam":
                    weights = grad.mean(dim=(2, 3))
                else:
                    weights = _gradcam_pp_weights(activation, grad)
                cam = F.relu(torch.einsum("bk,bkhw->bhw", weights, activation))
            cam = F.interpolate(cam[:, None], size=size, mode="bilinear", align_corners=False)
            cam = cam[:, 0]
            low = cam.amin(dim=(1, 2), keepdim=True)
            span = cam.amax(dim=(1, 2), keepdim=True) - low
            # A flat map (all zero: no positive evidence) has no hot spot to show: zeros, not
            # a division by zero and not a uniformly "hot" image.
            cam = torch.where(span > 0, (cam - low) / span.clamp_min(1e-30), torch.zeros_like(cam))
            array = cam.clamp_(0.0, 1.0).cpu().numpy().astype(np.float32, copy=False)
        return [array[i] for i in range(array.shape[0])]


def _gradcam_pp_weights(activation: Tensor, grad: Tensor) -> Tensor:
    """Grad-CAM++ channel weights ``w_k = sum_ij alpha_kij ReLU(g_kij)`` (paper, eq. 19).

    With ``S = exp(y)``, the higher derivatives reduce to powers of ``g = dy/dA`` and
    ``alpha_kij = g^2 / (2 g^2 + sum_ab A_kab g^3)``; a zero denominator is replaced by 1 as in
    the authors' code. The common factor ``exp(y)`` is dropped (the map is normalised anyway).
    """
    g2 = grad.pow(2)
    denom = 2.0 * g2 + activation.sum(dim=(2, 3), keepdim=True) * g2 * grad
    alpha = g2 / torch.where(denom != 0, denom, torch.ones_like(denom))
    return (alpha * F.relu(grad)).sum(dim=(2, 3))


def overlay(
    rgb: npt.NDArray[np.uint8],
    cam: npt.NDArray[np.floating[Any]],
    *,
    colormap: str = "jet",
    opacity: float = 0.45,
) -> npt.NDArray[np.uint8]:
    """Blend a colour-mapped attention map over an RGB image.

    Args:
        rgb: ``[H, W, 3]`` uint8 RGB image.
        cam: ``[h, w]`` map in [0, 1] (values outside are clipped); resized to ``H x W``
            bilinearly.
        colormap: an OpenCV colour map name (see :data:`COLORMAPS`), case-insensitive.
        opacity: weight of the heat map in [0, 1]; 0 returns a copy of ``rgb``.

    Returns:
        ``[H, W, 3]`` uint8 RGB image ``(1 - opacity) * rgb + opacity * heat``.

    Raises:
        ValueError: wrong shapes/dtypes, non-finite map, unknown colour map or opacity.
    """
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3:
        raise ValueError("rgb must be an [H, W, 3] uint8 array")
    if rgb.shape[2] != 3 or min(rgb.shape[:2]) < 1:
        raise ValueError(f"rgb must be an [H, W, 3] uint8 array, got shape {rgb.shape}")
    cam_arr = np.asarray(cam, dtype=np.float32)
    if cam_arr.ndim != 2 or min(cam_arr.shape) < 1 or not np.all(np.isfinite(cam_arr)):
        raise ValueError("cam must be a finite [h, w] array")
    code = COLORMAPS.get(colormap.lower())
    if code is None:
        raise ValueError(f"unknown colormap {colormap!r}; choose one of {sorted(COLORMAPS)}")
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must lie in [0, 1], got {opacity}")
    if opacity == 0.0:
        return rgb.copy()
    height, width = rgb.shape[:2]
    resized = cv2.resize(
        np.clip(cam_arr, 0.0, 1.0), (width, height), interpolation=cv2.INTER_LINEAR
    )
    heat_bgr = cv2.applyColorMap(np.round(resized * 255.0).astype(np.uint8), code)
    heat = cv2.cvtColor(heat_bgr, cv2.COLOR_BGR2RGB).astype(np.float32)
    blended = (1.0 - opacity) * rgb.astype(np.float32) + opacity * heat
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def field_of_view(
    rgb: npt.NDArray[np.uint8], *, threshold: int = 10, min_fraction: float = 0.05
) -> npt.NDArray[np.bool_]:
    """Where the fundus is: ``True`` inside the bright, convex field, ``False`` on the black border.

    Pixels brighter than ``threshold`` (largest channel) are opened to drop JPEG noise and
    specks, and the largest bright region is replaced by its convex hull: the field of a fundus
    camera (a disc, possibly clipped by the frame) is convex, so dark lesions or a dim rim inside
    it stay inside it.

    Args:
        rgb: ``[H, W, 3]`` uint8 RGB image.
        threshold: brightness (0-255) above which a pixel may belong to the field; 10 is what
            :func:`model_zoo.transforms.fundus_crop` uses.
        min_fraction: when the field found covers less than this share of the image (a black
            image, not a fundus), the whole image is returned as the field: masking then would
            hide everything rather than the border.

    Returns:
        ``[H, W]`` bool mask.

    Raises:
        ValueError: ``rgb`` is not an ``[H, W, 3]`` uint8 array.
    """
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3:
        raise ValueError("rgb must be an [H, W, 3] uint8 array")
    height, width = rgb.shape[:2]
    bright = (np.asarray(rgb).max(axis=2) > threshold).astype(np.uint8)
    side = max(3, (min(height, width) // 100) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
    bright = cv2.morphologyEx(bright, cv2.MORPH_OPEN, kernel)
    contours, _ = cv2.findContours(bright, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    field = np.zeros((height, width), np.uint8)
    if contours:
        hull = cv2.convexHull(max(contours, key=cv2.contourArea))
        cv2.fillConvexPoly(field, hull, 1)
    mask = field.astype(bool)
    if mask.sum() < min_fraction * height * width:
        return np.ones((height, width), np.bool_)
    return mask
