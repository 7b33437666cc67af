"""The storage interface the services code against: SQLite, or a team's PostgreSQL.

Both backends implement :class:`LabelRepository` with the same queries (``label_queries.py``)
and pass the same contract tests (``tests/unit/store/test_store_contract.py``). Values in and
out are the frozen domain types, never rows or cursors.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sall_desktop.domain.grades import GraderRole, Grading, ImageRecord
from sall_desktop.domain.predictions import Prediction
from sall_desktop.store.audit import AuditEntry, ChainReport


@dataclass(frozen=True, slots=True)
class GradingRow:
    """One stored gradings row, retractions included (what ``grading_history`` leaves out).

    Attributes:
        id: the row id (increases in commit order).
        image_sha256: the image.
        grader: the grader's name.
        retracted: True for a retraction row (the grader's grading was withdrawn).
        grading: the grading saved by this row; None for a retraction.
        created_at: UTC ISO-8601.
    """

    id: int
    image_sha256: str
    grader: str
    retracted: bool
    grading: Grading | None
    created_at: str


class LabelRepository(Protocol):
    """Images, graders, append-only gradings and predictions, and the audit trail.

    Every write is one transaction that includes its audit rows; it returns only after commit
    and raises ``StoreWriteError`` (with nothing written) when it fails.

    Attributes:
        read_only: True when writes are refused (second instance, corrupt file, on request).
        read_only_reason: grader-readable reason ("" when writable).
        warnings: grader-readable warnings found at open (network share, altered audit trail).
    """

    read_only: bool
    read_only_reason: str
    warnings: list[str]

    def upsert_image(self, record: ImageRecord) -> None:
        """Add or refresh an image by SHA-256 and record its path as seen now."""
        ...

    def upsert_images(self, records: Sequence[ImageRecord]) -> None:
        """:meth:`upsert_image` for many images in one transaction."""
        ...

    def get_image(self, sha256: str) -> ImageRecord | None:
        """The image with this SHA-256 (``path`` = most recently seen), or None."""
        ...

    def list_images(self) -> list[ImageRecord]:
        """Every known image, in the order first added."""
        ...

    def image_paths(self, sha256: str) -> list[str]:
        """Every path this image was seen at, most recent first."""
        ...

    def add_grader(self, name: str, role: GraderRole = GraderRole.PRIMARY) -> None:
        """Register a named grader, or give an existing one another role."""
        ...

    def graders(self) -> list[str]:
        """Grader names in registration order."""
        ...

    def grader_roles(self, name: str) -> set[GraderRole]:
        """The roles a grader holds (empty for an unknown name)."""
        ...

    def add_grading(
        self,
        grading: Grading,
        *,
        reason: str = "",
        prediction_id: int | None = None,
        client_uuid: str | None = None,
        client_at_utc: str | None = None,
    ) -> int:
        """Append a grading and its audit rows; return the new row id after commit.

        A ``client_uuid`` already stored writes nothing and returns that row's id (a resend).
        """
        ...

    def retract_grading(
        self,
        image_sha256: str,
        grader: str,
        *,
        reason: str = "",
        client_uuid: str | None = None,
        client_at_utc: str | None = None,
    ) -> int:
        """Withdraw the grader's current grading of the image (append-only); return the row id."""
        ...

    def current_grading(self, image_sha256: str, grader: str) -> Grading | None:
        """The grader's current grading of the image, or None."""
        ...

    def current_gradings(self, *, grader: str | None = None) -> list[Grading]:
        """Every current grading (latest non-retracted per image and grader)."""
        ...

    def grading_history(self, image_sha256: str) -> list[Grading]:
        """Every grading saved for the image, oldest first, retractions left out."""
        ...

    def grading_rows(self, image_sha256: str) -> list[GradingRow]:
        """Every gradings row of the image, oldest first, retractions included."""
        ...

    def add_prediction(self, prediction: Prediction) -> int:
        """Append one prediction; return its row id."""
        ...

    def add_predictions(self, predictions: Sequence[Prediction]) -> int:
        """Append many predictions in one transaction; return how many were written."""
        ...

    def latest_prediction(
        self, image_sha256: str, model_id: str | None = None
    ) -> Prediction | None:
        """The most recent prediction for the image (of ``model_id`` if given), or None."""
        ...

    def predictions(self, *, model_id: str | None = None) -> list[Prediction]:
        """Every stored prediction (of ``model_id`` if given), oldest first."""
        ...

    def latest_predictions(
        self, model_id: str, image_sha256s: Iterable[str]
    ) -> dict[str, Prediction]:
        """The newest prediction of ``model_id`` for each of ``image_sha256s`` that has one."""
        ...

    def graded_images(self, model_id: str, image_sha256s: Iterable[str]) -> set[str]:
        """Those of ``image_sha256s`` that ``model_id`` has a prediction for."""
        ...

    def add_import_extras(self, import_id: str, extras: Mapping[str, Mapping[str, str]]) -> int:
        """Keep unknown columns of an import: image SHA-256 -> {column: value}."""
        ...

    def import_extras(self, image_sha256: str) -> dict[str, dict[str, str]]:
        """Unknown imported columns of the image: import id -> {column: value}."""
        ...

    def audit_log(self, *, image_sha256: str | None = None) -> list[AuditEntry]:
        """The audit trail in id order (of one image if given)."""
        ...

    def verify_chain(self) -> ChainReport:
        """Check the audit trail's hash chain from the first row."""
        ...

    def integrity_check(self, *, quick: bool = False) -> str:
        """ "ok", or the problems the database engine finds."""
        ...

    def get_setting(self, key: str) -> str | None:
        """A stored UI setting (not audited), or None."""
        ...

    def set_setting(self, key: str, value: str) -> None:
        """Store a UI setting (not audited)."""
        ...

    def backup_to(self, dest: Path) -> None:
        """Write a verified, consistent copy of the database to ``dest`` (replaced atomically)."""
        ...

    def close(self) -> None:
        """Release the database; a clean close marks a clean shutdown."""
        ...
