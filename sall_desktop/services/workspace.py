"""The open folder as the workstation knows it: every image found, what its scan read, the signed-in
grader's grades and their save states, the active model's outputs, and the grader's filter and
sort. Qt-free: ``gui.image_model.ImageListModel`` adapts it to Qt's list model, and every change
returns the entries it touched so the adapter repaints only those rows.

An image that is a test item now (:attr:`Workspace.test_of`, ``services/test_queue.py``) shows
the grader's answer in its test set instead of their grading: a test answer is kept apart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from sall_desktop.domain.grades import Grading, Laterality
from sall_desktop.services.blind_first import BlindFirst
from sall_desktop.services.catalogue import DescribedFile, FoundFile
from sall_desktop.services.grading import SaveState
from sall_desktop.services.image_entry import ImageEntry, ImageFilter, SortKey, sort_key
from sall_desktop.services.inference import PredictionSummary


class Workspace:
    """The open folder's images and what is known of each."""

    def __init__(self) -> None:
        self._entries: list[ImageEntry] = []
        self._by_path: dict[str, ImageEntry] = {}
        self._by_sha: dict[str, list[ImageEntry]] = {}
        self._by_patient: dict[str, list[ImageEntry]] = {}
        self.order: list[ImageEntry] = []
        """The entries the filter accepts, in the chosen sort (the grid's rows)."""
        self._row_of: dict[int, int] = {}
        self.image_filter = ImageFilter()
        self.sort = SortKey.PATH
        self.work: Callable[[ImageEntry], bool] | None = None
        """The grader's chosen work queue (``services/work_queue.py``): None shows every image;
        otherwise only the described entries it accepts, beside the filter."""
        # The signed-in grader's current gradings by image, also for images described later,
        # their answers to test items by (test set, image), and the images whose writes are not
        # all committed (pending or failed; an image with none is saved).
        self._gradings: dict[str, Grading] = {}
        self._answers: dict[tuple[str, str], Grading] = {}
        self._states: dict[str, SaveState] = {}
        self.test_of: Callable[[ImageEntry], str] | None = None
        """The test set an entry is a test item of now ("" for none): it shows the answer."""
        # The active model's predictions by image; blind-first hides some of them.
        self._predictions: dict[str, PredictionSummary] = {}
        self.blind_rule = BlindFirst()

    # ------------------------------------------------------------------ the folder
    def clear(self) -> None:
        """Another folder: forget its images; saves still pending or failed are kept."""
        self._entries, self.order, self._row_of = [], [], {}
        self._by_path, self._by_sha, self._by_patient = {}, {}, {}

    def add_found(self, found: Iterable[FoundFile]) -> list[ImageEntry]:
        """Add newly found files (a path seen before is skipped); return the new entries."""
        added = []
        for item in found:
            path = str(item.path)
            if path in self._by_path:
                continue
            entry = self._new_entry(path)
            if self.accepts(entry):
                self._append_row(entry)
            added.append(entry)
        return added

    def add_described(
        self, described: Iterable[DescribedFile]
    ) -> tuple[list[ImageEntry], list[str]]:
        """Attach records (or read errors) to their entries.

        Returns:
            The entries updated, and the SHA-256s of those whose record arrived.
        """
        updated, recorded = [], []
        for item in described:
            entry = self._by_path.get(str(item.found.path))
            if entry is None:  # described before it was reported found
                entry = self._new_entry(str(item.found.path))
                if self.work is None:  # a work queue shows it when the queue is read again
                    self._append_row(entry)
            entry.record = item.record
            entry.error = item.error or ""
            entry.duplicate_of = str(item.duplicate_of) if item.duplicate_of else ""
            if item.record is not None:
                sha = item.record.sha256
                recorded.append(sha)
                self._by_sha.setdefault(sha, []).append(entry)
                if item.record.patient_id:
                    self._by_patient.setdefault(item.record.patient_id, []).append(entry)
                self._show(entry)
            entry.version += 1
            updated.append(entry)
        return updated, recorded

    # ------------------------------------------------------------------ grades
    def set_gradings(self, gradings: dict[str, Grading]) -> None:
        """Every entry's current grading from the store (a grader signed in)."""
        self._gradings = dict(gradings)
        self._states.clear()
        for entry in self._entries:
            self._show(entry)
            entry.version += 1

    def set_test_answers(self, answers: Mapping[tuple[str, str], Grading]) -> list[ImageEntry]:
        """The grader's answers to test items by (test set, image); return the entries whose
        shown grading changed."""
        self._answers = dict(answers)
        return self.show_gradings()

    def show_gradings(self) -> list[ImageEntry]:
        """Show each entry's grading or test answer again (which images are test items
        changed); return the entries that changed."""
        return [entry for entry in self._entries if self._show(entry)]

    def set_grading(
        self, sha256: str, grading: Grading | None, state: SaveState | None, test_set: str = ""
    ) -> list[ImageEntry]:
        """An image's grading (with ``test_set``: the answer in that set) changed (``None``: it
        has none now); return its entries."""
        if test_set:
            key = (test_set, sha256)
            if grading is None:
                self._answers.pop(key, None)
            else:
                self._answers[key] = grading
        elif grading is None:
            self._gradings.pop(sha256, None)
        else:
            self._gradings[sha256] = grading
        self._set_state(sha256, state)
        entries = self._by_sha.get(sha256, [])
        for entry in entries:
            self._show(entry)
            entry.version += 1
        return list(entries)

    def set_save_state(self, sha256: str, state: SaveState) -> list[ImageEntry]:
        """A write of the image's grading changed state; return the entries whose state changed."""
        self._set_state(sha256, state)
        return [entry for entry in self._by_sha.get(sha256, ()) if self._show(entry)]

    def _set_state(self, sha256: str, state: SaveState | None) -> None:
        if state is None or state is SaveState.SAVED:
            self._states.pop(sha256, None)  # every write of the image is committed
        else:
            self._states[sha256] = state

    def _show(self, entry: ImageEntry) -> bool:
        """Set the entry's grading (or test answer) and save state; True when they changed."""
        sha = entry.sha256
        grading: Grading | None = None
        if sha:
            test_set = self.test_of(entry) if self.test_of is not None else ""
            grading = self._answers.get((test_set, sha)) if test_set else self._gradings.get(sha)
        state = self._states.get(sha)
        if state is None and grading is not None:
            state = SaveState.SAVED
        # (a saved write that left no grade — the undo of a first grade — is not "saved")
        if entry.grading is grading and entry.save_state is state:
            return False
        entry.grading, entry.save_state = grading, state
        entry.version += 1
        return True

    # ------------------------------------------------------------------ model output
    def set_predictions(self, predictions: dict[str, PredictionSummary]) -> None:
        """Replace the active model's predictions (a model was loaded)."""
        self._predictions = dict(predictions)
        self._touch_all()

    def add_predictions(self, predictions: Iterable[PredictionSummary]) -> list[ImageEntry]:
        """Add new model outputs; return the entries they belong to."""
        touched = []
        for summary in predictions:
            self._predictions[summary.sha256] = summary
            for entry in self._by_sha.get(summary.sha256, ()):
                entry.version += 1
                touched.append(entry)
        return touched

    def prediction(self, sha256: str) -> PredictionSummary | None:
        return self._predictions.get(sha256)

    def predictions(self) -> dict[str, PredictionSummary]:
        return dict(self._predictions)

    def set_blind(self, blind: bool) -> bool:
        """Turn blind-first on or off; True when that changed what may be shown."""
        if blind == self.blind_rule.on:
            return False
        self.blind_rule.on = blind
        self._touch_all()
        return True

    def set_withheld(
        self, images: Iterable[str] | None, reason: str, reasons: Mapping[str, str] | None = None
    ) -> bool:
        """Withhold the model's output of ``images`` (None: every image) whatever is graded
        (:meth:`BlindFirst.withhold`); True when that changed what may be shown."""
        if not self.blind_rule.withhold(images, reason, reasons):
            return False
        self._touch_all()
        return True

    def shown_prediction(self, entry: ImageEntry) -> PredictionSummary | None:
        """The model output a view may show for ``entry`` (None while blind-first hides it)."""
        if not self.blind_rule.shows(entry.sha256, graded=entry.grading is not None):
            return None
        return self._predictions.get(entry.sha256)

    # ------------------------------------------------------------------ filter and sort
    def set_view(
        self, image_filter: ImageFilter | None = None, sort: SortKey | None = None
    ) -> None:
        """Filter and sort every entry again."""
        if image_filter is not None:
            self.image_filter = image_filter
        if sort is not None:
            self.sort = sort
        order = self.filtered()
        if self.sort is not SortKey.PATH:
            order.sort(key=sort_key(self.sort))
        self.order = order
        self._row_of = {id(e): i for i, e in enumerate(order)}

    def accepts(self, entry: ImageEntry) -> bool:
        """The filter and the work queue both show ``entry``."""
        if self.work is not None and (entry.record is None or not self.work(entry)):
            return False
        return self.image_filter.accepts(entry)

    def filtered(self) -> list[ImageEntry]:
        """The entries the filter and the work queue show, in scan order."""
        return [e for e in self._entries if self.accepts(e)]

    # ------------------------------------------------------------------ queries
    def entries(self) -> list[ImageEntry]:
        """All entries of the folder, in scan order (not only the filtered ones)."""
        return list(self._entries)

    def position_of(self, entry: ImageEntry) -> int:
        """The filtered position of ``entry``, or -1 when the filter hides it."""
        return self._row_of.get(id(entry), -1)

    def entries_with_sha(self, sha256: str) -> list[ImageEntry]:
        return list(self._by_sha.get(sha256, ()))

    def entry_for_path(self, path: str) -> ImageEntry | None:
        return self._by_path.get(path)

    def partner_of(self, entry: ImageEntry) -> ImageEntry | None:
        """The other eye of the same patient (same study date preferred), if the folder has it."""
        record = entry.record
        if (
            record is None
            or not record.patient_id
            or record.laterality not in (Laterality.LEFT, Laterality.RIGHT)
        ):
            return None
        other = Laterality.LEFT if record.laterality is Laterality.RIGHT else Laterality.RIGHT
        candidates = [
            e
            for e in self._by_patient.get(record.patient_id, ())
            if e.record is not None
            and e.record.patient_id == record.patient_id
            and e.record.laterality is other
            and not e.error
        ]
        if not candidates:
            return None
        same_day = [
            e
            for e in candidates
            if e.record is not None and e.record.study_date == record.study_date
        ]
        return (same_day or candidates)[0]

    # ------------------------------------------------------------------ internals
    def _new_entry(self, path: str) -> ImageEntry:
        entry = ImageEntry(path, index=len(self._entries))
        self._entries.append(entry)
        self._by_path[path] = entry
        return entry

    def _append_row(self, entry: ImageEntry) -> None:
        self._row_of[id(entry)] = len(self.order)
        self.order.append(entry)

    def _touch_all(self) -> None:
        for entry in self._entries:
            entry.version += 1


__all__ = ["Workspace"]
