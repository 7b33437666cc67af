"""Issue 18 item 6: do the attention maps point at the lesions? Measured on synthetic DR images.

Takes DR grade >= 2 images (60 by default, fixed seed) with the generator's lesion masks, computes
the map the app would show (``sall_desktop.services.attention.attention_map``, the demo model by
default, explaining the predicted DR class as the app does on opening the overlay, or the true
grade with ``--target true``) for the model's default layer and method and for candidate layers,
and prints per candidate:

- ``in-lesion``: share of the map's mass inside the true DR lesions, dilated by ``--dilation``
  (2 % of the field-of-view diameter by default, about 5 px at 256 px);
- ``chance``: the dilated lesions' share of the field of view, what a uniform map over the
  fundus would score;
- ``ratio``: in-lesion / chance per image, mean with a bootstrap 95 % CI, median and IQR;
- ``outside``: share of the mass outside the field of view (the black border);
- ``AUC``: how well the map's values rank lesion above non-lesion pixels inside the field
  (0.5 = no better than chance). Unlike the ratio it does not change when the map is made more
  contrasted (squared, say), so it tells better localisation from a sharper colour scale;
- ``raw``: the map's resolution before upsampling, and the median milliseconds per map.

Images are rendered in memory (JPEG q92 round trip, as ``sall-train synth`` writes them) at
``--size`` px, or read with ``--data DIR`` from a folder written by
``sall-train synth --masks`` (``ground_truth.csv``, ``masks/<stem>.png``,
``masks/field/<stem>.png``). Candidate layers are listed for EfficientNet-B0 (the demo model);
another backbone gets today's Grad-CAM and its default only.

Run: ``.venv/bin/python benchmarks/bench_cam_lesions.py [--n 60] [--target pred|true]
[--data DIR] [--model DIR] [--dilation 0.02] [--threads 1]``
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import model_zoo.io  # noqa: F401  # isort: skip - sets OPENCV_IO_MAX_IMAGE_PIXELS before cv2
import cv2
import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from model_zoo.architectures.student import SallStudent
from model_zoo.datasets.benchmark import FIELD_MASKS, MASKS_DIR, dr_lesion_mask, field_mask
from model_zoo.datasets.synthetic import FundusSpec, render_fundus
from model_zoo.explain import CamMethod
from model_zoo.io import read_image
from model_zoo.predictor import Predictor
from model_zoo.weights import demo_model_dir
from sall_desktop.services.attention import attention_map

HEAD = "dr"
CANDIDATES: dict[str, tuple[tuple[str, CamMethod], ...]] = {
    "efficientnet_b0": (
        ("features.8", "gradcam"),
        ("features.4", "gradcam"),
        ("features.3", "gradcam"),
        ("features.2", "gradcam"),
        ("features.4", "layercam"),
        ("features.3", "layercam"),
        ("features.2", "layercam"),
        ("features.1", "layercam"),
    ),
}
"""Backbone -> (module inside its torchvision net, method), compared with the field masked."""


@dataclass(frozen=True)
class Case:
    """One image with its answer key."""

    rgb: npt.NDArray[np.uint8]
    grade: int
    lesions: npt.NDArray[np.bool_]
    field: npt.NDArray[np.bool_]


def rendered(n: int, seed: int, size: int) -> list[Case]:
    """``n`` fresh DR 2-4 eyes (AMD 0), seeds drawn from ``seed``, away from the demo set's."""
    rng = np.random.default_rng([seed, 18])
    cases = []
    for i in range(n):
        grade = int(rng.integers(2, 5))
        spec = FundusSpec(
            seed=int(rng.integers(10**6, 2**31 - 1)),
            size=size,
            dr_grade=grade,
            amd_grade=0,
            laterality="R" if i % 2 == 0 else "L",
        )
        fundus = render_fundus(spec)
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(fundus.rgb, cv2.COLOR_RGB2BGR), [95, 92])
        assert ok
        bgr = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)
        assert bgr is not None
        rgb = np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)
        cases.append(Case(rgb, grade, dr_lesion_mask(fundus), field_mask(fundus)))
    return cases


def from_folder(folder: Path, n: int, seed: int) -> list[Case]:
    """``n`` gradable DR >= 2 images of a ``sall-train synth --masks`` folder (drawn by seed)."""
    with (folder / "ground_truth.csv").open(encoding="utf-8", newline="") as handle:
        rows = [
            r
            for r in csv.DictReader(handle)
            if r["gradable"] == "1" and r["true_dr_grade"] and int(r["true_dr_grade"]) >= 2
        ]
    if not rows:
        raise SystemExit(f"{folder}: no gradable DR >= 2 image in ground_truth.csv")
    picked = np.random.default_rng(seed).permutation(len(rows))[:n]
    cases = []
    for index in sorted(int(i) for i in picked):
        row = rows[index]
        stem = Path(row["file_name"]).stem + ".png"

        def mask(path: Path) -> npt.NDArray[np.bool_]:
            image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            if image is None:
                raise SystemExit(
                    f"{path} is missing: write the folder with sall-train synth --masks"
                )
            return np.asarray(image > 127, np.bool_)

        rgb = read_image(folder / row["file_name"]).rgb
        lesions, field = (
            mask(folder / MASKS_DIR / stem),
            mask(folder / MASKS_DIR / FIELD_MASKS / stem),
        )
        cases.append(Case(rgb, int(row["true_dr_grade"]), lesions, field))
    return cases


def dilate(mask: npt.NDArray[np.bool_], radius: int) -> npt.NDArray[np.bool_]:
    """``mask`` grown by a disc of ``radius`` pixels."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return np.asarray(cv2.dilate(mask.astype(np.uint8), kernel) > 0, np.bool_)


def auc(values: npt.NDArray[np.float32], positive: npt.NDArray[np.bool_]) -> float:
    """P(value of a positive pixel > value of a negative one), ties counted half."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), np.float64)
    sorted_values = values[order]
    # Average ranks over ties: the many exact zeros of a masked map must not be ranked at random.
    _, first, counts = np.unique(sorted_values, return_index=True, return_counts=True)
    mid = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(mid, counts)
    n_pos = int(positive.sum())
    n_neg = len(values) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def score(
    cam: npt.NDArray[np.float32], case: Case, fraction: float
) -> tuple[float, float, float, float] | None:
    """``(in-lesion share, chance, outside share, AUC)`` of one map; None for an all-zero map."""
    height, width = case.field.shape
    if cam.shape != (height, width):
        cam = np.asarray(cv2.resize(cam, (width, height), interpolation=cv2.INTER_LINEAR))
    cam = np.clip(cam, 0.0, None)
    total = float(cam.sum())
    if total <= 0.0:
        return None
    diameter = 2.0 * np.sqrt(case.field.sum() / np.pi)
    lesions = dilate(case.lesions, max(1, round(fraction * diameter))) & case.field
    inside = float(cam[lesions].sum()) / total
    chance = float(lesions.sum()) / float(case.field.sum())
    outside = float(cam[~case.field].sum()) / total
    return inside, chance, outside, auc(cam[case.field], lesions[case.field])


def raw_side(model: nn.Module, layer: nn.Module, size: int) -> str:
    """``h×w`` of ``layer``'s output for a ``size``-px input."""
    shapes: list[tuple[int, ...]] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: shapes.append(tuple(out.shape)))
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size))
    finally:
        handle.remove()
    return f"{shapes[0][-2]}x{shapes[0][-1]}"


def bootstrap_ci(values: list[float], seed: int, rounds: int = 2000) -> tuple[float, float]:
    """95 % percentile bootstrap interval of the mean."""
    data = np.asarray(values, np.float64)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), size=(rounds, len(data)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=60, help="DR >= 2 images")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--size", type=int, default=256, help="render size (the demo set's)")
    parser.add_argument("--data", type=Path, help="a sall-train synth --masks folder")
    parser.add_argument("--model", type=Path, help="checkpoint folder (default: the demo model)")
    parser.add_argument("--target", choices=("pred", "true"), default="pred")
    parser.add_argument("--dilation", type=float, default=0.02, help="x field diameter")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0 = default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    predictor = Predictor.from_checkpoint(args.model or demo_model_dir(), device="cpu", fast=False)
    model = predictor.model
    if not isinstance(model, SallStudent):
        raise SystemExit(f"expected a sall_student model, got {type(model).__name__}")
    cases = (
        from_folder(args.data, args.n, args.seed)
        if args.data
        else rendered(args.n, args.seed, args.size)
    )
    default_layer, default_method = model.cam_default()
    rows: list[tuple[str, nn.Module, CamMethod, bool]] = [
        ("before: gradcam last block, unmasked", model.cam_target_layer(), "gradcam", False)
    ]
    for name, method in CANDIDATES.get(model.backbone_name, ()):
        layer = model.backbone.net.get_submodule(name)
        mark = " (default)" if (layer, method) == (default_layer, default_method) else ""
        rows.append((f"{method} {name}{mark}", layer, method, True))
    if not any(r[1] is default_layer and r[2] == default_method and r[3] for r in rows):
        rows.append((f"{default_method} default", default_layer, default_method, True))

    source = str(args.data) if args.data else f"rendered at {args.size} px, seed {args.seed}"
    grades = np.bincount([c.grade for c in cases], minlength=5)[2:].tolist()
    print(
        f"{len(cases)} DR>=2 images (grades 2/3/4: {grades}; {source}); explaining the "
        f"{'predicted' if args.target == 'pred' else 'true'} DR class; lesions dilated by "
        f"{args.dilation:.0%} of the field diameter; {torch.get_num_threads()} thread(s)"
    )
    print(
        f"{'layer / method':40s} {'raw':>6s} {'in-lesion':>9s} {'chance':>7s} "
        f"{'ratio mean [95% CI]':>22s} {'median (IQR)':>18s} {'outside':>8s} {'AUC':>6s} {'ms':>6s}"
    )
    size = predictor.card.input_size
    for label, layer, method, masked in rows:
        scores, millis, empty = [], [], 0
        for case in cases:
            target = None if args.target == "pred" else case.grade
            start = time.perf_counter()
            cam, _ = attention_map(
                predictor, case.rgb, HEAD, target, layer=layer, method=method, mask_field=masked
            )
            millis.append((time.perf_counter() - start) * 1000.0)
            result = score(cam, case, args.dilation)
            if result is None:
                empty += 1
            else:
                scores.append(result)
        ratios = [s[0] / s[1] for s in scores if s[1] > 0]
        low, high = bootstrap_ci(ratios, args.seed)
        q1, q2, q3 = np.percentile(ratios, [25, 50, 75])
        inside, chance, outside, area = np.asarray(scores, np.float64).mean(axis=0).tolist()
        note = f"  ({empty} all-zero maps left out)" if empty else ""
        print(
            f"{label:40s} {raw_side(model, layer, size):>6s} {inside:9.3f} {chance:7.3f} "
            f"{statistics.mean(ratios):6.2f} [{low:4.2f}, {high:4.2f}]      "
            f"{q2:5.2f} ({q1:4.2f}-{q3:4.2f}) {outside:8.3f} {area:6.3f} "
            f"{statistics.median(millis):6.1f}{note}"
        )


if __name__ == "__main__":
    main()
