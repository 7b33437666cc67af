"""write_synthetic_dataset: files, hashes, SALL-style label sets and patient-grouped splits."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path

import pydicom
import pytest

from model_zoo.datasets.benchmark import SyntheticSample, write_synthetic_dataset

N = 40
SIZE = 64


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[SyntheticSample]]:
    out = tmp_path_factory.mktemp("synth")
    samples = write_synthetic_dataset(
        out, N, seed=7, size=SIZE, dicom_fraction=0.1, ungradable_rate=0.1
    )
    return out, samples


def test_every_sample_is_a_file_with_its_hash_and_name(
    dataset: tuple[Path, list[SyntheticSample]],
) -> None:
    out, samples = dataset
    assert len(samples) == N
    assert len({s.file_name for s in samples}) == N
    for s in samples:
        data = (out / s.file_name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == s.sha256
        side = "right" if s.laterality == "R" else "left"
        assert s.file_name in (f"{s.patient_id}_{side}.jpg", f"{s.patient_id}_{side}.dcm")
        assert s.spec is not None and s.spec.laterality == s.laterality


def test_a_fraction_of_patients_are_dicom_op_with_tags(
    dataset: tuple[Path, list[SyntheticSample]],
) -> None:
    out, samples = dataset
    dicom = [s for s in samples if s.file_name.endswith(".dcm")]
    assert len({s.patient_id for s in dicom}) == 2  # 10 % of 20 patients
    ds = pydicom.dcmread(out / dicom[0].file_name)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.77.1.5.1"
    assert ds.ImageLaterality == dicom[0].laterality
    assert ds.PatientID == dicom[0].patient_id


def test_patients_never_span_two_splits(dataset: tuple[Path, list[SyntheticSample]]) -> None:
    _, samples = dataset
    splits: dict[str, set[str]] = defaultdict(set)
    for s in samples:
        splits[s.patient_id].add(s.split)
    assert all(len(v) == 1 for v in splits.values())
    per_split = defaultdict(set)
    for patient, names in splits.items():
        per_split[next(iter(names))].add(patient)
    assert set(per_split) == {"train", "val", "test"}
    # 20 patients, 70/10/20.
    assert len(per_split["train"]) == 14 and len(per_split["val"]) == 2
    assert len(per_split["test"]) == 4


def test_label_sets_follow_the_sall_premise(dataset: tuple[Path, list[SyntheticSample]]) -> None:
    _, samples = dataset
    seen = set()
    for s in samples:
        assert s.spec is not None
        if not s.gradable:
            assert s.dr_grade is None and s.amd_grade is None
            assert s.ungradable_reason in ("blur", "exposure", "artefact")
            continue
        assert s.ungradable_reason is None
        normal = s.spec.dr_grade == 0 and s.spec.amd_grade == 0
        if s.split == "test":
            assert s.label_set == "both"
            assert (s.dr_grade, s.amd_grade) == (s.spec.dr_grade, s.spec.amd_grade)
        elif s.label_set == "dr":
            assert s.dr_grade == s.spec.dr_grade
            assert s.amd_grade is None or (normal and s.amd_grade == 0)
        else:
            assert s.label_set == "amd"
            assert s.amd_grade == s.spec.amd_grade
            assert s.dr_grade is None or (normal and s.dr_grade == 0)
        if normal:
            assert (s.dr_grade, s.amd_grade) == (0, 0)  # normals are ground truth for both
        seen.add((s.split, s.label_set))
    assert {("train", "dr"), ("train", "amd"), ("test", "both")} <= seen
    assert any(not s.gradable for s in samples)


def test_output_is_deterministic_and_independent_of_workers(tmp_path: Path) -> None:
    a = write_synthetic_dataset(tmp_path / "a", 6, seed=3, size=SIZE, dicom_fraction=0.0)
    b = write_synthetic_dataset(tmp_path / "b", 6, seed=3, size=SIZE, dicom_fraction=0.0, workers=3)
    assert a == b
    assert {s.split for s in a} == {"train", "test"}  # even 3 patients get a test patient
    c = write_synthetic_dataset(tmp_path / "c", 6, seed=4, size=SIZE, dicom_fraction=0.0)
    assert [s.sha256 for s in a] != [s.sha256 for s in c]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n": 0},
        {"seed": -3},
        {"dicom_fraction": 1.5},
        {"jpeg_quality": 0},
        {"workers": 0},
        {"split_fractions": (0.5, 0.5, 0.5)},
        {"size": 8},
    ],
)
def test_bad_arguments_are_refused_before_writing(
    tmp_path: Path, kwargs: dict[str, object]
) -> None:
    args: dict[str, object] = {"n": 4, "seed": 1, "size": SIZE} | kwargs
    with pytest.raises(ValueError):
        write_synthetic_dataset(tmp_path / "out", **args)  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
