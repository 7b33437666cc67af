"""The repository contract: images, graders, gradings, predictions, settings, on both backends.

Every test taking ``store`` runs on a SQLite file and on a team-store (PostgreSQL) database.
"""

from __future__ import annotations

import pytest

from sall_desktop.domain.grades import (
    FieldSource,
    GraderRole,
    GradingSource,
    ImageRecord,
    Laterality,
    UngradableReason,
)
from sall_desktop.domain.predictions import Prediction
from sall_desktop.store import LabelRepository, SqliteLabelStore, StoreWriteError, open_store
from tests.unit.store.conftest import Refused


@pytest.fixture
def store(any_store):
    """The contract runs on each backend (tests/unit/store/conftest.py)."""
    return any_store


def test_store_satisfies_the_repository_protocol(store: SqliteLabelStore) -> None:
    repo: LabelRepository = store  # mypy checks the structure; this checks the attributes
    for name in LabelRepository.__dict__:
        if not name.startswith("_"):
            assert hasattr(repo, name), name


def test_fresh_store_is_writable_and_empty(store: SqliteLabelStore) -> None:
    assert not store.read_only and store.read_only_reason == ""
    assert store.warnings == []
    assert store.integrity_check() == "ok"
    assert store.list_images() == [] and store.current_gradings() == [] and store.audit_log() == []


def test_images_are_keyed_by_content_and_keep_every_path(store, sha) -> None:
    store.upsert_image(ImageRecord(sha256=sha(1), path="/a/1.jpg", width=30, height=20))
    store.upsert_image(ImageRecord(sha256=sha(1), path="/moved/renamed.jpg"))
    store.upsert_image(ImageRecord(sha256=sha(2), path="/a/2.jpg"))
    image = store.get_image(sha(1))
    assert image is not None
    assert image.path == "/moved/renamed.jpg"
    assert (image.width, image.height) == (30, 20)  # a blank rescan keeps what was known
    assert store.image_paths(sha(1)) == ["/moved/renamed.jpg", "/a/1.jpg"]
    assert [i.sha256 for i in store.list_images()] == [sha(1), sha(2)]
    assert store.get_image(sha(3)) is None


def test_a_file_name_guess_never_overrules_the_graders_laterality(store, sha) -> None:
    user = ImageRecord(
        sha256=sha(1), path="p", laterality=Laterality.LEFT, laterality_source=FieldSource.USER
    )
    guess = ImageRecord(
        sha256=sha(1),
        path="p",
        laterality=Laterality.RIGHT,
        laterality_source=FieldSource.FILENAME_RULE,
    )
    store.upsert_image(user)
    store.upsert_image(guess)
    image = store.get_image(sha(1))
    assert image is not None and image.laterality is Laterality.LEFT
    assert image.laterality_source is FieldSource.USER


def test_graders_and_roles(store) -> None:
    store.add_grader("Dr A")
    store.add_grader("Dr B", GraderRole.SECONDARY)
    store.add_grader("Dr A", GraderRole.ARBITER)
    assert store.graders() == ["Dr A", "Dr B"]
    assert store.grader_roles("Dr A") == {GraderRole.PRIMARY, GraderRole.ARBITER}
    assert store.grader_roles("nobody") == set()
    with pytest.raises(StoreWriteError, match="needs a name"):
        store.add_grader("  ")


def test_gradings_are_append_only_and_current_is_the_latest(store, grading, sha) -> None:
    first = store.add_grading(grading(1, "Dr A", dr_grade=1))
    second = store.add_grading(grading(1, "Dr A", dr_grade=3, notes="haemorrhages"))
    other = store.add_grading(grading(1, "Dr B", dr_grade=2, role=GraderRole.SECONDARY))
    assert first < second < other
    current = store.current_grading(sha(1), "Dr A")
    assert current is not None and current.dr_grade == 3 and current.notes == "haemorrhages"
    # Grader B's grade is separate: it never overwrites A's (R9).
    b = store.current_grading(sha(1), "Dr B")
    assert b is not None and b.dr_grade == 2 and b.role is GraderRole.SECONDARY
    assert [g.dr_grade for g in store.grading_history(sha(1))] == [1, 3, 2]
    assert {(g.grader, g.dr_grade) for g in store.current_gradings()} == {("Dr A", 3), ("Dr B", 2)}
    assert [g.grader for g in store.current_gradings(grader="Dr B")] == ["Dr B"]


def test_the_stored_grading_round_trips_every_field(store, grading, sha) -> None:
    g = grading(
        7,
        "Dr Ünïcode",
        dr_grade=4,
        amd_grade=3,
        dme=2,
        notes="line1\nline2 ☃",
        model_version="m" * 64,
        role=GraderRole.ARBITER,
        source=GradingSource.ACCEPTED_PREDICTION,
    )
    store.add_grading(g)
    assert store.current_grading(sha(7), "Dr Ünïcode") == g


def test_ungradable_is_stored_as_blank_grades_never_zero(store, grading, sha, raw_execute) -> None:
    store.add_grading(grading(1, gradable=False, ungradable_reason=UngradableReason.BLUR))
    g = store.current_grading(sha(1), "Dr A")
    assert g is not None and not g.gradable and g.dr_grade is None and g.amd_grade is None
    # Blank, not zero, in the table itself: a 0 in any disease column is refused.
    for column in ("dr_grade", "amd_grade", "dme"):
        with pytest.raises(Refused):
            raw_execute(f"INSERT INTO gradings (image_id, grader_id, role, source, gradable, "
                        f"ungradable_reason, {column}, created_at) "
                        "VALUES (1, 1, 'primary', 'human', 0, 'blur', 0, 't')")  # fmt: skip


def test_retraction_removes_the_current_grading_but_keeps_history(store, grading, sha) -> None:
    store.add_grading(grading(1, "Dr A", dr_grade=2))
    row_id = store.retract_grading(sha(1), "Dr A", reason="undo")
    assert store.current_grading(sha(1), "Dr A") is None
    rows = store.grading_rows(sha(1))
    assert [r.retracted for r in rows] == [False, True] and rows[-1].id == row_id
    assert rows[-1].grading is None
    assert len(store.grading_history(sha(1))) == 1
    with pytest.raises(StoreWriteError, match="no grade") as err:
        store.retract_grading(sha(1), "Dr A")
    assert not err.value.retryable
    store.add_grading(grading(1, "Dr A", dr_grade=4))
    current = store.current_grading(sha(1), "Dr A")
    assert current is not None and current.dr_grade == 4


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE gradings SET dr_grade = 0",
        "DELETE FROM gradings",
        "UPDATE predictions SET model_id = 'x'",
        "DELETE FROM predictions",
        "UPDATE audit_log SET new_value = '0'",
        "DELETE FROM audit_log",
    ],
)
def test_append_only_tables_refuse_update_and_delete(store, grading, sha, raw_execute, sql) -> None:
    store.add_grading(grading(1))
    store.add_prediction(
        Prediction(image_sha256=sha(1), model_id="m", probabilities={"dr": (1.0,)})
    )
    with pytest.raises(Refused, match="append-only"):
        raw_execute(sql)


@pytest.mark.parametrize(
    ("columns", "values"),
    [
        # no grade without a grader
        (
            "image_id, grader_id, role, source, gradable, created_at",
            "1, NULL, 'primary', 'human', 1, 't'",
        ),
        # grades outside their scales
        (
            "image_id, grader_id, role, source, gradable, dr_grade, created_at",
            "1, 1, 'primary', 'human', 1, 5, 't'",
        ),
        (
            "image_id, grader_id, role, source, gradable, amd_grade, created_at",
            "1, 1, 'primary', 'human', 1, 4, 't'",
        ),
        (
            "image_id, grader_id, role, source, gradable, dr_grade, created_at",
            "1, 1, 'primary', 'human', 1, '2x', 't'",
        ),
        # ungradable with a 0 grade, or without a reason
        (
            "image_id, grader_id, role, source, gradable, ungradable_reason, dr_grade, created_at",
            "1, 1, 'primary', 'human', 0, 'blur', 0, 't'",
        ),
        (
            "image_id, grader_id, role, source, gradable, created_at",
            "1, 1, 'primary', 'human', 0, 't'",
        ),
        # a grading that is neither gradable nor ungradable
        ("image_id, grader_id, role, source, created_at", "1, 1, 'primary', 'human', 't'"),
        # unknown role, unknown grader
        (
            "image_id, grader_id, role, source, gradable, created_at",
            "1, 1, 'boss', 'human', 1, 't'",
        ),
        (
            "image_id, grader_id, role, source, gradable, created_at",
            "1, 99, 'primary', 'human', 1, 't'",
        ),
    ],
)
def test_the_schema_refuses_invalid_gradings(store, grading, raw_execute, columns, values) -> None:
    store.add_grading(grading(1))  # image 1 and grader 1 exist
    raw_execute("INSERT INTO gradings (image_id, grader_id, role, source, gradable, created_at) "
                "VALUES (1, 1, 'primary', 'human', 1, 't')")  # fmt: skip
    with pytest.raises(Refused):
        raw_execute(f"INSERT INTO gradings ({columns}) VALUES ({values})")


def test_the_schema_refuses_an_empty_grader_name(store, raw_execute) -> None:
    with pytest.raises(Refused):
        raw_execute("INSERT INTO graders (name, created_at) VALUES ('  ', 't')")


def test_predictions_are_appended_and_the_latest_is_returned(store, sha) -> None:
    def pred(model: str, p: float) -> Prediction:
        return Prediction(
            image_sha256=sha(1),
            model_id=model,
            probabilities={"dr": (p, 1 - p), "amd": (1.0,)},
            gradable_probability=0.25,
        )

    p1, p2, p3 = pred("m1", 0.1), pred("m2", 0.3), pred("m1", 0.7)
    first = store.add_prediction(p1)
    assert store.add_predictions([p2, p3]) == 2
    assert store.latest_prediction(sha(1)) == p3  # every field, floats exactly
    assert store.latest_prediction(sha(1), "m2") == p2
    assert store.latest_prediction(sha(2)) is None
    assert store.predictions() == [p1, p2, p3]
    assert store.predictions(model_id="m1") == [p1, p3]
    assert first >= 1


def test_graded_images_are_those_of_the_folder_this_model_predicted(store, sha) -> None:
    def pred(n: int, model: str) -> Prediction:
        return Prediction(image_sha256=sha(n), model_id=model, probabilities={"dr": (1.0,)})

    # More hashes than one IN (...) query takes, so the lookup is split.
    store.add_predictions([pred(n, "m1") for n in range(0, 1200, 2)])
    store.add_predictions([pred(n, "m2") for n in range(1, 1200, 2)])
    asked = [sha(n) for n in range(1300)] + [sha(4)]  # unknown images and a repeat too
    assert store.graded_images("m1", asked) == {sha(n) for n in range(0, 1200, 2)}
    assert store.graded_images("m2", asked[:10]) == {sha(n) for n in (1, 3, 5, 7, 9)}
    assert store.graded_images("m3", asked) == set()
    assert store.graded_images("m1", []) == set()


def test_latest_predictions_are_the_newest_of_this_model_for_the_images_asked(store, sha) -> None:
    def pred(n: int, model: str, p: float) -> Prediction:
        return Prediction(image_sha256=sha(n), model_id=model, probabilities={"dr": (p, 1.0 - p)})

    # More hashes than one IN (...) query takes, so the lookup is split.
    store.add_predictions([pred(n, "m1", 0.25) for n in range(0, 1200, 2)])
    store.add_predictions([pred(n, "m2", 0.5) for n in range(0, 1200)])
    store.add_predictions([pred(n, "m1", 0.75) for n in (2, 700)])  # graded again, later
    asked = [sha(n) for n in range(1300)] + [sha(4)]  # unknown images and a repeat too
    latest = store.latest_predictions("m1", asked)
    assert latest.keys() == {sha(n) for n in range(0, 1200, 2)}
    assert {n: latest[sha(n)].probabilities["dr"][0] for n in (0, 2, 700, 702)} == {
        0: 0.25,
        2: 0.75,
        700: 0.75,
        702: 0.25,
    }
    assert all(p.model_id == "m1" for p in latest.values())
    assert store.latest_predictions("m1", [sha(1), sha(3)]) == {}  # only m2 graded them
    assert store.latest_predictions("m3", asked) == {}
    assert store.latest_predictions("m1", []) == {}


def test_settings_and_import_extras(store, sha) -> None:
    assert store.get_setting("last_image") is None
    store.set_setting("last_image", sha(1))
    store.set_setting("last_image", sha(2))
    assert store.get_setting("last_image") == sha(2)
    extras = {sha(1): {"Risk of macular edema ": "1", "site": "x"}}
    assert store.add_import_extras("import-1", extras) == 2
    assert store.import_extras(sha(1)) == {"import-1": {"Risk of macular edema ": "1", "site": "x"}}
    assert store.import_extras(sha(2)) == {}


def test_backup_is_a_verified_standalone_database(sqlite_store, grading, tmp_path) -> None:
    store = sqlite_store
    store.add_grading(grading(1))
    dest = tmp_path / "backups" / "labels-backup.sqlite3"
    store.backup_to(dest)
    store.add_grading(grading(2))  # later changes are not in the backup
    assert not dest.with_name(dest.name + "-wal").exists()
    with open_store(dest, read_only=True) as copy:
        assert copy.integrity_check() == "ok"
        assert len(copy.current_gradings()) == 1
        assert copy.verify_chain().ok
    assert not list(dest.parent.glob(".sall-tmp-*"))


def test_closed_store_refuses_work_with_a_clear_error(store, grading) -> None:
    s = store
    s.close()
    s.close()  # idempotent
    with pytest.raises(StoreWriteError, match="closed"):
        s.add_grading(grading(1))


def test_a_grading_resent_with_its_client_uuid_is_stored_once(store, grading, sha) -> None:
    uuid = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
    made = "2026-12-01T09:00:00.000000+00:00"
    first = store.add_grading(grading(1, dr_grade=3), client_uuid=uuid, client_at_utc=made)
    again = store.add_grading(grading(1, dr_grade=3), client_uuid=uuid, client_at_utc=made)
    assert again == first and len(store.grading_rows(sha(1))) == 1
    rows = store.audit_log()
    assert {r.grading_id for r in rows} == {first} and {r.client_at_utc for r in rows} == {made}
    undo = "6fa459ea-ee8a-3ca4-894e-db77e160355e"
    gone = store.retract_grading(sha(1), "Dr A", client_uuid=undo)
    assert store.retract_grading(sha(1), "Dr A", client_uuid=undo) == gone
    assert [r.retracted for r in store.grading_rows(sha(1))] == [False, True]
    assert store.verify_chain().ok and store.verify().ok


def test_other_graders_saves_are_read_after_the_last_id_seen(store, grading, sha) -> None:
    assert store.last_grading_id() == 0 and store.gradings_since(0) == []
    store.add_grading(grading(1, "Dr A"))
    seen = store.last_grading_id()
    store.add_grading(grading(2, "Dr B", dr_grade=3))
    store.retract_grading(sha(1), "Dr A")
    new = store.gradings_since(seen)
    assert [(r.image_sha256, r.grader, r.retracted) for r in new] == [
        (sha(2), "Dr B", False),
        (sha(1), "Dr A", True),
    ]
    assert new[0].grading is not None and new[0].grading.dr_grade == 3
    assert store.gradings_since(seen, limit=1) == new[:1]
    assert store.gradings_since(store.last_grading_id()) == []


def test_window_settings_belong_to_the_workstation_on_a_team_store(pg_url: str) -> None:
    from sall_desktop.store import open_team_store

    where = pg_url
    one = open_team_store(where, app_version="t", workstation="desk-1")
    two = open_team_store(where, app_version="t", workstation="desk-2")
    one.set_setting("gui.last_image", "a")
    two.set_setting("gui.last_image", "b")
    one.set_setting("shared", "x")
    assert one.get_setting("gui.last_image") == "a" and two.get_setting("gui.last_image") == "b"
    assert two.get_setting("shared") == "x"
    one.close()
    two.close()


def test_a_test_answer_resent_with_its_client_uuid_is_stored_once(store, sha) -> None:
    from sall_desktop.domain.grades import Grading

    store.upsert_image(ImageRecord(sha256=sha(5), path="/d/5.jpg"))
    reference = Grading(sha(5), "QA", dr_grade=2, amd_grade=0)
    store.create_test_set("induction", [reference], actor="QA", source="reference")
    store.assign_test_set("induction", "Dr New", actor="QA")
    answer = Grading(sha(5), "Dr New", dr_grade=1, amd_grade=0)
    uuid = "0b4e28ba-2fa1-11d2-883f-0016d3cca427"
    first = store.add_test_answer("induction", answer, client_uuid=uuid)
    assert store.add_test_answer("induction", answer, client_uuid=uuid) == first
    undo = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
    gone = store.retract_test_answer("induction", sha(5), "Dr New", client_uuid=undo)
    assert store.retract_test_answer("induction", sha(5), "Dr New", client_uuid=undo) == gone
    assert store.test_answers("induction") == []  # withdrawn once, not twice or never
    assert store.verify_chain().ok
