"""Attention maps for the app: the model's default map on the image, and its colouring.

The map is the one the model names (``cam_default()``: LayerCAM on a fine stage for the demo
model, Grad-CAM on the last block otherwise) and is zeroed outside the fundus field of view, so
the overlay never paints the black border around the photograph.

Runs on the inference thread (docs/architecture.md); torch, OpenCV and ``model_zoo.explain`` are
imported inside the functions so that importing this module stays cheap (P7).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from model_zoo.explain import CamLayer, CamMethod
    from model_zoo.predictor import Predictor

MAX_CAM_SIDE = 512
"""Attention maps are returned at most this many pixels on their long side (the view scales)."""


def attention_map(
    predictor: Predictor,
    rgb: npt.NDArray[np.uint8],
    head: str,
    target: int | None,
    *,
    layer: CamLayer | None = None,
    method: CamMethod | None = None,
    mask_field: bool = True,
) -> tuple[npt.NDArray[np.float32], int]:
    """Attention map of ``head``/``target`` on ``rgb``'s geometry, zero outside the fundus.

    Hooks are released before returning.

    Args:
        predictor: the loaded model (used on the calling thread only).
        rgb: the decoded ``H×W×3`` uint8 image the model saw.
        head: task name; target: class index, None = the predicted class.
        layer, method: override the model's default (see :class:`model_zoo.explain.GradCAM`);
            the app never does, ``benchmarks/bench_cam_lesions.py`` compares candidates.
        mask_field: zero the map outside the field of view (False: as before issue 18).

    Returns:
        ``(cam, class)``: an ``h×w`` float32 map in [0, 1] with the image's aspect ratio (long
        side at most :data:`MAX_CAM_SIDE`), 0 outside the field of view and 1 at its hottest
        point inside (all 0 when there is no positive evidence), and the class it explains.
    """
    import cv2

    from model_zoo.explain import GradCAM, field_of_view

    card = predictor.card
    x = predictor.transform(rgb)[None].to(predictor.device)
    with GradCAM(predictor.model, target_layer=layer, method=method) as cam:
        [amap] = cam(x, head=head, target_class=target)
    square = np.asarray(amap.cam, dtype=np.float32)
    height, width = rgb.shape[:2]
    scale = min(1.0, MAX_CAM_SIDE / max(height, width))
    out_h, out_w = max(1, round(height * scale)), max(1, round(width * scale))
    if card.preprocessing.get("fundus_crop", False):
        top, left, side = _crop_box(rgb, int(card.preprocessing.get("crop_threshold", 10)))
        full = np.zeros((height, width), np.float32)
        placed = cv2.resize(square, (side, side), interpolation=cv2.INTER_LINEAR)
        # The crop square may extend past the image (padding): keep the part inside.
        y0, x0 = max(0, top), max(0, left)
        y1, x1 = min(height, top + side), min(width, left + side)
        full[y0:y1, x0:x1] = placed[y0 - top : y1 - top, x0 - left : x1 - left]
        out = cv2.resize(full, (out_w, out_h), interpolation=cv2.INTER_AREA)
    else:
        # The model saw the image stretched to a square: stretching back restores its geometry.
        out = cv2.resize(square, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
    if not mask_field:
        return np.clip(np.asarray(out, dtype=np.float32), 0.0, 1.0), amap.target_class
    small = rgb if (out_h, out_w) == (height, width) else cv2.resize(rgb, (out_w, out_h))
    field = field_of_view(np.asarray(small, dtype=np.uint8))
    masked = np.where(field, np.asarray(out, dtype=np.float32), np.float32(0.0))
    peak = float(masked.max())
    # The hottest point may have been on the border: rescale so that the strongest evidence
    # inside the field is shown at full heat.
    if peak > 0.0:
        masked /= np.float32(peak)
    return np.clip(masked, 0.0, 1.0).astype(np.float32, copy=False), amap.target_class


def _crop_box(rgb: npt.NDArray[np.uint8], threshold: int) -> tuple[int, int, int]:
    """``(top, left, side)`` of the square :func:`model_zoo.transforms.fundus_crop` takes."""
    import cv2

    from model_zoo.prepare import _counts, _span

    height, width = rgb.shape[:2]
    dark = cv2.inRange(np.ascontiguousarray(rgb), (0, 0, 0), (threshold, threshold, threshold))
    mask = np.asarray(cv2.bitwise_not(dark), dtype=np.uint8)
    if not cv2.countNonZero(mask):
        top, bottom, left, right = 0, height, 0, width
    else:
        left, right = _span(_counts(mask, axis=0))
        top, bottom = _span(_counts(mask[:, left:right], axis=1))
        left, right = _span(_counts(mask[top:bottom], axis=0))
    h, w = bottom - top, right - left
    side = max(h, w)
    return top - (side - h) // 2, left - (side - w) // 2, side


def heat_rgb(cam: npt.NDArray[np.float32], colormap: str = "jet") -> npt.NDArray[np.uint8]:
    """Colour-map an attention map: ``H×W`` in [0, 1] -> ``H×W×3`` uint8 RGB (any thread).

    Raises:
        ValueError: unknown colour map (see :func:`colormaps`).
    """
    from model_zoo.explain import overlay

    blank = np.zeros((*cam.shape, 3), np.uint8)
    return overlay(blank, cam, colormap=colormap, opacity=1.0)


ALPHA_RAMP = 0.25
"""Map values from 0 to this share of the hottest point fade in from transparent: the overlay
tints where the model looks and leaves the rest of the photograph, and the black border outside
the fundus, as they are (a colour map paints its zero as well, jet's as dark blue)."""


def heat_rgba(cam: npt.NDArray[np.float32], colormap: str = "jet") -> npt.NDArray[np.uint8]:
    """:func:`heat_rgb` with an alpha channel that is 0 where the map is 0: ``H×W×4`` uint8 RGBA.

    Raises:
        ValueError: unknown colour map (see :func:`colormaps`).
    """
    rgb = heat_rgb(cam, colormap)
    alpha = np.clip(cam / ALPHA_RAMP, 0.0, 1.0) * 255.0
    return np.dstack([rgb, np.round(alpha).astype(np.uint8)])


def colormaps() -> tuple[str, ...]:
    """Colour-map names offered for the overlay (first is the default)."""
    return ("jet", "inferno", "viridis", "turbo", "hot")
