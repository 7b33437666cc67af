"""``sall-desktop migrate-store``: a workstation's SQLite store copied into a team store.

Every test runs the real command (``main([...])``) against a fresh database of the suite's own
PostgreSQL server (``pg_url``). The source is built through the store's own API, so every table
the SQLite schema has holds rows written the way the app writes them.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from sall_desktop.__main__ import main
from sall_desktop.domain.grades import (
    GraderRole,
    Grading,
    GradingSource,
    ImageRecord,
    Laterality,
    UngradableReason,
)
from sall_desktop.domain.predictions import Prediction
from sall_desktop.domain.programme import ProgrammeRole, RoutingRules
from sall_desktop.store import open_store, open_team_store
from sall_desktop.store.models_repository import ModelRow, TrainingRunRow
from sall_desktop.store.pg_migrations import pg_latest_version
from sall_desktop.store.store_copy import table_order

# The insert order the issue lists: each table after the tables its foreign keys name.
EXPECTED_ORDER = [
    "images", "image_locations", "graders", "grader_roles", "models", "predictions", "gradings",
    "audit_log", "training_runs", "import_extras", "settings", "model_events", "holdout_images",
    "programme_roles", "routing_decisions", "programme_settings", "test_sets", "test_set_items",
    "test_set_assignments", "test_answers", "leases",
]  # fmt: skip


def sha(n: int | str) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def model_row(n: int, parent: str | None = None) -> ModelRow:
    return ModelRow(
        id=sha(f"model{n}"),
        parent_id=parent,
        card_json=json.dumps({"name": f"model {n}"}),
        status="candidate",
        source="training" if parent else "bundled",
        run_id=f"run-{n}" if parent else None,
        gate_passed=True if parent else None,
    )


def build_source(path: Path) -> None:
    """A store with rows in every table, written through the store's API."""
    with open_store(path, app_version="9.9.9-test") as store:
        for n in range(6):
            store.upsert_image(
                ImageRecord(
                    sha256=sha(n),
                    path=f"/clinic/eye {n}.jpg",
                    width=640,
                    height=480,
                    laterality=Laterality.LEFT if n % 2 else Laterality.RIGHT,
                    patient_id=f"P{n // 2}",
                )
            )
        store.upsert_image(ImageRecord(sha256=sha(0), path="/moved/eye 0.jpg"))
        store.add_grader("Dr A")
        store.add_grader("Dr B", GraderRole.SECONDARY)
        store.add_grader("Dr C", GraderRole.ARBITER)

        bundled = store.add_model(model_row(1), actor="admin")
        store.activate_model(bundled.id, actor="admin", action="promote", reason="first")
        tuned = store.add_model(model_row(2, parent=bundled.id), actor="trainer")
        store.add_training_run(
            TrainingRunRow(
                run_id="run-2",
                config_json='{"lr": 0.001}',
                manifest_sha256=sha("manifest"),
                status="finished",
                run_dir="/runs/run-2",
                model_id=tuned.id,
            )
        )
        store.retire_model(tuned.id, actor="admin", reason="worse on hold-out")
        store.add_holdout([(sha(5), "P2")], source="designated", actor="admin")
        # 0.1 + 0.2 is not 0.3: the float must arrive bit for bit.
        store.add_predictions(
            [
                Prediction(
                    sha(n),
                    bundled.id,
                    {"dr": (0.7, 0.1, 0.1, 0.05, 0.05)},
                    gradable_probability=0.1 + 0.2,
                )
                for n in range(4)
            ]
        )
        prediction_id = store.add_prediction(
            Prediction(sha(4), bundled.id, {"dr": (1.0, 0.0, 0.0, 0.0, 0.0)})
        )

        # Plain gradings, a change, an accepted prediction, an ungradable one, a retraction,
        # one sent from an offline workstation, and notes COPY must escape.
        store.add_grading(Grading(image_sha256=sha(0), grader="Dr A", dr_grade=1, amd_grade=0))
        store.add_grading(
            Grading(image_sha256=sha(0), grader="Dr A", dr_grade=2, notes="tab\there\\n\nline ☃"),
            reason="second look",
        )
        store.add_grading(
            Grading(
                image_sha256=sha(4),
                grader="Dr A",
                dr_grade=0,
                source=GradingSource.ACCEPTED_PREDICTION,
                model_version=bundled.id,
            ),
            prediction_id=prediction_id,
        )
        store.add_grading(
            Grading(
                image_sha256=sha(5),
                grader="Dr B",
                gradable=False,
                ungradable_reason=UngradableReason.BLUR,
                role=GraderRole.SECONDARY,
            ),
            client_uuid=str(uuid.uuid4()),
            client_at_utc="2024-01-02T03:04:05Z",
        )
        store.add_grading(Grading(image_sha256=sha(1), grader="Dr A", dr_grade=3))
        store.retract_grading(sha(1), "Dr A", reason="wrong eye")

        # A screening programme: rules, roles, and gradings that route an image onward.
        store.set_programme_rules(RoutingRules(normal_fraction=0.5, seed=7), actor="lead")
        store.set_programme_role("Dr A", ProgrammeRole.PRIMARY, actor="lead")
        store.set_programme_role("Dr B", ProgrammeRole.SECONDARY, actor="lead", scope="/clinic")
        store.set_programme_role("Dr B", ProgrammeRole.SECONDARY, actor="lead", granted=False)
        store.add_grading(Grading(image_sha256=sha(2), grader="Dr A", dr_grade=3, amd_grade=0))
        store.add_grading(
            Grading(
                image_sha256=sha(2),
                grader="Dr B",
                dr_grade=0,
                amd_grade=0,
                role=GraderRole.SECONDARY,
            )
        )
        assert {d.stage for d in store.routing_decisions()} == {"secondary", "arbitration"}

        answers = [Grading(image_sha256=sha(n), grader="reference:x", dr_grade=n) for n in (3, 4)]
        store.create_test_set("calibration", answers, actor="lead", source="reference:x")
        store.assign_test_set("calibration", "Dr B", actor="lead")
        store.add_test_answer(
            "calibration", Grading(image_sha256=sha(3), grader="Dr B", dr_grade=2)
        )
        store.retract_test_answer("calibration", sha(3), "Dr B")

        store.add_import_extras("import-1", {sha(3): {"camera": "Topcon", "site": "north"}})
        store.set_setting("last_image", sha(2))
    # No API writes leases on a workstation (its table mirrors the team store's): a raw row.
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(
            "INSERT INTO leases (image_sha256, role, grader, workstation, acquired_at, "
            "expires_at) VALUES (?, 'primary', 'Dr A', 'ws-1', 't0', 't1')",
            (sha(3),),
        )
    conn.close()


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "labels.sqlite"
    build_source(path)
    return path


def migrate(*args: str) -> int:
    return main(["migrate-store", *args])


def failure(err: str) -> str:
    """The one line a refused command ends with (after any progress line, which \r rewrites)."""
    last = err.rstrip("\n").split("\n")[-1]
    assert last.startswith("sall-desktop: "), err
    return last


def normalise(value: Any) -> Any:
    # client_uuid is TEXT in SQLite and UUID in PostgreSQL; every other value reads the same.
    return str(value) if isinstance(value, uuid.UUID) else value


def columns(conn: sqlite3.Connection, table: str) -> tuple[list[str], list[str]]:
    info = conn.execute(f"PRAGMA table_info({table})").fetchall()
    keys = [c[1] for c in sorted(info, key=lambda c: c[5]) if c[5]]
    return [c[1] for c in info], keys


def sqlite_rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(path)
    try:
        out = {}
        for table in table_order(conn):
            names, keys = columns(conn, table)
            out[table] = conn.execute(
                f"SELECT {', '.join(names)} FROM {table} ORDER BY {', '.join(keys)}"
            ).fetchall()
        return out
    finally:
        conn.close()


def pg_rows(url: str, source: Path) -> dict[str, list[tuple[Any, ...]]]:
    lite = sqlite3.connect(source)
    try:
        with psycopg.connect(url) as conn:
            out = {}
            for table in table_order(lite):
                names, keys = columns(lite, table)
                rows = conn.execute(
                    f"SELECT {', '.join(names)} FROM {table} ORDER BY {', '.join(keys)}".encode()
                ).fetchall()
                out[table] = [tuple(normalise(v) for v in row) for row in rows]
            return out
    finally:
        lite.close()


def test_the_copy_order_covers_every_table_after_its_references(source: Path, pg_url: str) -> None:
    conn = sqlite3.connect(source)
    try:
        order = table_order(conn)
        for position, table in enumerate(order):
            for fk in conn.execute(f"PRAGMA foreign_key_list({table})"):
                assert order.index(fk[2]) < position, (table, fk[2])
    finally:
        conn.close()
    assert order == EXPECTED_ORDER
    assert migrate("--init", "--to", pg_url) == 0
    with psycopg.connect(pg_url) as pg:
        tables = {
            r[0]
            for r in pg.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            )
        }
    assert tables - {"schema_version"} == set(order)


def test_migrate_store_copies_every_row_and_the_chain(
    source: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = sqlite_rows(source)
    assert all(before[t] for t in EXPECTED_ORDER), [t for t in EXPECTED_ORDER if not before[t]]

    assert migrate("--from", str(source), "--to", pg_url) == 0
    out = capsys.readouterr().out
    assert "verified:" in out and "NOT verified" not in out
    for table, rows in before.items():
        assert f"{table} " in out and f" {len(rows)} " in out

    # Table for table, row for row, id for id.
    assert pg_rows(pg_url, source) == before
    with open_store(source, read_only=True) as lite, open_team_store(pg_url) as team:
        assert team.current_gradings() == lite.current_gradings()
        assert team.audit_log() == lite.audit_log()
        assert team.routing_decisions() == lite.routing_decisions()
        assert team.list_models() == lite.list_models()
        assert team.model_events() == lite.model_events()
        assert team.programme_roles() == lite.programme_roles()
        assert team.test_answers() == lite.test_answers()
        assert team.predictions() == lite.predictions()
        assert team.import_extras(sha(3)) == lite.import_extras(sha(3))
        assert team.get_setting("last_image") == sha(2)
        report = team.verify()
        assert report.ok, report.problems
        head = lite.chain_head()
        assert team.chain_head() == head and head in out

        # Work goes on in the team store: fresh ids after the copied ones, and the chain holds.
        last = max(r[0] for r in before["gradings"])
        new_id = team.add_grading(Grading(image_sha256=sha(3), grader="Dr C", dr_grade=1))
        assert new_id == last + 1
        assert team.verify().ok
        assert team.audit_log()[-1].grading_id == new_id
        assert team.audit_log()[len(lite.audit_log()) - 1].row_hash == head


def test_a_second_migrate_into_the_same_store_is_refused_and_changes_nothing(
    source: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert migrate("--from", str(source), "--to", pg_url) == 0
    copied = pg_rows(pg_url, source)
    capsys.readouterr()
    assert migrate("--from", str(source), "--to", pg_url) == 1
    err = failure(capsys.readouterr().err)
    assert "already holds data" in err and "never merges" in err
    assert pg_rows(pg_url, source) == copied


def test_a_source_that_does_not_verify_is_refused(
    source: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    conn = sqlite3.connect(source, isolation_level=None)
    conn.execute("DROP TRIGGER gradings_no_update")
    conn.execute("UPDATE gradings SET dr_grade = 4 WHERE id = 1")
    conn.close()
    assert migrate("--from", str(source), "--to", pg_url) == 1
    err = failure(capsys.readouterr().err)
    assert "does not verify" in err and "grading 1" in err
    with psycopg.connect(pg_url) as pg:
        # Refused before the team store was touched: not even its schema was made.
        assert pg.execute("SELECT to_regclass('gradings')").fetchone() == (None,)


def test_a_copy_that_fails_half_way_leaves_nothing_behind(
    tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "labels.sqlite"
    build_source(path)
    with open_store(path) as store:  # SQLite keeps a NUL in text; PostgreSQL's text refuses it
        store.add_grading(Grading(image_sha256=sha(3), grader="Dr A", dr_grade=1, notes="a\x00b"))
    assert migrate("--from", str(path), "--to", pg_url) == 1
    err = failure(capsys.readouterr().err)
    assert "nothing was kept" in err and "NUL" in err
    with psycopg.connect(pg_url) as pg:
        for table in EXPECTED_ORDER:  # images and graders went first: rolled back with the rest
            assert pg.execute(f"SELECT count(*) FROM {table}".encode()).fetchone() == (0,), table
        assert pg.execute(
            "SELECT nextval(pg_get_serial_sequence('gradings', 'id'))"
        ).fetchone() == (1,)


def test_a_copy_that_differs_is_rolled_back_before_it_commits(
    source: Path, pg_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sall_desktop.store import store_copy

    copy_table = store_copy._copy_table

    def losing_leases(src: Any, cur: Any, table: Any, progress: Any) -> None:
        if table.name != "leases":
            copy_table(src, cur, table, progress)

    monkeypatch.setattr(store_copy, "_copy_table", losing_leases)
    assert migrate("--from", str(source), "--to", pg_url) == 1
    err = failure(capsys.readouterr().err)
    assert "rolled back: leases: 1 rows in the label database, 0 in the team store" in err
    with psycopg.connect(pg_url) as pg:
        for table in EXPECTED_ORDER:
            assert pg.execute(f"SELECT count(*) FROM {table}".encode()).fetchone() == (0,), table


def test_a_source_open_in_another_program_is_refused(
    source: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with open_store(source):
        assert migrate("--from", str(source), "--to", pg_url) == 1
    assert "open in another SALL Desktop program" in failure(capsys.readouterr().err)


def test_init_makes_the_schema_and_prints_its_version(
    pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert migrate("--init", "--to", pg_url) == 0
    version = pg_latest_version()
    assert f"schema version {version}" in capsys.readouterr().out
    with psycopg.connect(pg_url) as pg:
        assert pg.execute("SELECT max(version) FROM schema_version").fetchone() == (version,)
        assert pg.execute("SELECT count(*) FROM gradings").fetchone() == (0,)
    # As the store's own messages word it: the team store given as --db.
    assert main(["--db", pg_url, "migrate-store", "--init"]) == 0
    assert f"schema version {version}" in capsys.readouterr().out


def test_options_that_do_not_go_together_are_usage_errors(
    source: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for args in (
        ["--from", str(source)],  # no team store named
        ["--from", str(source), "--to", str(source)],  # not a URL
        ["--init", "--from", str(source), "--to", pg_url],
        ["--from", pg_url, "--to", pg_url],
    ):
        with pytest.raises(SystemExit) as exit_:
            migrate(*args)
        assert exit_.value.code == 2, args
    capsys.readouterr()
