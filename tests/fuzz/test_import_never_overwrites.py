"""R5 property: importing never changes or deletes a human grade; every conflict is reported.

Hypothesis draws existing human grades (including some by the importing grader itself) and an
import file with overlapping ids, unknown ids, conflicting values and duplicates, then imports
it as a named grader or as reference labels, with or without ``replace``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sall_desktop.domain.grades import Grading, GradingSource, ImageRecord
from sall_desktop.services.labels_io import IssueKind, import_labels
from sall_desktop.store import open_store

IMAGES = [ImageRecord(f"{n:064x}", f"/data/{n}_left.jpeg") for n in range(1, 6)]
IDS = [f"{n}_left" for n in range(1, 6)] + ["404_left"]
GRADERS = ["Ann", "Bob", "Imp"]
REFUSED = {IssueKind.CONFLICT, IssueKind.DUPLICATE_CONFLICT, IssueKind.PROTECTED}

human = st.tuples(st.integers(0, 4), st.sampled_from(GRADERS), st.integers(0, 4), st.integers(0, 3))
row = st.tuples(st.sampled_from(IDS), st.sampled_from(["", "0", "1", "2", "3", "4", "9", "x"]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    humans=st.lists(human, max_size=8),
    prior_import=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), max_size=3),
    rows=st.lists(row, min_size=1, max_size=10),
    replace=st.booleans(),
    as_reference=st.booleans(),
)
def test_import_never_overwrites_human_grades(
    humans: list[tuple[int, str, int, int]],
    prior_import: list[tuple[int, int]],
    rows: list[tuple[str, str]],
    replace: bool,
    as_reference: bool,
) -> None:
    with tempfile.TemporaryDirectory() as tmp, open_store(Path(tmp) / "db.sqlite3") as store:
        for image in IMAGES:
            store.upsert_image(image)
        for index, grader, dr, amd in humans:
            store.add_grading(Grading(IMAGES[index].sha256, grader, dr_grade=dr, amd_grade=amd))
        for index, dr in prior_import:  # earlier imported grades: replace may supersede these
            store.add_grading(
                Grading(IMAGES[index].sha256, "Imp", dr_grade=dr, source=GradingSource.IMPORT)
            )
        before_rows = {i.sha256: store.grading_rows(i.sha256) for i in IMAGES}
        before_current = {(g.image_sha256, g.grader): g for g in store.current_gradings()}
        audit_before = len(store.audit_log())

        path = Path(tmp) / "labels.csv"
        path.write_text("image,level\n" + "".join(f"{i},{v}\n" for i, v in rows), encoding="utf-8")
        report = import_labels(
            store,
            path,
            "eyepacs",
            IMAGES,
            as_grader=None if as_reference else "Imp",
            as_reference="eyepacs" if as_reference else None,
            replace=replace,
        )
        grader = report.grader

        # Every stored row is still there, byte-identical (append-only), in the same order.
        for image in IMAGES:
            after = store.grading_rows(image.sha256)
            assert after[: len(before_rows[image.sha256])] == before_rows[image.sha256]
            assert all(r.grader == grader for r in after[len(before_rows[image.sha256]) :])
        # Every human grade is still its grader's current grade, unchanged.
        for key, grading in before_current.items():
            if grading.source is GradingSource.HUMAN:
                assert repr(store.current_grading(*key)) == repr(grading)
        # The audit trail shows changes by the importing grader only, and never a delete.
        new_entries = store.audit_log()[audit_before:]
        assert {e.grader for e in new_entries} <= {grader}
        assert all(e.action != "delete" for e in new_entries)

        # Every row whose value did not become the grader's grade is in the report.
        reported = {(i.line, i.kind) for i in report.issues}
        for line, (image_id, value) in enumerate(rows, start=2):
            if value == "":
                assert (line, IssueKind.NO_LABEL) in reported
                continue
            if value in ("9", "x"):
                assert (line, IssueKind.MALFORMED) in reported
                continue
            if image_id == "404_left":
                assert (line, IssueKind.UNMATCHED) in reported
                continue
            sha = IMAGES[IDS.index(image_id)].sha256
            current = store.current_grading(sha, grader)
            applied = current is not None and current.dr_grade == int(value)
            if not applied:
                assert any(line == ln and kind in REFUSED for ln, kind in reported), (
                    line,
                    report.format_report(),
                )
