"""Labels, the normal-image policy, leakage, hashing checks and the epoch sampler."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from training.engine.data import (
    DataIntegrityError,
    EpochSampler,
    LeakageError,
    check_no_leakage,
    resolve_labels,
    sampling_weights,
    steps_per_epoch,
    verify_hashes,
)
from training.protocol.config import DEFAULT_TASKS, ConfigError, SallConfig
from training.protocol.manifest import ManifestRow


def _row(n: int, dr=None, amd=None, *, patient="", split="train", gradable=True) -> ManifestRow:
    return ManifestRow(
        image_path=f"img{n}.jpg",
        sha256=hashlib.sha256(str(n).encode()).hexdigest(),
        patient_id=patient,
        dr_grade=dr,
        amd_grade=amd,
        gradable=gradable,
        split=split,
    )


ROWS = [
    _row(0, dr=0),  # normal in the DR set
    _row(1, dr=2),  # DR-labelled, AMD unknown
    _row(2, amd=0),  # normal in the AMD set
    _row(3, amd=3),
    _row(4, dr=0, amd=2),  # fully labelled, not normal
    _row(5, gradable=False),
    _row(6),  # no label at all
]


def test_soft_other_leaves_unknown_tasks_unknown() -> None:
    labels = resolve_labels(ROWS, DEFAULT_TASKS, "soft_other")
    assert labels.tolist() == [[0, -1], [2, -1], [-1, 0], [-1, 3], [0, 2], [-1, -1], [-1, -1]]


def test_a_blank_grade_stays_unknown_by_default() -> None:
    # DR 0 with a blank AMD grade is no AMD ground truth (and the reverse): -1, soft label.
    policy = SallConfig().normal_policy
    assert policy == "soft_other"
    rows = [_row(0, dr=0), _row(1, amd=0), _row(2, dr=0, amd=0)]
    assert resolve_labels(rows, DEFAULT_TASKS, policy).tolist() == [[0, -1], [-1, 0], [0, 0]]


def test_hard_both_refuses_to_turn_a_blank_grade_into_a_hard_label() -> None:
    with pytest.raises(ConfigError, match=r"hard_both.*2 image\(s\).*soft_other"):
        resolve_labels(ROWS, DEFAULT_TASKS, "hard_both")


def test_hard_both_is_soft_other_where_it_overrides_no_blank_grade() -> None:
    # Normals graded for both tasks, other blanks and ungradable rows: nothing to override.
    rows = [_row(0, dr=0, amd=0), _row(1, dr=2), _row(2, amd=3), _row(3, gradable=False), _row(4)]
    hard = resolve_labels(rows, DEFAULT_TASKS, "hard_both")
    assert hard.tolist() == resolve_labels(rows, DEFAULT_TASKS, "soft_other").tolist()
    assert hard.tolist() == [[0, 0], [2, -1], [-1, 3], [-1, -1], [-1, -1]]


def test_leakage_by_image_and_by_patient() -> None:
    holdout = [_row(10, dr=1, patient="p9", split="holdout")]
    check_no_leakage([_row(1, dr=2, patient="p1")], holdout)  # clean
    with pytest.raises(LeakageError, match="1 hold-out image"):
        check_no_leakage([_row(10, dr=1, patient="p9")], holdout)
    with pytest.raises(LeakageError, match="1 image\\(s\\) of hold-out patients"):
        check_no_leakage([_row(11, dr=1, patient="p9")], holdout)
    # A blank patient id is not a patient.
    check_no_leakage([_row(12, patient="")], [_row(13, patient="", split="holdout")])


def test_verify_hashes_names_images_by_hash_not_path(tmp_path: Path) -> None:
    good = tmp_path / "a.jpg"
    good.write_bytes(b"abc")
    rows = [
        ManifestRow(image_path="a.jpg", sha256=hashlib.sha256(b"abc").hexdigest()),
        ManifestRow(image_path="b.jpg", sha256="0" * 64),  # missing file
    ]
    verify_hashes(rows[:1], tmp_path)
    with pytest.raises(DataIntegrityError) as info:
        verify_hashes(rows, tmp_path)
    assert "000000000000 (missing or unreadable)" in str(info.value)
    assert str(tmp_path) not in str(info.value)
    good.write_bytes(b"abd")
    with pytest.raises(DataIntegrityError, match="content changed"):
        verify_hashes(rows[:1], tmp_path)


def test_sampler_is_a_function_of_seed_and_epoch() -> None:
    a = EpochSampler(10, batch_size=4, steps=3, seed=1)
    b = EpochSampler(10, batch_size=4, steps=3, seed=1)
    a.set_epoch(2)
    b.set_epoch(0)
    list(b)  # drawing another epoch first changes nothing
    b.set_epoch(2)
    assert list(a) == list(b)
    assert len(list(a)) == 3 and all(len(batch) == 4 for batch in a)
    a.set_epoch(3)
    assert list(a) != list(b)


def test_resuming_mid_epoch_skips_the_batches_already_done() -> None:
    s = EpochSampler(50, batch_size=5, steps=6, seed=4)
    s.set_epoch(1)
    full = list(s)
    s.set_epoch(1, start_step=4)
    assert list(s) == full[4:] and len(s) == 2


def test_ranks_get_disjoint_shards_of_one_sequence() -> None:
    single = EpochSampler(40, batch_size=4, steps=2, seed=0, world_size=2)
    whole = single.epoch_indices()  # rank 0's view
    r0 = EpochSampler(40, batch_size=4, steps=2, seed=0, rank=0, world_size=2)
    r1 = EpochSampler(40, batch_size=4, steps=2, seed=0, rank=1, world_size=2)
    assert torch.equal(r0.epoch_indices(), whole)
    merged = torch.stack([r0.epoch_indices(), r1.epoch_indices()], dim=1).flatten()
    g = torch.Generator().manual_seed(0 * 1_000_003 + 0)
    assert torch.equal(merged, torch.randint(40, (16,), generator=g))


def test_weighted_sampling_follows_the_weights() -> None:
    labels = np.array([[0, -1]] * 90 + [[-1, 1]] * 10)
    weights = sampling_weights(labels, "balanced_tasks", DEFAULT_TASKS)
    assert weights is not None
    s = EpochSampler(100, batch_size=100, steps=20, seed=0, weights=weights)
    drawn = s.epoch_indices()
    share = float((drawn >= 90).float().mean())
    assert 0.45 < share < 0.55  # the 10 AMD images get half of the draws
    assert sampling_weights(labels, "uniform", DEFAULT_TASKS) is None
    cls = sampling_weights(
        np.array([[0, -1], [0, -1], [0, -1], [1, -1]]), "class_balanced", DEFAULT_TASKS
    )
    assert cls is not None and cls.tolist() == pytest.approx([1 / 3, 1 / 3, 1 / 3, 1.0])


def test_steps_per_epoch_default_is_ceil_n_over_batch() -> None:
    assert steps_per_epoch(33, 32, 0) == 2
    assert steps_per_epoch(33, 8, 0, world_size=2) == 3
    assert steps_per_epoch(33, 32, 7) == 7
