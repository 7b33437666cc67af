"""``sall-train synth``: write a synthetic fundus dataset with its labels and training manifest.

Usage::

    sall-train synth --out DIR --n N --seed S [--size PX | --size WxH] [--dicom-fraction F]
                     [--jpeg-quality Q] [--workers W] [--camera PROFILE]
                     [--masks] [--per-lesion-masks]

Writes into ``DIR``:

- the images (``<patient>_<right|left>.jpg``, some ``.dcm``), see
  :mod:`model_zoo.datasets.benchmark` for the SALL-style split;
- ``labels.csv``: the published labels in our canonical format (``training.protocol.canonical``),
  as a dataset import would see them (DR set: AMD blank; AMD set: DR blank; test: both);
- ``manifest.csv``: the training manifest (``training.protocol.manifest``), image paths relative
  to ``DIR``;
- ``ground_truth.csv``: every image's true grades and generator seed, so ``render_fundus`` can
  recreate its lesion masks (the benchmark's answer key; never a training input);
- with ``--masks``: ``masks/<stem>.png``, each image's DR lesions (0/255, the image's size), and
  ``masks/field/<stem>.png``, its field of view; ``--per-lesion-masks`` adds
  ``masks/<lesion type>/<stem>.png`` (see :mod:`model_zoo.datasets.benchmark`). What
  ``benchmarks/bench_cam_lesions.py --data DIR`` reads.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from collections.abc import Sequence
from pathlib import Path

from model_zoo.datasets.benchmark import SyntheticSample, write_synthetic_dataset
from model_zoo.datasets.camera import camera_profile
from model_zoo.fileio import atomic_write_text
from training.protocol.canonical import CanonicalRow, format_canonical
from training.protocol.manifest import ManifestRow, format_manifest

GROUND_TRUTH_COLUMNS: tuple[str, ...] = (
    "file_name",
    "sha256",
    "patient_id",
    "laterality",
    "split",
    "label_set",
    "seed",
    "width",
    "height",
    "true_dr_grade",
    "true_amd_grade",
    "gradable",
    "defect",
)


def _size(text: str) -> int | tuple[int, int]:
    """``512`` or ``3000x2000`` (width x height)."""
    try:
        if "x" in text.lower():
            w, h = text.lower().split("x", 1)
            return int(w), int(h)
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"size must be pixels (512) or WIDTHxHEIGHT (3000x2000), got {text!r}"
        ) from None


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register the ``synth`` subcommand (its handler is :func:`run`, also set as ``func``)."""
    parser = subparsers.add_parser(
        "synth",
        help="write a synthetic fundus dataset (images, labels.csv, manifest.csv)",
        description=__doc__.split("\n\n", 1)[0] if __doc__ else None,
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--n", type=int, required=True, help="number of images")
    parser.add_argument("--seed", type=int, required=True, help="master seed (>= 0)")
    parser.add_argument("--size", type=_size, default=512, help="512 or WIDTHxHEIGHT")
    parser.add_argument("--dicom-fraction", type=float, default=0.1, help="patients as DICOM")
    parser.add_argument("--jpeg-quality", type=int, default=92, help="1-100")
    parser.add_argument("--workers", type=int, default=1, help="render threads")
    parser.add_argument(
        "--camera",
        default="reference",
        help="camera profile the eyes are photographed through (reference, clinic-b, handheld); "
        "its JPEG quality replaces --jpeg-quality",
    )
    parser.add_argument(
        "--masks",
        action="store_true",
        help="also write masks/<stem>.png (DR lesions) and masks/field/<stem>.png (field of view)",
    )
    parser.add_argument(
        "--per-lesion-masks",
        action="store_true",
        help="also write masks/<lesion type>/<stem>.png for every lesion type (implies --masks)",
    )
    parser.set_defaults(func=run)


def canonical_rows(samples: list[SyntheticSample]) -> list[CanonicalRow]:
    """The published labels as canonical rows (grader role "reference", source "import")."""
    return [
        CanonicalRow(
            image_id=s.file_name,
            file_path=s.file_name,
            sha256=s.sha256,
            patient_id=s.patient_id,
            laterality=s.laterality,
            laterality_source="dicom_tag" if s.file_name.endswith(".dcm") else "filename_rule",
            gradable=s.gradable,
            ungradable_reason=s.ungradable_reason or "",
            dr_icdr=s.dr_grade,
            amd_grade=s.amd_grade,
            grader_id="synthetic",
            grader_role="reference",
            source="import",
            notes="",
        )
        for s in samples
    ]


def manifest_rows(
    samples: Sequence[SyntheticSample], *, split: str | None = None
) -> list[ManifestRow]:
    """Training manifest rows of generated samples; image paths are relative to the dataset
    folder. ``split`` puts every row in that split instead of each sample's own."""
    return [
        ManifestRow(
            image_path=s.file_name,
            sha256=s.sha256,
            patient_id=s.patient_id,
            laterality=s.laterality,
            dr_grade=s.dr_grade,
            amd_grade=s.amd_grade,
            gradable=s.gradable,
            split=s.split if split is None else split,
        )
        for s in samples
    ]


def format_ground_truth(samples: list[SyntheticSample]) -> str:
    """CSV text of GROUND_TRUTH_COLUMNS (all cells are generated, none user-supplied)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(GROUND_TRUTH_COLUMNS)
    for s in samples:
        spec = s.spec
        if spec is None:
            raise ValueError(f"{s.file_name} has no generator spec")
        width, height = spec.width_height
        writer.writerow(
            [
                s.file_name,
                s.sha256,
                s.patient_id,
                s.laterality,
                s.split,
                s.label_set,
                spec.seed,
                width,
                height,
                "" if spec.dr_grade is None else spec.dr_grade,
                "" if spec.amd_grade is None else spec.amd_grade,
                int(spec.gradable),
                spec.defect or "",
            ]
        )
    return buffer.getvalue()


def run(args: argparse.Namespace) -> int:
    """Write the dataset and its three CSV files; return a process exit code.

    Returns:
        0 on success, 2 for invalid arguments, 1 when the folder cannot be written (the reason
        goes to stderr).
    """
    out = Path(args.out)
    try:
        name = getattr(args, "camera", "reference")
        camera = None if name == "reference" else camera_profile(name)
        samples = write_synthetic_dataset(
            out,
            args.n,
            seed=args.seed,
            size=args.size,
            dicom_fraction=args.dicom_fraction,
            jpeg_quality=args.jpeg_quality,
            workers=getattr(args, "workers", 1),
            camera=camera,
            masks=bool(getattr(args, "masks", False)),
            per_lesion_masks=bool(getattr(args, "per_lesion_masks", False)),
        )
        atomic_write_text(out / "labels.csv", format_canonical(canonical_rows(samples)))
        atomic_write_text(out / "manifest.csv", format_manifest(manifest_rows(samples)))
        atomic_write_text(out / "ground_truth.csv", format_ground_truth(samples))
    except ValueError as exc:
        print(f"sall-train synth: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"sall-train synth: cannot write to {out}: {exc}", file=sys.stderr)
        return 1
    counts: dict[str, int] = {}
    for s in samples:
        counts[s.split] = counts.get(s.split, 0) + 1
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    print(f"wrote {len(samples)} images to {out} ({summary})")
    return 0
