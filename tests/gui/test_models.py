"""Every item model passes Qt's model tester, also while rows stream in and grow by fetchMore."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QModelIndex, Qt

from sall_desktop.domain.grades import Grading, ImageRecord, Laterality, UngradableReason
from sall_desktop.gui.image_model import ImageListModel, Role
from sall_desktop.gui.patient_model import PATIENT_ID_ROLE, PatientListModel
from sall_desktop.services.catalogue import DescribedFile, FoundFile
from sall_desktop.services.grading import SaveState
from sall_desktop.services.image_entry import ImageFilter, SortKey, StatusFilter


def _sha(i: int) -> str:
    return f"{i:064x}"


def _found(n: int) -> list[FoundFile]:
    return [
        FoundFile(Path(f"/data/p{i // 2:03d}_{'left' if i % 2 else 'right'}.jpg"), 100, 0)
        for i in range(n)
    ]


def _described(found: list[FoundFile]) -> list[DescribedFile]:
    out = []
    for i, item in enumerate(found):
        record = ImageRecord(
            sha256=_sha(i),
            path=str(item.path),
            width=64,
            height=64,
            laterality=Laterality.LEFT if i % 2 else Laterality.RIGHT,
            patient_id=f"p{i // 2:03d}" if i < n_with_patient else "",
        )
        out.append(DescribedFile(item, record))
    return out


n_with_patient = 40


def test_image_list_model_streams_fetches_filters_and_sorts(qtmodeltester) -> None:  # type: ignore[no-untyped-def]
    requested = []
    model = ImageListModel(requested.append, batch=16)
    found = _found(70)
    model.add_found(found[:20])
    assert model.rowCount() == 16 and model.canFetchMore(QModelIndex())
    model.fetchMore(QModelIndex())
    assert model.rowCount() == 20 and not model.canFetchMore(QModelIndex())
    model.add_found(found[20:50])
    assert model.rowCount() == 20 and model.canFetchMore(QModelIndex())
    # From here on Qt's tester watches every signal (it also calls fetchMore itself).
    qtmodeltester.check(model)
    model.add_found(found[50:])
    while model.canFetchMore(QModelIndex()):
        model.fetchMore(QModelIndex())
    assert model.rowCount() == 70
    model.add_described(_described(found))
    model.set_gradings({_sha(1): Grading(_sha(1), "Dr A", dr_grade=4, amd_grade=0)})
    model.set_grading(
        _sha(3),
        Grading(_sha(3), "Dr A", gradable=False, ungradable_reason=UngradableReason.BLUR),
        SaveState.PENDING,
    )
    assert model.index(1).data(Role.GRADING).dr_grade == 4
    assert model.index(3).data(Role.SAVE_STATE) == "pending"
    assert "Ungradable" in model.index(3).data(Qt.ItemDataRole.ToolTipRole)
    model.index(0).data(Qt.ItemDataRole.DecorationRole)
    assert [e.sha256 for e in requested] == [_sha(0)]  # thumbnails are asked for when painted

    model.set_view(ImageFilter(status=StatusFilter.UNGRADED))
    assert model.visible_count() == 68
    model.set_view(ImageFilter(laterality=Laterality.LEFT, patient_id="p001"))
    assert [model.entry_at(i).sha256 for i in range(model.visible_count())] == [_sha(3)]
    model.set_view(ImageFilter(), SortKey.DR)
    assert model.entry_at(0).sha256 == _sha(1)  # worst DR first
    model.set_view(ImageFilter(), SortKey.PATIENT_EYE)
    assert model.entry_at(model.visible_count() - 1).patient_id == ""  # no patient id last
    partner = model.partner_of(model.entries()[0])
    assert partner is not None and partner.sha256 == _sha(1)
    model.clear()
    assert model.rowCount() == 0


def test_patient_model_inserts_and_counts(qtmodeltester) -> None:  # type: ignore[no-untyped-def]
    images = ImageListModel()
    found = _found(50)
    images.add_found(found)
    images.add_described(_described(found))
    patients = PatientListModel()
    qtmodeltester.check(patients)
    patients.refresh(images.entries()[:10])
    assert patients.rowCount() == 1 + 5
    patients.refresh(images.entries())
    assert patients.rowCount() == 1 + 20 + 1  # 20 patients and the "no patient id" row
    assert patients.index(0).data(PATIENT_ID_ROLE) == ""
    assert patients.index(1).data(PATIENT_ID_ROLE) == "p000"
    images.set_gradings({_sha(0): Grading(_sha(0), "Dr A", dr_grade=0, amd_grade=0)})
    patients.refresh(images.entries())
    assert "1/2 graded" in patients.index(1).data(Qt.ItemDataRole.DisplayRole)
    assert "1/50 graded" in patients.index(0).data(Qt.ItemDataRole.DisplayRole)
    qtmodeltester.check(patients)
