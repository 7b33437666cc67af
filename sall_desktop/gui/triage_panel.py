"""The triage queue panel (a view): an ordering chooser over the top of the queue.

Ranking is done by :mod:`sall_desktop.gui.triage_controller` with the pure functions of
:mod:`sall_desktop.services.triage`; ungradable images never appear (they need a better
photograph, not a second look)."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import (
    QComboBox,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QVBoxLayout,
    QWidget,
)

from sall_desktop.services.triage import (
    ORDER_HINTS,
    ORDER_LABELS,
    Ranked,
    TriageOrder,
)

SHOWN = 100
"""Rows listed (the queue is for the next few images, not a second grid)."""
SCORE_TEXT = {
    TriageOrder.UNCERTAINTY: "H {:.2f}",
    TriageOrder.DISAGREEMENT: "Δ{:.1f}",
    TriageOrder.REFERABLE: "P {:.2f}",
    TriageOrder.SAMPLE: "",
}
"""The score before the name, so that a narrow column elides the name's middle, never the
score (the ordering's tooltip says what the score is)."""


class _ElidingList(QListWidget):
    """A list whose rows are as wide as the list: long rows elide in the middle (a QListView
    lays rows out at their text's width and clips them; a grid size makes it elide)."""

    def __init__(self) -> None:
        super().__init__()
        self.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setUniformItemSizes(True)

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802
        super().resizeEvent(event)
        height = self.fontMetrics().height() + 4
        self.setGridSize(QSize(max(1, self.viewport().width()), height))


class TriagePanel(QWidget):
    """An ordering chooser over a short list of images."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("panel")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        layout.setSpacing(4)
        title = QLabel("TRIAGE QUEUE")
        title.setObjectName("sectionTitle")
        layout.addWidget(title)
        self.order = QComboBox()
        for order, label in ORDER_LABELS.items():
            self.order.addItem(label, order)
            self.order.setItemData(
                self.order.count() - 1, ORDER_HINTS[order], Qt.ItemDataRole.ToolTipRole
            )
        self.order.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        # The orderings' names are long: the box takes the column's width, not theirs.
        self.order.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.order.setMinimumContentsLength(12)
        self.order.currentIndexChanged.connect(
            lambda _: self.order.setToolTip(ORDER_HINTS[self.current_order()])
        )
        self.order.setToolTip(ORDER_HINTS[self.current_order()])
        layout.addWidget(self.order)
        self.list = _ElidingList()
        self.list.setObjectName("triageList")
        self.list.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        layout.addWidget(self.list, 1)
        self.summary = QLabel()
        self.summary.setObjectName("muted")
        self.summary.setWordWrap(True)
        layout.addWidget(self.summary)

    def current_order(self) -> TriageOrder:
        return TriageOrder(self.order.currentData())

    def show_ranked(
        self,
        ranked: list[Ranked],
        order: TriageOrder,
        excluded: int,
        size: int | None = None,
        *,
        file_order: bool = False,
    ) -> None:
        """Show the top of the queue; ``size`` is the whole queue's length (``len(ranked)``
        when None). ``file_order``: blind-first put the ungraded images in file order, and no
        score of the model's is shown."""
        size = len(ranked) if size is None else size
        shown = ranked[:SHOWN]
        # Rows are rewritten in place, and only where they changed: batch grading re-ranks
        # several times a second, and clearing and refilling every row costs the GUI thread
        # far more than rewriting the few that moved, while most of the top stays where it was
        # (see docs/benchmarks.md, triage).
        while self.list.count() > len(shown):
            self.list.takeItem(self.list.count() - 1)
        for position, r in enumerate(shown, 1):
            name = r.item.path.rsplit("/", 1)[-1]
            score_text = "" if file_order else SCORE_TEXT[order].format(r.score)
            text = f"{position:>3}. {score_text + '  ' if score_text else ''}{name}"
            item = self.list.item(position - 1)
            if item is None:
                item = QListWidgetItem()
                self.list.addItem(item)
            if item.text() != text:
                item.setText(text)
            if item.data(Qt.ItemDataRole.UserRole) != r.item.path:
                item.setData(Qt.ItemDataRole.UserRole, r.item.path)
                item.setToolTip(r.item.path)
        text = f"{size} image(s) in the queue"
        if excluded:
            text += f"; {excluded} ungradable kept out"
        if file_order:
            text = (
                f"Blind-first: {size} ungraded image(s) in file order; the model orders "
                "nothing you have not graded."
            )
        elif order is TriageOrder.DISAGREEMENT and not size:
            text = "Grade some images first: disagreement needs your grade."
        elif order is TriageOrder.SAMPLE:
            text += ": grading these teaches the next fine-tune most."
        else:
            text += ". For review; to teach the model, grade the random sample."
        self.summary.setText(text)
