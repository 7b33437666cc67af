"""The image list model: every image of the open folder, filtered and sorted, grown in batches.

Rows appear as soon as the scan finds files (identity and metadata arrive later, as dataChanged),
the view fetches rows in batches through ``canFetchMore``/``fetchMore``, and thumbnails are asked
for only when a row is painted and delivered later as ``dataChanged`` on ``DecorationRole``, so
a folder of tens of thousands of images never decodes what nobody looks at.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from PySide6.QtCore import QAbstractListModel, QModelIndex, QPersistentModelIndex, Qt, Signal
from PySide6.QtGui import QImage

from sall_desktop.domain.grades import Grading, Laterality
from sall_desktop.services.catalogue import DescribedFile, FoundFile
from sall_desktop.services.grading import SaveState
from sall_desktop.services.image_entry import (
    ImageEntry,
    ImageFilter,
    SortKey,
    describe_grading,
)
from sall_desktop.services.inference import PredictionSummary
from sall_desktop.services.workspace import Workspace

FETCH_BATCH = 200
THUMBNAIL_MEMORY_ITEMS = 1500
"""Thumbnails kept as QImages; older ones are re-read from the disk cache when scrolled back to."""

AnyIndex = QModelIndex | QPersistentModelIndex


class Role(enum.IntEnum):
    ENTRY = Qt.ItemDataRole.UserRole + 1
    SHA256 = Qt.ItemDataRole.UserRole + 2
    PATH = Qt.ItemDataRole.UserRole + 3
    SAVE_STATE = Qt.ItemDataRole.UserRole + 4
    GRADING = Qt.ItemDataRole.UserRole + 5
    ERROR = Qt.ItemDataRole.UserRole + 6


class ImageListModel(QAbstractListModel):
    """Flat list of :class:`ImageEntry` rows with filter, sort and incremental fetching.

    Args:
        request_thumbnail: called (GUI thread) with an entry whose thumbnail is needed; the
            result comes back through :meth:`set_thumbnails`.
        batch: rows added per ``fetchMore``.
    """

    more_available = Signal()
    """Rows exist beyond ``rowCount``: a view scrolled to its end should fetch them."""
    entries_changed = Signal()
    """Counts changed (rows found, described or graded): status bars recount."""
    records_added = Signal(list)
    """SHA-256s of images whose records just arrived (the model's stored outputs are read)."""
    work_changed = Signal()
    """Another work queue was chosen (the triage queue follows it)."""

    def __init__(
        self,
        request_thumbnail: Callable[[ImageEntry], None] | None = None,
        *,
        batch: int = FETCH_BATCH,
        parent: Any = None,
    ) -> None:
        super().__init__(parent)
        self._request_thumbnail = request_thumbnail
        self._batch = batch
        self.workspace = Workspace()
        self.blind_rule = self.workspace.blind_rule  # one blind-first rule for every view
        self._fetched = 0
        self._inserting = False
        self._thumbs: OrderedDict[str, QImage] = OrderedDict()
        self._requested: set[str] = set()
        self._placeholder = QImage()

    # ------------------------------------------------------------------ Qt model API
    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else self._fetched

    def canFetchMore(self, parent: AnyIndex) -> bool:  # noqa: N802
        return (
            not parent.isValid()
            and not self._inserting
            and self._fetched < len(self.workspace.order)
        )

    def fetchMore(self, parent: AnyIndex) -> None:  # noqa: N802
        if parent.isValid() or self._inserting:
            return  # views may ask again from inside rowsAboutToBeInserted: one insert at a time
        first = self._fetched
        last = min(len(self.workspace.order), first + self._batch) - 1  # inclusive, as Qt wants
        if last < first:
            return
        self._inserting = True
        try:
            self.beginInsertRows(QModelIndex(), first, last)
            self._fetched = last + 1
            self.endInsertRows()
        finally:
            self._inserting = False

    def flags(self, index: AnyIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return (
            Qt.ItemFlag.ItemIsEnabled
            | Qt.ItemFlag.ItemIsSelectable
            | Qt.ItemFlag.ItemNeverHasChildren
        )

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or index.row() >= self._fetched:
            return None
        entry = self.workspace.order[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return entry.name
        if role == Qt.ItemDataRole.DecorationRole:
            return self._thumbnail(entry)
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(entry)
        if role == Role.ENTRY:
            return entry
        if role == Role.SHA256:
            return entry.sha256
        if role == Role.PATH:
            return entry.path
        if role == Role.SAVE_STATE:
            return None if entry.save_state is None else str(entry.save_state)
        if role == Role.GRADING:
            return entry.grading
        if role == Role.ERROR:
            return entry.error or entry.thumbnail_error
        return None

    # ------------------------------------------------------------------ content
    def clear(self) -> None:
        self.beginResetModel()
        self.workspace.clear()
        self._fetched = 0
        self._thumbs.clear()
        self._requested.clear()
        self._end_reset()
        self.entries_changed.emit()

    def add_found(self, found: Iterable[FoundFile]) -> None:
        """Append newly found files (rows become visible through fetchMore)."""
        if not self.workspace.add_found(found):
            return
        # The first screen fills itself; later rows wait for the view to scroll to them.
        if self._fetched < self._batch and self.canFetchMore(QModelIndex()):
            self.fetchMore(QModelIndex())
        if self.canFetchMore(QModelIndex()):
            self.more_available.emit()
        self.entries_changed.emit()

    def add_described(self, described: Iterable[DescribedFile]) -> list[ImageEntry]:
        """Attach records (or read errors) to their rows; return the entries updated."""
        updated, recorded = self.workspace.add_described(described)
        for entry in updated:
            self._row_changed(entry)
        if updated:
            self.entries_changed.emit()
        if recorded:
            self.records_added.emit(recorded)
        return updated

    def set_gradings(self, gradings: dict[str, Grading]) -> None:
        """Set every entry's current grading from the store (a grader signed in)."""
        self.workspace.set_gradings(gradings)
        self._all_rows_changed()
        self.entries_changed.emit()

    def set_grading(
        self, sha256: str, grading: Grading | None, state: SaveState | None, test_set: str = ""
    ) -> None:
        """An image's grading (``test_set``: the grader's answer in that test set) changed."""
        for entry in self.workspace.set_grading(sha256, grading, state, test_set):
            self._row_changed(entry)
        self.entries_changed.emit()

    def set_test_items(self, test_of: Callable[[ImageEntry], str] | None) -> None:
        """Which test set an entry is a test item of now (``services/test_queue.py``): such an
        entry shows the grader's answer in it instead of their grading."""
        self.workspace.test_of = test_of
        self.show_gradings()

    def set_test_answers(self, answers: Mapping[tuple[str, str], Grading]) -> None:
        """The grader's answers to test items, by (test set, image)."""
        self._rows_changed(self.workspace.set_test_answers(answers))

    def show_gradings(self) -> None:
        """Show each entry's grading or test answer again (the test items changed)."""
        self._rows_changed(self.workspace.show_gradings())

    def _rows_changed(self, entries: list[ImageEntry]) -> None:
        for entry in entries:
            self._row_changed(entry)
        if entries:
            self.entries_changed.emit()

    def set_save_state(self, sha256: str, state: SaveState) -> None:
        for entry in self.workspace.set_save_state(sha256, state):
            self._row_changed(entry)

    def set_thumbnails(self, images: Iterable[tuple[str, QImage]]) -> None:
        for sha, image in images:
            self._requested.discard(sha)
            self._thumbs[sha] = image
            self._thumbs.move_to_end(sha)
            for entry in self.workspace.entries_with_sha(sha):
                self._entry_changed(entry, [Qt.ItemDataRole.DecorationRole])
        while len(self._thumbs) > THUMBNAIL_MEMORY_ITEMS:
            self._thumbs.popitem(last=False)

    def set_thumbnail_errors(self, errors: Iterable[tuple[str, str]]) -> None:
        for sha, message in errors:
            self._requested.discard(sha)
            for entry in self.workspace.entries_with_sha(sha):
                entry.thumbnail_error = message
                self._entry_changed(entry)

    def forget_thumbnail_requests(self) -> None:
        """Requests were cancelled (e.g. the thumbnail size changed): ask again when painted."""
        self._requested.clear()
        self._thumbs.clear()
        if self._fetched:
            self.dataChanged.emit(
                self.index(0),
                self.index(self._fetched - 1),
                [Qt.ItemDataRole.DecorationRole],
            )

    # ------------------------------------------------------------------ model output
    def set_predictions(self, predictions: dict[str, PredictionSummary]) -> None:
        """Replace the active model's predictions (a model was loaded)."""
        self.workspace.set_predictions(predictions)
        self._all_rows_changed()

    def add_predictions(self, predictions: Iterable[PredictionSummary]) -> None:
        """Add new model outputs: one ``dataChanged`` spans the changed rows that are shown
        (batch grading delivers a few hundred at a time)."""
        rows = [self.workspace.position_of(e) for e in self.workspace.add_predictions(predictions)]
        shown = [row for row in rows if 0 <= row < self._fetched]
        if shown:
            self.dataChanged.emit(self.index(min(shown)), self.index(max(shown)))

    def prediction(self, sha256: str) -> PredictionSummary | None:
        return self.workspace.prediction(sha256)

    def predictions(self) -> dict[str, PredictionSummary]:
        return self.workspace.predictions()

    @property
    def blind(self) -> bool:
        """Blind-first: the model's output is hidden for every image the grader has not graded."""
        return self.blind_rule.on

    def set_blind(self, blind: bool) -> None:
        if self.workspace.set_blind(blind):
            self._all_rows_changed()

    def set_withheld(
        self, images: Iterable[str] | None, reason: str, reasons: Mapping[str, str] | None = None
    ) -> bool:
        """Withhold the model's output of ``images`` (None: every image) whatever is graded
        (second grading is blind, test items); ``reasons``: some images' own reason. True when
        that changed what may be shown."""
        if not self.workspace.set_withheld(images, reason, reasons):
            return False
        self._all_rows_changed()
        return True

    def shown_prediction(self, entry: ImageEntry) -> PredictionSummary | None:
        """The model output a tile may show (None while blind-first hides it)."""
        return self.workspace.shown_prediction(entry)

    def _all_rows_changed(self) -> None:
        if self._fetched:
            self.dataChanged.emit(self.index(0), self.index(self._fetched - 1))

    # ------------------------------------------------------------------ filter / sort
    @property
    def image_filter(self) -> ImageFilter:
        return self.workspace.image_filter

    @property
    def sort_key(self) -> SortKey:
        return self.workspace.sort

    def set_view(
        self, image_filter: ImageFilter | None = None, sort: SortKey | None = None
    ) -> None:
        """Re-filter and re-sort every entry (a model reset)."""
        self.beginResetModel()
        self.workspace.set_view(image_filter, sort)
        self._fetched = min(len(self.workspace.order), self._batch)
        self._end_reset()
        if self.canFetchMore(QModelIndex()):
            self.more_available.emit()

    def set_work(self, work: Callable[[ImageEntry], bool] | None) -> None:
        """Show only the images of the grader's work queue (None: every image); the rows are
        reset only when that changes which images are shown."""
        if work is None and self.workspace.work is None:
            return
        changed = work is not self.workspace.work
        self.workspace.work = work
        shown = {id(e) for e in self.workspace.filtered()}
        if shown != {id(e) for e in self.workspace.order}:
            self.set_view()
        if changed:
            self.work_changed.emit()

    # ------------------------------------------------------------------ queries
    def entries(self) -> list[ImageEntry]:
        """All entries of the folder, in scan order (not only the filtered ones)."""
        return self.workspace.entries()

    def in_work(self, entry: ImageEntry) -> bool:
        """The grader's chosen work queue holds ``entry`` (every image when none is chosen)."""
        work = self.workspace.work
        return work is None or (entry.record is not None and work(entry))

    def visible_count(self) -> int:
        """Rows that pass the filter (fetched or not)."""
        return len(self.workspace.order)

    def entry_at(self, position: int) -> ImageEntry | None:
        """The entry at a filtered position (fetched or not)."""
        order = self.workspace.order
        return order[position] if 0 <= position < len(order) else None

    def position_of(self, entry: ImageEntry) -> int:
        """The filtered position of ``entry``, or -1 when the filter hides it."""
        return self.workspace.position_of(entry)

    def entries_with_sha(self, sha256: str) -> list[ImageEntry]:
        return self.workspace.entries_with_sha(sha256)

    def entry_for_path(self, path: str) -> ImageEntry | None:
        return self.workspace.entry_for_path(path)

    def index_for(self, entry: ImageEntry) -> QModelIndex:
        """The model index of ``entry``, fetching rows up to it first; invalid when filtered out."""
        position = self.position_of(entry)
        if position < 0:
            return QModelIndex()
        while position >= self._fetched and self.canFetchMore(QModelIndex()):
            self.fetchMore(QModelIndex())
        return self.index(position)

    def partner_of(self, entry: ImageEntry) -> ImageEntry | None:
        """The other eye of the same patient (same study date preferred), if the folder has it."""
        return self.workspace.partner_of(entry)

    # ------------------------------------------------------------------ internals
    def _end_reset(self) -> None:
        # Listeners of modelReset (Qt's model tester among them) may call fetchMore while the
        # reset is still being announced; growing then would nest an insert inside the reset.
        self._inserting = True
        try:
            self.endResetModel()
        finally:
            self._inserting = False

    def _entry_changed(self, entry: ImageEntry, roles: list[int] | None = None) -> None:
        entry.version += 1  # the painted tile is stale
        self._row_changed(entry, roles)

    def _row_changed(self, entry: ImageEntry, roles: list[int] | None = None) -> None:
        row = self.workspace.position_of(entry)
        if 0 <= row < self._fetched:
            index = self.index(row)
            if roles is None:
                self.dataChanged.emit(index, index)
            else:
                self.dataChanged.emit(index, index, roles)

    def row_entry(self, row: int) -> ImageEntry | None:
        """The entry shown at ``row`` (a fetched row), for delegates that paint many rows."""
        return self.workspace.order[row] if 0 <= row < self._fetched else None

    def thumbnail(self, entry: ImageEntry) -> QImage | None:
        """The entry's thumbnail if loaded; otherwise asks for it and returns None."""
        image = self._thumbnail(entry)
        return None if image.isNull() else image

    def _thumbnail(self, entry: ImageEntry) -> QImage:
        sha = entry.sha256
        if not sha or entry.error:
            return self._placeholder
        image = self._thumbs.get(sha)
        if image is not None:
            self._thumbs.move_to_end(sha)
            return image
        if sha not in self._requested and not entry.thumbnail_error and self._request_thumbnail:
            self._requested.add(sha)
            self._request_thumbnail(entry)
        return self._placeholder

    def _tooltip(self, entry: ImageEntry) -> str:
        lines = [entry.path]
        record = entry.record
        if entry.error:
            lines.append(f"Cannot be shown: {entry.error}")
        elif record is None:
            lines.append("Reading…")
        else:
            lines.append(f"{record.width}×{record.height} {record.file_format.upper()}")
            if record.patient_id:
                lines.append(f"Patient {record.patient_id}")
            if record.laterality in (Laterality.LEFT, Laterality.RIGHT):
                eye = "Right eye (OD)" if record.laterality is Laterality.RIGHT else "Left eye (OS)"
                lines.append(f"{eye}, from {record.laterality_source or 'unknown source'}")
            lines.append(describe_grading(entry.grading))
        if entry.duplicate_of:
            lines.append(f"Duplicate of {entry.duplicate_of}")
        if entry.thumbnail_error:
            lines.append(entry.thumbnail_error)
        return "\n".join(lines)
