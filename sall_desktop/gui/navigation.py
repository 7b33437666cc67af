"""Which image is current: next, previous, next ungraded, and keeping the grid selection in step."""

from __future__ import annotations

from PySide6.QtCore import QItemSelectionModel, QModelIndex, QObject, Signal
from PySide6.QtWidgets import QAbstractItemView

from sall_desktop.gui.image_model import ImageListModel, Role
from sall_desktop.services.image_entry import ImageEntry


class Navigator(QObject):
    """Owns the current image and moves through the grid's (filtered, sorted) order."""

    current_changed = Signal(object)  # ImageEntry | None

    def __init__(self, model: ImageListModel, grid: QAbstractItemView) -> None:
        super().__init__(grid)
        self.model = model
        self.grid = grid
        self.current: ImageEntry | None = None
        grid.selectionModel().currentChanged.connect(self._grid_current_changed)
        model.modelReset.connect(self._model_reset)

    def go_to(self, entry: ImageEntry | None) -> None:
        """Make ``entry`` current and select it in the grid (fetching rows up to it)."""
        if entry is self.current:
            return
        self.current = entry
        if entry is not None:
            index = self.model.index_for(entry)
            if index.isValid() and self.grid.currentIndex() != index:
                self.grid.selectionModel().setCurrentIndex(
                    index, QItemSelectionModel.SelectionFlag.ClearAndSelect
                )
                self.grid.scrollTo(index)
        self.current_changed.emit(entry)

    def step(self, delta: int) -> bool:
        """Move ``delta`` images through the grid order; False at either end."""
        if self.model.visible_count() == 0:
            return False
        position = -1 if self.current is None else self.model.position_of(self.current)
        target = self.model.entry_at(max(0, position + delta) if position >= 0 else 0)
        if target is None or target is self.current:
            return False
        self.go_to(target)
        return True

    def upcoming(self, count: int = 1) -> list[ImageEntry]:
        """The images after the current one, for pre-decoding."""
        if self.current is None:
            return []
        position = self.model.position_of(self.current)
        found = (self.model.entry_at(position + i) for i in range(1, count + 1))
        return [e for e in found if e is not None]

    def next_ungraded(self) -> bool:
        """Go to the next readable image without a grading (wrapping around); False if none."""
        total = self.model.visible_count()
        start = -1 if self.current is None else self.model.position_of(self.current)
        for offset in range(1, total + 1):
            entry = self.model.entry_at((start + offset) % total)
            if entry is not None and entry.grading is None and entry.gradable_image:
                self.go_to(entry)
                return True
        return False

    def _grid_current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        entry = current.data(Role.ENTRY) if current.isValid() else None
        if isinstance(entry, ImageEntry) and entry is not self.current:
            self.current = entry
            self.current_changed.emit(entry)

    def _model_reset(self) -> None:
        # A new filter or sort: keep the current image selected if it is still shown.
        if self.current is not None and self.model.position_of(self.current) >= 0:
            index = self.model.index_for(self.current)
            self.grid.selectionModel().setCurrentIndex(
                index, QItemSelectionModel.SelectionFlag.ClearAndSelect
            )
            self.grid.scrollTo(index)
