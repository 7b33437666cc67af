"""Synthetic colour fundus photographs with known DR/AMD grades and per-lesion masks.

Public fundus datasets cannot be downloaded here, so this generator is the demo data, the test data
and the benchmark. It needs numpy and OpenCV only (no torch).

Example:
    >>> from model_zoo.datasets.synthetic import FundusSpec, render_fundus
    >>> fundus = render_fundus(FundusSpec(seed=7, size=256, dr_grade=2, amd_grade=0))
    >>> fundus.rgb.shape, fundus.rgb.dtype
    ((256, 256, 3), dtype('uint8'))

Determinism: the image depends only on the spec. The same spec gives identical bytes; the anatomy
(disc, fovea, vessel tree, background) depends only on ``seed`` and ``laterality``, so one seed
rendered with different grades shows the same eye with different lesions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from model_zoo.datasets.anatomy import (
    background,
    build_vessel_tree,
    composite_vessels,
    draw_disc,
    draw_vessels,
    make_geometry,
)
from model_zoo.datasets.canvas import LESION_TYPES, Canvas
from model_zoo.datasets.lesions import (
    paint_preretinal,
    paint_retinal_lesions,
    paint_vessel_lesions,
    plan_lesions,
)
from model_zoo.datasets.quality import DEFECTS, apply_defect, finish

MIN_SIZE = 64
MAX_SIZE = 6000
"""Bounds on each side in pixels (a 6000 x 6000 float canvas alone is 430 MB)."""

DEFAULT_DR_PRIOR: tuple[float, ...] = (0.35, 0.15, 0.24, 0.13, 0.13)
"""P(DR grade 0..4) among DR-task eyes; shaped like the SALL paper's DR set, less skewed."""
DEFAULT_AMD_PRIOR: tuple[float, ...] = (0.35, 0.26, 0.14, 0.25)
"""P(AMD grade 0..3) among AMD-task eyes; shaped like the SALL paper's AMD set."""

_STREAM_ANATOMY, _STREAM_LESIONS, _STREAM_CAMERA = 1, 2, 3


def _check_side(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{what} must be an integer number of pixels, got {value!r}")
    if not MIN_SIZE <= int(value) <= MAX_SIZE:
        raise ValueError(f"{what} must be between {MIN_SIZE} and {MAX_SIZE} pixels, got {value}")
    return int(value)


@dataclass(frozen=True)
class FundusSpec:
    """Everything that determines one synthetic image.

    Attributes:
        seed: non-negative integer; the same spec always renders the same bytes.
        size: output side in pixels (square), or (width, height); each side 64-6000.
        dr_grade: ICDR 0-4; None only for an ungradable image.
        amd_grade: SALL AMD class 0-3 (none, small drusen, large drusen, CNV); None only for an
            ungradable image.
        laterality: "R" (disc to the right of the fovea) or "L".
        gradable: False renders a quality defect and requires blank grades.
        defect: None for a gradable image, else one of "blur", "underexposed", "artefact".
    """

    seed: int
    size: int | tuple[int, int] = 512
    dr_grade: int | None = 0
    amd_grade: int | None = 0
    laterality: str = "R"
    gradable: bool = True
    defect: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int | np.integer):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if isinstance(self.size, tuple):
            if len(self.size) != 2:
                raise ValueError(f"size must be an int or (width, height), got {self.size!r}")
            _check_side(self.size[0], "width")
            _check_side(self.size[1], "height")
        else:
            _check_side(self.size, "size")
        if self.laterality not in ("R", "L"):
            raise ValueError(f"laterality must be 'R' or 'L', got {self.laterality!r}")
        for name, value, top in (("dr_grade", self.dr_grade, 4), ("amd_grade", self.amd_grade, 3)):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise ValueError(f"{name} must be an integer 0-{top} or None, got {value!r}")
            if not 0 <= value <= top:
                raise ValueError(f"{name} must be 0-{top} or None, got {value}")
        if self.gradable:
            if self.defect is not None:
                raise ValueError("a gradable image has no quality defect")
            if self.dr_grade is None or self.amd_grade is None:
                raise ValueError("a gradable image needs both a DR and an AMD grade")
        else:
            if self.defect not in DEFECTS:
                raise ValueError(f"an ungradable image needs a defect from {DEFECTS}")
            if self.dr_grade is not None or self.amd_grade is not None:
                raise ValueError("an ungradable image has blank disease grades, never 0")

    @property
    def width_height(self) -> tuple[int, int]:
        """Output size as (width, height) in pixels."""
        if isinstance(self.size, tuple):
            return int(self.size[0]), int(self.size[1])
        return int(self.size), int(self.size)


@dataclass(frozen=True)
class SyntheticFundus:
    """A rendered image and its ground truth.

    Attributes:
        rgb: H x W x 3 uint8 RGB image (not inverted: superior retina at the top).
        spec: the spec it was rendered from.
        lesion_masks: one H x W bool mask per name in LESION_TYPES (always all present; all False
            when the lesion is absent).
        disc_centre: optic disc centre (x, y) in pixels (pixel (i, j) is centred at (i, j)).
        fovea_centre: fovea centre (x, y) in pixels.
        field_centre: centre (x, y) of the circular field in pixels.
        field_radius: radius of the circular field in pixels.
    """

    rgb: NDArray[np.uint8]
    spec: FundusSpec
    lesion_masks: dict[str, NDArray[np.bool_]] = field(repr=False)
    disc_centre: tuple[float, float]
    fovea_centre: tuple[float, float]
    field_centre: tuple[float, float]
    field_radius: float


def render_fundus(spec: FundusSpec) -> SyntheticFundus:
    """Render one synthetic fundus photograph with its lesion masks.

    Args:
        spec: what to draw (validated on construction).

    Returns:
        The image, masks and landmark positions. Same spec -> identical bytes.
    """
    width, height = spec.width_height
    anatomy_rng = np.random.default_rng([spec.seed, _STREAM_ANATOMY])
    lesion_rng = np.random.default_rng([spec.seed, _STREAM_LESIONS])
    camera_rng = np.random.default_rng([spec.seed, _STREAM_CAMERA])

    geom = make_geometry(width, height, spec.laterality, anatomy_rng)
    img = background(geom, anatomy_rng)
    draw_disc(img, geom, anatomy_rng)
    vessels = build_vessel_tree(geom, anatomy_rng)
    maps = draw_vessels(geom, vessels)

    canvas = Canvas(img, geom)
    plan = plan_lesions(spec.dr_grade, spec.amd_grade, lesion_rng)
    paint_vessel_lesions(canvas, plan, maps, vessels, lesion_rng)
    composite_vessels(img, maps)
    paint_retinal_lesions(canvas, plan, lesion_rng)
    paint_preretinal(canvas, plan, lesion_rng)

    grain = 1.0
    if spec.defect is not None:
        canvas.img = img = apply_defect(img, geom, spec.defect, camera_rng)
        grain = 3.0 if spec.defect == "underexposed" else 1.0
    rgb = finish(img, geom, camera_rng, grain)
    return SyntheticFundus(
        rgb=rgb,
        spec=spec,
        lesion_masks=canvas.masks,
        disc_centre=geom.to_px(*geom.disc),
        fovea_centre=geom.to_px(*geom.fovea),
        field_centre=(geom.cx, geom.cy),
        field_radius=geom.radius,
    )


def _check_prior(prior: Sequence[float], n: int, name: str) -> NDArray[np.float64]:
    p = np.asarray(prior, np.float64)
    if p.shape != (n,) or not np.all(np.isfinite(p)) or np.any(p < 0) or p.sum() <= 0:
        raise ValueError(f"{name} must be {n} non-negative weights with a positive sum")
    return np.asarray(p / p.sum(), np.float64)


def _correlated(rng: np.random.Generator, grade: int, prior: NDArray[np.float64]) -> int:
    """The fellow eye: usually the same grade, sometimes one step away (never to a grade whose
    prior weight is 0)."""
    step = 1 if rng.random() < 0.5 else -1
    if rng.random() < 0.7 or not 0 <= grade + step < len(prior) or prior[grade + step] == 0:
        return grade
    return grade + step


def sample_specs(
    n: int,
    *,
    seed: int,
    size: int | tuple[int, int] = 512,
    co_occurrence: float = 0.15,
    ungradable_rate: float = 0.05,
    dr_prior: Sequence[float] = DEFAULT_DR_PRIOR,
    amd_prior: Sequence[float] = DEFAULT_AMD_PRIOR,
) -> list[FundusSpec]:
    """Draw ``n`` specs as patients with two eyes: item 2k is patient k's right eye, 2k+1 the left.

    Each patient is a DR-task or an AMD-task patient (1:1). The task grade comes from its prior and
    the fellow eye's grade is correlated with it. An eye with disease of the patient's task also
    shows the other disease with probability ``co_occurrence`` (grade drawn from the other prior,
    restricted to > 0). Each eye is ungradable with probability ``ungradable_rate`` (random defect,
    blank grades).

    Args:
        n: number of specs (>= 0); an odd ``n`` gives the last patient one eye.
        seed: master seed; each spec gets its own derived seed.
        size: output size of every spec.
        co_occurrence: 0-1.
        ungradable_rate: 0-1.
        dr_prior: 5 weights for DR grades 0-4.
        amd_prior: 4 weights for AMD grades 0-3.

    Returns:
        ``n`` validated specs, deterministic for given arguments.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    for name, rate in (("co_occurrence", co_occurrence), ("ungradable_rate", ungradable_rate)):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"{name} must be between 0 and 1, got {rate}")
    priors = {
        "dr": _check_prior(dr_prior, 5, "dr_prior"),
        "amd": _check_prior(amd_prior, 4, "amd_prior"),
    }
    tops = {"dr": 4, "amd": 3}
    rng = np.random.default_rng([seed, 0x5EED])
    specs: list[FundusSpec] = []
    while len(specs) < n:
        task = "dr" if rng.random() < 0.5 else "amd"
        other = "amd" if task == "dr" else "dr"
        patient_grade = int(rng.choice(tops[task] + 1, p=priors[task]))
        for laterality in ("R", "L"):
            if len(specs) == n:
                break
            eye_seed = int(rng.integers(0, 2**31 - 1))
            grades = {task: _correlated(rng, patient_grade, priors[task]), other: 0}
            tail = priors[other][1:]
            if grades[task] > 0 and rng.random() < co_occurrence and tail.sum() > 0:
                grades[other] = 1 + int(rng.choice(tops[other], p=tail / tail.sum()))
            if rng.random() < ungradable_rate:
                defect = DEFECTS[int(rng.integers(len(DEFECTS)))]
                specs.append(FundusSpec(eye_seed, size, None, None, laterality, False, defect))
            else:
                specs.append(
                    FundusSpec(eye_seed, size, grades["dr"], grades["amd"], laterality, True, None)
                )
    return specs


__all__ = [
    "DEFAULT_AMD_PRIOR",
    "DEFAULT_DR_PRIOR",
    "DEFECTS",
    "LESION_TYPES",
    "FundusSpec",
    "SyntheticFundus",
    "render_fundus",
    "sample_specs",
]
