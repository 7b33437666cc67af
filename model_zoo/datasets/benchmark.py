"""Write a synthetic fundus dataset to disk, split like the SALL paper.

The SALL premise (``docs/sall-method.md``) is that each labelled image carries a grade for *one*
disease. The dataset reproduces that:

- **DR-labelled set** (train/val patients with DR): DR grade known, AMD grade blank;
- **AMD-labelled set** (train/val patients with AMD): AMD grade known, DR grade blank;
- **normals** (DR 0 and AMD 0) are ground truth for both tasks, in either set;
- **test** (and the optional holdout): fully labelled.

Both eyes of a patient always land in the same split. Splits are patient-grouped and stratified by
the patient's worst grades, 70/10/20 (train/val/test) by default. Patients whose eyes show both
diseases, and normal patients, are assigned to the DR or AMD set at random.

Images are JPEGs named ``<patient>_<right|left>.jpg`` (the EyePACS file name rule), and a fraction
of the patients are written as DICOM Ophthalmic Photography (``.dcm``, JPEG Baseline) instead.

On request (``masks=True``) the answer key is written beside them as 0/255 PNGs the size of the
image, after the camera profile (so they stay aligned with the pixels): ``masks/<stem>.png`` is
the union of the DR lesion types (:data:`~model_zoo.datasets.canvas.DR_LESIONS`; haemorrhages
and hard exudates of a co-existing AMD count too, the generator does not tell them apart),
``masks/field/<stem>.png`` the circular field of view, and with ``per_lesion_masks=True``
``masks/<lesion type>/<stem>.png`` every lesion type of
:data:`~model_zoo.datasets.canvas.LESION_TYPES` on its own.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from model_zoo.datasets.camera import CameraProfile, through_camera
from model_zoo.datasets.canvas import DR_LESIONS, LESION_TYPES
from model_zoo.datasets.quality import UNGRADABLE_REASONS
from model_zoo.datasets.synthetic import (
    FundusSpec,
    SyntheticFundus,
    render_fundus,
    sample_specs,
)
from model_zoo.fileio import atomic_write_bytes

DEFAULT_SPLITS: tuple[float, ...] = (0.7, 0.1, 0.2)
"""Fractions of patients for train, val, test (and optionally a fourth: holdout)."""
SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test", "holdout")
LABEL_SETS: tuple[str, ...] = ("dr", "amd", "both")
MASKS_DIR = "masks"
FIELD_MASKS = "field"
"""Sub-folder of :data:`MASKS_DIR` holding the field-of-view masks."""


@dataclass(frozen=True)
class SyntheticSample:
    """One written image and the labels a dataset would publish for it.

    Attributes:
        file_name: file name inside the output folder (``<patient>_<right|left>.jpg|.dcm``).
        sha256: SHA-256 (lowercase hex) of the written file's bytes.
        patient_id: pseudonymous patient key; both eyes share it.
        laterality: "R" or "L".
        dr_grade: ICDR 0-4 as published (blank/None in the AMD-labelled set, except normals).
        amd_grade: AMD 0-3 as published (blank/None in the DR-labelled set, except normals).
        gradable: False for an image with a quality defect (then both grades are None).
        ungradable_reason: "blur", "exposure" or "artefact" when not gradable, else None.
        split: "train", "val", "test" or "holdout".
        label_set: "dr" (DR-labelled set), "amd" (AMD-labelled set) or "both" (test, holdout).
        spec: the full ground truth: render_fundus(spec) recreates the image and lesion masks.
    """

    file_name: str
    sha256: str
    patient_id: str
    laterality: str
    dr_grade: int | None
    amd_grade: int | None
    gradable: bool
    ungradable_reason: str | None
    split: str
    label_set: str = "both"
    spec: FundusSpec | None = None


def _worst(values: list[int | None]) -> int:
    known = [v for v in values if v is not None]
    return max(known) if known else -1


def _assign_splits(
    eyes: list[list[FundusSpec]], fractions: Sequence[float], rng: np.random.Generator
) -> list[tuple[str, str]]:
    """(split, label set) per patient: stratified, patient-grouped."""
    keys = [(_worst([e.dr_grade for e in p]), _worst([e.amd_grade for e in p])) for p in eyes]
    strata: dict[tuple[int, int], list[int]] = {}
    for index, key in enumerate(keys):
        strata.setdefault(key, []).append(index)
    ordered: list[int] = []
    for key in sorted(strata):
        members = strata[key]
        ordered.extend(members[i] for i in rng.permutation(len(members)))
    # Walk the stratified order giving each patient to the split furthest below its quota: exact
    # proportions at every prefix (so each stratum is spread over the splits), and a small
    # dataset still gets a test patient early (ties go to the smaller split).
    splits = [""] * len(eyes)
    given = [0] * len(fractions)
    for i, patient in enumerate(ordered):
        deficits = [f * (i + 1) - g for f, g in zip(fractions, given, strict=True)]
        best = max(range(len(fractions)), key=lambda k: (round(deficits[k], 9), -fractions[k]))
        given[best] += 1
        splits[patient] = SPLIT_NAMES[best]
    result: list[tuple[str, str]] = []
    for patient, split in enumerate(splits):
        if split in ("test", "holdout"):
            result.append((split, "both"))
            continue
        has_dr = keys[patient][0] > 0
        has_amd = keys[patient][1] > 0
        if has_dr != has_amd:
            result.append((split, "dr" if has_dr else "amd"))
        else:
            result.append((split, "dr" if rng.random() < 0.5 else "amd"))
    return result


def published_labels(spec: FundusSpec, label_set: str) -> tuple[int | None, int | None]:
    """The (DR, AMD) grades a dataset of ``label_set`` publishes for an eye with truth ``spec``."""
    dr, amd = spec.dr_grade, spec.amd_grade
    if dr is None or amd is None or label_set == "both":
        return dr, amd
    normal = dr == 0 and amd == 0
    if label_set == "dr":
        return dr, (0 if normal else None)
    return (0 if normal else None), amd


@dataclass(frozen=True)
class _Job:
    path: Path
    spec: FundusSpec
    dicom: bool
    patient_id: str
    study_date: str
    jpeg_quality: int
    camera: CameraProfile | None = None
    masks: bool = False
    per_lesion_masks: bool = False


def field_mask(fundus: SyntheticFundus) -> NDArray[np.bool_]:
    """``[H, W]`` bool: the generator's circular field of view, clipped by the frame."""
    height, width = fundus.rgb.shape[:2]
    cx, cy = fundus.field_centre
    ys, xs = np.ogrid[:height, :width]
    inside = (xs - cx) ** 2 + (ys - cy) ** 2 <= fundus.field_radius**2
    return np.asarray(inside, np.bool_)


def dr_lesion_mask(fundus: SyntheticFundus) -> NDArray[np.bool_]:
    """``[H, W]`` bool: the union of the DR lesion types' masks."""
    union = np.zeros(fundus.rgb.shape[:2], np.bool_)
    for name in DR_LESIONS:
        union |= fundus.lesion_masks[name]
    return union


def _write_png(path: Path, mask: NDArray[np.bool_]) -> None:
    ok, encoded = cv2.imencode(".png", mask.astype(np.uint8) * np.uint8(255))
    if not ok:
        raise RuntimeError(f"OpenCV could not encode {path.name} as PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, encoded.tobytes())


def _write_masks(job: _Job, fundus: SyntheticFundus) -> None:
    folder = job.path.parent / MASKS_DIR
    name = job.path.stem + ".png"
    _write_png(folder / name, dr_lesion_mask(fundus))
    _write_png(folder / FIELD_MASKS / name, field_mask(fundus))
    if job.per_lesion_masks:
        for lesion in LESION_TYPES:
            _write_png(folder / lesion / name, fundus.lesion_masks[lesion])


def _write_image(job: _Job) -> str:
    """Render and write one image (and its masks); return the SHA-256 of the file bytes."""
    fundus = render_fundus(job.spec)
    if job.camera is not None:
        fundus = through_camera(fundus, job.camera)
    if job.masks:
        _write_masks(job, fundus)
    rgb = fundus.rgb
    if job.dicom:
        from model_zoo.io.dicom_write import write_dicom

        write_dicom(
            job.path,
            rgb,
            transfer_syntax="jpeg_baseline",
            laterality=job.spec.laterality,
            patient_id=job.patient_id,
            study_date=job.study_date,
            sop_class="op8",
            jpeg_quality=job.jpeg_quality,
        )
        return hashlib.sha256(job.path.read_bytes()).hexdigest()
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, job.jpeg_quality])
    if not ok:
        raise RuntimeError(f"OpenCV could not encode {job.path.name} as JPEG")
    data = encoded.tobytes()
    atomic_write_bytes(job.path, data)
    return hashlib.sha256(data).hexdigest()


def write_synthetic_dataset(
    out_dir: Path,
    n: int,
    *,
    seed: int,
    size: int | tuple[int, int] = 512,
    dicom_fraction: float = 0.1,
    jpeg_quality: int = 92,
    workers: int = 1,
    co_occurrence: float = 0.15,
    ungradable_rate: float = 0.05,
    split_fractions: Sequence[float] = DEFAULT_SPLITS,
    camera: CameraProfile | None = None,
    masks: bool = False,
    per_lesion_masks: bool = False,
) -> list[SyntheticSample]:
    """Render ``n`` images into ``out_dir`` and return what was written, in patient order.

    Args:
        out_dir: folder to write into (created); existing files of the same names are replaced
            atomically.
        n: number of images (>= 1); patients have two eyes (an odd ``n`` leaves one single eye).
        seed: master seed (>= 0); the same arguments give the same images and labels.
        size: image size in pixels, square side or (width, height).
        dicom_fraction: fraction of patients (0-1, rounded) written as DICOM OP (JPEG Baseline).
        jpeg_quality: 1-100 for JPEG files and DICOM frames.
        workers: render threads (>= 1); the output does not depend on it.
        co_occurrence: see :func:`sample_specs`.
        ungradable_rate: see :func:`sample_specs`.
        split_fractions: patient fractions for train, val, test (and holdout); must sum to 1.
        camera: photograph every eye through this camera profile (its JPEG quality replaces
            ``jpeg_quality``); None keeps the generator's own rendition.
        masks: also write each image's DR lesion mask and field-of-view mask (module docstring).
        per_lesion_masks: also write one mask per lesion type (implies ``masks``).

    Returns:
        One SyntheticSample per image; ``sha256`` is the hash of the file bytes on disk.

    Raises:
        ValueError: an argument out of range (the message says which).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive number of images, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not 0.0 <= dicom_fraction <= 1.0:
        raise ValueError(f"dicom_fraction must be between 0 and 1, got {dicom_fraction}")
    if not 1 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be 1-100, got {jpeg_quality}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    fractions = [float(f) for f in split_fractions]
    if len(fractions) not in (3, 4) or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError("split_fractions must be 3 or 4 non-negative fractions summing to 1")

    specs = sample_specs(
        n, seed=seed, size=size, co_occurrence=co_occurrence, ungradable_rate=ungradable_rate
    )
    eyes = [specs[i : i + 2] for i in range(0, n, 2)]
    rng = np.random.default_rng([seed, 0x5B117])
    assignment = _assign_splits(eyes, fractions, rng)
    n_dicom = int(round(dicom_fraction * len(eyes)))
    dicom_patients = {int(i) for i in rng.permutation(len(eyes))[:n_dicom]}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    quality = camera.jpeg_quality if camera is not None else jpeg_quality

    jobs: list[_Job] = []
    samples: list[SyntheticSample] = []
    first_day = datetime.date(2024, 1, 1)
    for patient, pair in enumerate(eyes):
        patient_id = f"s{seed}-{patient + 1:05d}"
        split, label_set = assignment[patient]
        dicom = patient in dicom_patients
        day = first_day + datetime.timedelta(days=patient % 366)
        for spec in pair:
            side = "right" if spec.laterality == "R" else "left"
            name = f"{patient_id}_{side}.{'dcm' if dicom else 'jpg'}"
            jobs.append(
                _Job(
                    out / name,
                    spec,
                    dicom,
                    patient_id,
                    day.strftime("%Y%m%d"),
                    quality,
                    camera,
                    masks or per_lesion_masks,
                    per_lesion_masks,
                )
            )
            dr, amd = published_labels(spec, label_set)
            reason = None if spec.defect is None else UNGRADABLE_REASONS[spec.defect]
            samples.append(
                SyntheticSample(
                    file_name=name,
                    sha256="",
                    patient_id=patient_id,
                    laterality=spec.laterality,
                    dr_grade=dr,
                    amd_grade=amd,
                    gradable=spec.gradable,
                    ungradable_reason=reason,
                    split=split,
                    label_set=label_set,
                    spec=spec,
                )
            )
    if workers == 1:
        hashes = [_write_image(job) for job in jobs]
    else:
        with ThreadPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            hashes = list(pool.map(_write_image, jobs))
    return [replace(s, sha256=h) for s, h in zip(samples, hashes, strict=True)]
