"""sample_specs: patients as eye pairs, priors, co-occurrence and ungradable rate."""

from __future__ import annotations

import pytest

from model_zoo.datasets.synthetic import sample_specs


def test_deterministic_and_paired_by_eye() -> None:
    a = sample_specs(31, seed=4, size=128)
    assert a == sample_specs(31, seed=4, size=128)
    assert a != sample_specs(31, seed=5, size=128)
    assert len(a) == 31
    assert [s.laterality for s in a[:4]] == ["R", "L", "R", "L"]
    assert all(s.size == 128 for s in a)


def test_rates_and_priors_are_obeyed() -> None:
    all_bad = sample_specs(20, seed=1, ungradable_rate=1.0)
    assert all(not s.gradable and s.dr_grade is None and s.amd_grade is None for s in all_bad)
    assert {s.defect for s in all_bad} <= {"blur", "underexposed", "artefact"}
    normals = sample_specs(
        20, seed=1, ungradable_rate=0.0, dr_prior=(1, 0, 0, 0, 0), amd_prior=(1, 0, 0, 0)
    )
    assert all(s.gradable and s.dr_grade == 0 and s.amd_grade == 0 for s in normals)


def test_co_occurrence_controls_eyes_with_both_diseases() -> None:
    def both(rate: float) -> int:
        specs = sample_specs(400, seed=9, co_occurrence=rate, ungradable_rate=0.0)
        return sum(1 for s in specs if (s.dr_grade or 0) > 0 and (s.amd_grade or 0) > 0)

    assert both(0.0) == 0
    assert both(1.0) > 150
    mixed = sample_specs(400, seed=9, ungradable_rate=0.0)
    assert {s.dr_grade for s in mixed} == {0, 1, 2, 3, 4}
    assert {s.amd_grade for s in mixed} == {0, 1, 2, 3}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n": -1},
        {"co_occurrence": 1.5},
        {"ungradable_rate": -0.1},
        {"dr_prior": (1, 1)},
        {"amd_prior": (0, 0, 0, 0)},
        {"size": 20},
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"n": 4, "seed": 1} | kwargs
    with pytest.raises(ValueError):
        sample_specs(**args)  # type: ignore[arg-type]
