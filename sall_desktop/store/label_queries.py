"""The label store's queries, written once for both backends (ADR 0013).

:class:`LabelQueries` holds every query of :class:`~sall_desktop.store.repository.
LabelRepository` in the SQL that SQLite and PostgreSQL share; the store classes add a connection:
``SqliteLabelStore`` (``sqlite_repository.py``) and ``PgLabelStore`` (``pg_repository.py``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from sall_desktop.domain.grades import (
    FieldSource,
    GraderRole,
    Grading,
    ImageRecord,
    Laterality,
    utc_now,
)
from sall_desktop.store import audit
from sall_desktop.store.audit import AUDIT_COLUMNS, AuditEntry, ChainReport, ChainVerifier
from sall_desktop.store.errors import StoreWriteError
from sall_desktop.store.leases_repository import LeasesRepositoryMixin
from sall_desktop.store.models_repository import ModelsRepositoryMixin
from sall_desktop.store.predictions_repository import PredictionsRepositoryMixin
from sall_desktop.store.programme_repository import ProgrammeRepositoryMixin
from sall_desktop.store.repository import GradingRow
from sall_desktop.store.rows import (
    CURRENT_SELECT,
    GRADING_FIELDS,
    GRADING_SELECT,
    IMAGE_SELECT,
    UPSERT_IMAGE,
    grading_from_row,
    image_from_row,
    image_row_id,
)
from sall_desktop.store.sql import SqlConnection
from sall_desktop.store.test_sets_repository import TestSetsRepositoryMixin
from sall_desktop.store.verify import VerifyReport, chain_head, verify_store


class LabelQueries(
    LeasesRepositoryMixin,
    ModelsRepositoryMixin,
    PredictionsRepositoryMixin,
    ProgrammeRepositoryMixin,
    TestSetsRepositoryMixin,
):
    """Images, graders, gradings, predictions, imports, the audit trail and settings.

    Mixed into a class that provides ``app_version`` and the ``_write``/``_read`` transactions
    (:class:`~sall_desktop.store.transactions.Transactions`).
    """

    if TYPE_CHECKING:
        app_version: str

        def _write(self, what: str) -> AbstractContextManager[SqlConnection, None]: ...
        def _read(self, what: str) -> AbstractContextManager[SqlConnection, None]: ...

    _image_id = staticmethod(image_row_id)

    @staticmethod
    def _grader_id(conn: SqlConnection, name: str, role: GraderRole | None) -> int | None:
        row = conn.execute("SELECT id FROM graders WHERE name = ?", (name,)).fetchone()
        if row is None:
            if role is None:
                return None
            cur = conn.execute(
                "INSERT INTO graders (name, created_at) VALUES (?, ?) RETURNING id",
                (name, utc_now()),
            )
            grader_id = int(cur.fetchone()[0])
        else:
            grader_id = int(row[0])
        if role is not None:
            conn.execute(
                "INSERT INTO grader_roles (grader_id, role) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (grader_id, role.value),
            )
        return grader_id

    @staticmethod
    def _latest_row(conn: SqlConnection, image_id: int, grader_id: int) -> Grading | None:
        row = conn.execute(
            f"{GRADING_SELECT} WHERE g.image_id = ? AND g.grader_id = ? ORDER BY g.id DESC LIMIT 1",
            (image_id, grader_id),
        ).fetchone()
        return None if row is None or row[3] else grading_from_row(row)

    # ------------------------------------------------------------------ images

    def upsert_image(self, record: ImageRecord) -> None:
        """Add or refresh one image by SHA-256; its ``path`` is recorded as seen now."""
        self.upsert_images([record])

    def upsert_images(self, records: Sequence[ImageRecord]) -> None:
        """Add or refresh many images in one transaction (one fsync for a whole scan batch)."""
        now = utc_now()
        with self._write("the image list") as conn:
            for record in records:
                params = {
                    "sha256": record.sha256,
                    "sop_instance_uid": record.sop_instance_uid,
                    "width": record.width,
                    "height": record.height,
                    "file_format": record.file_format,
                    "laterality": Laterality(record.laterality).value,
                    "laterality_source": FieldSource(record.laterality_source).value,
                    "patient_id": record.patient_id,
                    "patient_id_source": FieldSource(record.patient_id_source).value,
                    "study_date": record.study_date,
                    "modality": record.modality,
                    "frames": record.frames,
                    "now": now,
                }
                conn.execute(UPSERT_IMAGE, params)
                if record.path:
                    image_id = self._image_id(conn, record.sha256, create=False)
                    conn.execute(
                        "INSERT INTO image_locations (image_id, path, first_seen, last_seen) "
                        "VALUES (?, ?, ?, ?) ON CONFLICT (image_id, path) "
                        "DO UPDATE SET last_seen = excluded.last_seen",
                        (image_id, record.path, now, now),
                    )

    def get_image(self, sha256: str) -> ImageRecord | None:
        """The image with this SHA-256 (``path``: the most recently seen one), or None."""
        with self._read("the image") as conn:
            row = conn.execute(f"{IMAGE_SELECT} WHERE i.sha256 = ?", (sha256,)).fetchone()
            return None if row is None else image_from_row(row)

    def list_images(self) -> list[ImageRecord]:
        """Every known image, in the order first added."""
        with self._read("the image list") as conn:
            rows = conn.execute(f"{IMAGE_SELECT} ORDER BY i.id").fetchall()
            return [image_from_row(r) for r in rows]

    def image_paths(self, sha256: str) -> list[str]:
        """Every path the image was seen at, most recent first."""
        with self._read("the image paths") as conn:
            rows = conn.execute(
                "SELECT l.path FROM image_locations AS l JOIN images AS i ON i.id = l.image_id "
                "WHERE i.sha256 = ? ORDER BY l.last_seen DESC, l.id DESC",
                (sha256,),
            ).fetchall()
            return [str(r[0]) for r in rows]

    # ------------------------------------------------------------------ graders

    def add_grader(self, name: str, role: GraderRole = GraderRole.PRIMARY) -> None:
        """Register a named grader, or add ``role`` to an existing one. Names are exact."""
        if not name.strip():
            raise StoreWriteError("A grader needs a name.", retryable=False)
        with self._write("the grader") as conn:
            self._grader_id(conn, name, GraderRole(role))

    def graders(self) -> list[str]:
        """Grader names in registration order."""
        with self._read("the graders") as conn:
            return [str(r[0]) for r in conn.execute("SELECT name FROM graders ORDER BY id")]

    def grader_roles(self, name: str) -> set[GraderRole]:
        """The roles the grader holds (empty for an unknown name)."""
        with self._read("the grader roles") as conn:
            rows = conn.execute(
                "SELECT r.role FROM grader_roles AS r JOIN graders AS g ON g.id = r.grader_id "
                "WHERE g.name = ?",
                (name,),
            ).fetchall()
            return {GraderRole(r[0]) for r in rows}

    # ------------------------------------------------------------------ gradings

    def add_grading(
        self,
        grading: Grading,
        *,
        reason: str = "",
        prediction_id: int | None = None,
        client_uuid: str | None = None,
        client_at_utc: str | None = None,
    ) -> int:
        """Append ``grading`` and its audit rows in one transaction.

        Unknown images and graders are registered in the same transaction.

        Args:
            grading: the grading; its grader, role and model version shown are stored with it.
            reason: why (required by the caller for changes after sign-off); audited.
            prediction_id: the predictions row the grader was shown, if any.
            client_uuid: the workstation's name for this save; a second call with the same
                UUID writes nothing and returns the first row's id (an outbox resending).
            client_at_utc: when the workstation made it, if earlier than now (the outbox).

        Returns:
            The new gradings row id, only after the commit returned (R1: then show "saved").

        Raises:
            StoreWriteError: nothing was written; keep the grading pending (R4).
        """
        with self._write("the grade") as conn:
            if client_uuid is not None:
                sent = conn.execute(
                    "SELECT id FROM gradings WHERE client_uuid = ?", (client_uuid,)
                ).fetchone()
                if sent is not None:
                    return int(sent[0])
            image_id = self._image_id(conn, grading.image_sha256, create=True)
            grader_id = self._grader_id(conn, grading.grader, grading.role)
            assert image_id is not None and grader_id is not None
            previous = self._latest_row(conn, image_id, grader_id)
            self._programme_check(conn, grading, previous)
            cur = conn.execute(
                "INSERT INTO gradings (image_id, grader_id, retracted, prediction_id, "
                f"client_uuid, {GRADING_FIELDS}) "
                "VALUES (?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (
                    image_id,
                    grader_id,
                    prediction_id,
                    client_uuid,
                    grading.role.value,
                    grading.source.value,
                    int(grading.gradable),
                    grading.ungradable_reason.value if grading.ungradable_reason else None,
                    grading.dr_grade,
                    grading.amd_grade,
                    grading.dme,
                    grading.notes,
                    grading.model_version,
                    grading.created_at,
                ),
            )
            grading_id = int(cur.fetchone()[0])
            audit.append_audit_rows(
                conn,
                audit.grading_changes(previous, grading),
                grader=grading.grader,
                image_sha256=grading.image_sha256,
                grading_id=grading_id,
                reason=reason,
                app_version=self.app_version,
                model_version=grading.model_version,
                client_at_utc=client_at_utc,
            )
            self._programme_after_grading(conn, grading, grading_id)
        return grading_id

    def retract_grading(
        self,
        image_sha256: str,
        grader: str,
        *,
        reason: str = "",
        client_uuid: str | None = None,
        client_at_utc: str | None = None,
    ) -> int:
        """Withdraw the grader's current grading of the image with an append-only retraction.

        Used by undo when there was no earlier grading, and to delete a grade. Audited as a
        "delete" of every field.

        Returns:
            The retraction's row id, after commit.

        Raises:
            StoreWriteError: the grader has no current grading of this image (not retryable),
                or the write failed.
        """
        with self._write("the removal of the grade") as conn:
            if client_uuid is not None:
                sent = conn.execute(
                    "SELECT id FROM gradings WHERE client_uuid = ?", (client_uuid,)
                ).fetchone()
                if sent is not None:
                    return int(sent[0])  # resent by an outbox: already done
            image_id = self._image_id(conn, image_sha256, create=False)
            grader_id = self._grader_id(conn, grader, None)
            previous = (
                self._latest_row(conn, image_id, grader_id)
                if image_id is not None and grader_id is not None
                else None
            )
            if previous is None:
                raise StoreWriteError(
                    f"{grader} has no grade on this image to remove.", retryable=False
                )
            cur = conn.execute(
                "INSERT INTO gradings (image_id, grader_id, retracted, role, source, notes, "
                "client_uuid, created_at) VALUES (?, ?, 1, ?, ?, '', ?, ?) RETURNING id",
                (
                    image_id,
                    grader_id,
                    previous.role.value,
                    previous.source.value,
                    client_uuid,
                    utc_now(),
                ),
            )
            row_id = int(cur.fetchone()[0])
            audit.append_audit_rows(
                conn,
                audit.retraction_changes(previous),
                grader=grader,
                image_sha256=image_sha256,
                grading_id=row_id,
                reason=reason,
                app_version=self.app_version,
                model_version=previous.model_version,
                client_at_utc=client_at_utc,
            )
        return row_id

    def current_grading(self, image_sha256: str, grader: str) -> Grading | None:
        """The grader's current grading of the image, or None."""
        with self._read("the grade") as conn:
            row = conn.execute(
                f"{CURRENT_SELECT} WHERE image_sha256 = ? AND grader = ?", (image_sha256, grader)
            ).fetchone()
            return None if row is None else grading_from_row(row)

    def current_gradings(self, *, grader: str | None = None) -> list[Grading]:
        """Latest non-retracted grading per (image, grader), from the ``current_gradings`` view."""
        with self._read("the grades") as conn:
            if grader is None:
                rows = conn.execute(f"{CURRENT_SELECT} ORDER BY id").fetchall()
            else:
                rows = conn.execute(
                    f"{CURRENT_SELECT} WHERE grader = ? ORDER BY id", (grader,)
                ).fetchall()
            return [grading_from_row(r) for r in rows]

    def grading_rows(self, image_sha256: str) -> list[GradingRow]:
        """Every gradings row of the image, oldest first, retractions included."""
        with self._read("the grade history") as conn:
            rows = conn.execute(
                f"{GRADING_SELECT} WHERE i.sha256 = ? ORDER BY g.id", (image_sha256,)
            ).fetchall()
            return [_grading_row(r) for r in rows]

    def gradings_since(self, after_id: int, *, limit: int = 1000) -> list[GradingRow]:
        """Gradings rows with an id above ``after_id``, oldest first, at most ``limit``.

        How a workstation on a team store learns of other graders' saves: ids grow in commit
        order on both backends (writes are serialised), so the last id seen is a cursor.
        """
        with self._read("the new grades") as conn:
            rows = conn.execute(
                f"{GRADING_SELECT} WHERE g.id > ? ORDER BY g.id LIMIT ?", (after_id, limit)
            ).fetchall()
            return [_grading_row(r) for r in rows]

    def last_grading_id(self) -> int:
        """The newest gradings row id (0 when there is none): where to start watching."""
        with self._read("the grades") as conn:
            row = conn.execute("SELECT max(id) FROM gradings").fetchone()
            return int(row[0] or 0)

    def grading_history(self, image_sha256: str) -> list[Grading]:
        """Every grading saved for the image, oldest first; retractions left out."""
        return [r.grading for r in self.grading_rows(image_sha256) if r.grading is not None]

    # ------------------------------------------------------------------ import extras

    def add_import_extras(self, import_id: str, extras: Mapping[str, Mapping[str, str]]) -> int:
        """Keep the unknown columns of one import (image SHA-256 -> {column: value}).

        Returns:
            The number of (image, column) values stored; a repeated one replaces its value.
        """
        count = 0
        with self._write("the imported columns") as conn:
            for sha256, columns in extras.items():
                image_id = self._image_id(conn, sha256, create=True)
                for column, value in columns.items():
                    conn.execute(
                        "INSERT INTO import_extras (import_id, image_id, column_name, value) "
                        "VALUES (?, ?, ?, ?) ON CONFLICT (import_id, image_id, column_name) "
                        "DO UPDATE SET value = excluded.value",
                        (import_id, image_id, column, value),
                    )
                    count += 1
        return count

    def import_extras(self, image_sha256: str) -> dict[str, dict[str, str]]:
        """Unknown imported columns of the image: import id -> {column: value}."""
        with self._read("the imported columns") as conn:
            rows = conn.execute(
                "SELECT x.import_id, x.column_name, x.value FROM import_extras AS x "
                "JOIN images AS i ON i.id = x.image_id WHERE i.sha256 = ? ORDER BY x.id",
                (image_sha256,),
            ).fetchall()
        out: dict[str, dict[str, str]] = {}
        for import_id, column, value in rows:
            out.setdefault(import_id, {})[column] = value
        return out

    # ------------------------------------------------------------------ audit and checks

    def _audit_rows(self, conn: SqlConnection, image_sha256: str | None) -> Iterator[Any]:
        sql = f"SELECT {', '.join(AUDIT_COLUMNS)} FROM audit_log"
        if image_sha256 is None:
            return iter(conn.execute(sql + " ORDER BY id"))
        return iter(conn.execute(sql + " WHERE image_sha256 = ? ORDER BY id", (image_sha256,)))

    def audit_log(self, *, image_sha256: str | None = None) -> list[AuditEntry]:
        """The audit trail in id order (only the rows of ``image_sha256`` if given)."""
        with self._read("the audit trail") as conn:
            return [AuditEntry(*row) for row in self._audit_rows(conn, image_sha256)]

    def verify(self) -> VerifyReport:
        """Check the audit chain and every grading against it (``store/verify.py``)."""
        with self._read("the audit trail") as conn:
            return verify_store(conn)

    def chain_head(self) -> str:
        """The last audit row's hash ("" for an empty trail): what an export records."""
        with self._read("the audit trail") as conn:
            return chain_head(conn)

    def verify_chain(self) -> ChainReport:
        """Check the whole hash chain, streaming rows (memory does not grow with the trail)."""
        verifier = ChainVerifier()
        with self._read("the audit trail") as conn:
            for row in self._audit_rows(conn, None):
                if not verifier.feed_row(row):
                    break
        return verifier.report()

    # ------------------------------------------------------------------ settings

    def get_setting(self, key: str) -> str | None:
        """A UI setting such as the last image shown (not audited), or None."""
        with self._read("the setting") as conn:
            row = conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
            return None if row is None else str(row[0])

    def set_setting(self, key: str, value: str) -> None:
        """Store a UI setting (not audited)."""
        with self._write("the setting") as conn:
            conn.execute(
                "INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                "updated_at = excluded.updated_at",
                (key, value, utc_now()),
            )


def _grading_row(r: Any) -> GradingRow:
    return GradingRow(
        id=int(r[0]),
        image_sha256=r[1],
        grader=r[2],
        retracted=bool(r[3]),
        grading=None if r[3] else grading_from_row(r),
        created_at=r[13],
    )
