"""The grading panel (a view): grader sign-in, DR/AMD/gradability/DME buttons, notes, save state.

It shows a :class:`~sall_desktop.domain.draft.Draft` and emits what the grader clicked;
:mod:`grading_controller` decides what that means. Buttons never take keyboard focus: the
keyboard belongs to the shortcuts.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from sall_desktop.domain.draft import Draft
from sall_desktop.domain.grades import AMD_NAMES, DME_GRADES, DR_NAMES, UngradableReason
from sall_desktop.gui.elided import ElidedLabel
from sall_desktop.gui.shortcuts import AMD_KEYS, UNGRADABLE_REASONS
from sall_desktop.gui.theme import AMD_COLOURS, DR_COLOURS, UNGRADABLE_COLOUR

SCREEN_CHROME = 110
"""Pixels of a screen's height the panel leaves to the menu bar, the banner and the status bar."""

SHORT_REASONS = {
    UngradableReason.BLUR: "Blur",
    UngradableReason.EXPOSURE: "Exposure",
    UngradableReason.ARTEFACT: "Artefact",
    UngradableReason.FIELD: "Field",
    UngradableReason.MEDIA_OPACITY: "Opacity",
    UngradableReason.OTHER: "Other",
}
"""The reason buttons' names; their tooltips and the cheat-sheet say them in full."""


def _section(text: str) -> QLabel:
    label = QLabel(text.upper())
    label.setObjectName("sectionTitle")
    return label


def _grade_button(text: str, tip: str, colour: str = "") -> QPushButton:
    button = QPushButton(text)
    button.setObjectName("gradeButton")
    if colour:  # severity colour on the left edge, as on the thumbnails' grade chips
        button.setStyleSheet(f"QPushButton#gradeButton {{ border-left-color: {colour}; }}")
    button.setCheckable(True)
    button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    button.setToolTip(tip)
    return button


class GradingPanel(QWidget):
    """Right-hand panel. All state comes in through :meth:`show_draft` and friends."""

    dr_clicked = Signal(int)
    amd_clicked = Signal(int)
    ungradable_clicked = Signal()
    reason_clicked = Signal(object)  # UngradableReason
    dme_clicked = Signal(object)  # int | None
    notes_edited = Signal(str)
    commit_clicked = Signal()
    next_ungraded_clicked = Signal()
    sign_in = Signal(str)
    switch_grader = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:  # noqa: PLR0915 - builds the widgets in reading order
        super().__init__(parent)
        self.setObjectName("panel")
        self.setMinimumWidth(270)
        body = QWidget()
        body.setObjectName("panel")
        layout = QVBoxLayout(body)
        layout.setContentsMargins(12, 4, 12, 4)
        layout.setSpacing(3)
        # Compact on purpose: the whole panel must fit a 1280x800 screen beside the menu, the
        # banner and the status bar, the reason buttons included (ADR 0009).

        # Grader: sign-in box or the signed-in name.
        self.sign_in_box = QWidget()
        sign_in = QHBoxLayout(self.sign_in_box)
        sign_in.setContentsMargins(0, 0, 0, 0)
        self.grader_name = QLineEdit()
        self.grader_name.setPlaceholderText("Your name")
        self.grader_name.setToolTip("Your name, e.g. Dr A. Patel: every grade is signed with it")
        self.sign_in_button = QPushButton("Start grading")
        self.sign_in_button.setObjectName("primary")
        sign_in.addWidget(self.grader_name, 1)
        sign_in.addWidget(self.sign_in_button)
        layout.addWidget(self.sign_in_box)
        self.grader_box = QWidget()
        grader_row = QHBoxLayout(self.grader_box)
        grader_row.setContentsMargins(0, 0, 0, 0)
        self.grader_label = ElidedLabel()
        self.grader_label.setObjectName("imageTitle")
        self.switch_button = QPushButton("Switch")
        self.switch_button.setToolTip("Sign in as another grader")
        self.switch_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.progress = QLabel()
        self.progress.setObjectName("muted")
        grader_row.addWidget(self.grader_label, 1)
        grader_row.addWidget(self.progress)
        grader_row.addWidget(self.switch_button)
        layout.addWidget(self.grader_box)
        self.notice = QLabel()
        self.notice.setObjectName("muted")
        self.notice.setWordWrap(True)
        layout.addWidget(self.notice)

        self.image_title = ElidedLabel("No image", mode=Qt.TextElideMode.ElideMiddle)
        self.image_title.setObjectName("imageTitle")
        self.image_meta = QLabel()
        self.image_meta.setObjectName("muted")
        self.image_meta.setWordWrap(True)
        self.save_state = QLabel()
        self.save_state.setObjectName("saveState")
        self.save_state.setWordWrap(True)
        # The NHS screening code of the draft or saved grade (derived from ICDR and DME) on the
        # save state's line: the panel's narrow column has no room beside the ICDR title.
        self.nhs = QLabel()
        self.nhs.setObjectName("nhsCode")
        self.nhs.hide()
        state_row = QHBoxLayout()
        state_row.setSpacing(6)
        state_row.addWidget(self.save_state, 1)
        state_row.addWidget(self.nhs, 0, Qt.AlignmentFlag.AlignVCenter)
        layout.addWidget(self.image_title)
        layout.addWidget(self.image_meta)
        layout.addLayout(state_row)
        # An arbiter's view of the image's other levels (screening programme); hidden otherwise.
        self.beside = QLabel()
        self.beside.setObjectName("besideGrades")
        self.beside.setWordWrap(True)
        self.beside.setToolTip("The image's primary and secondary gradings: you arbitrate")
        self.beside.hide()
        layout.addWidget(self.beside)

        self.controls = QWidget()
        controls = QVBoxLayout(self.controls)
        controls.setContentsMargins(0, 0, 0, 0)
        controls.setSpacing(2)
        controls.addWidget(_section("Diabetic retinopathy · ICDR"))
        self.dr_buttons = []
        for grade, name in enumerate(DR_NAMES):
            button = _grade_button(
                f"{grade}   {name}", f"DR {grade} (key {grade})", DR_COLOURS[grade]
            )
            button.clicked.connect(lambda _=False, g=grade: self.dr_clicked.emit(g))
            controls.addWidget(button)
            self.dr_buttons.append(button)
        controls.addWidget(_section("AMD"))
        self.amd_buttons = []
        for grade, name in enumerate(AMD_NAMES):
            button = _grade_button(
                f"{AMD_KEYS[grade]}   {grade} · {name}",
                f"AMD {grade} (key {AMD_KEYS[grade]})",
                AMD_COLOURS[grade],
            )
            button.clicked.connect(lambda _=False, g=grade: self.amd_clicked.emit(g))
            controls.addWidget(button)
            self.amd_buttons.append(button)
        controls.addWidget(_section("Gradability · DME"))
        self.ungradable_button = _grade_button(
            "U   Ungradable…", "Ungradable, then the reason 1-6 (key U)", UNGRADABLE_COLOUR
        )
        self.ungradable_button.clicked.connect(self.ungradable_clicked)
        controls.addWidget(self.ungradable_button)
        self.reason_box = QWidget()
        reasons = QGridLayout(self.reason_box)
        reasons.setContentsMargins(12, 0, 0, 0)
        reasons.setSpacing(2)
        self.reason_buttons: dict[UngradableReason, QPushButton] = {}
        for i, (reason, text) in enumerate(UNGRADABLE_REASONS):
            # Two columns of short names keep the panel's height when the reasons appear.
            button = _grade_button(
                f"{i + 1}  {SHORT_REASONS[reason]}", f"{text} (key {i + 1} after U)"
            )
            button.clicked.connect(lambda _=False, r=reason: self.reason_clicked.emit(r))
            reasons.addWidget(button, i // 2, i % 2)
            self.reason_buttons[reason] = button
        controls.addWidget(self.reason_box)
        dme_row = QHBoxLayout()
        dme_row.setSpacing(3)
        dme_label = QLabel("DME · M")
        dme_label.setObjectName("muted")
        dme_label.setToolTip("Diabetic macular oedema (optional): M then 0, 1 or 2")
        dme_row.addWidget(dme_label)
        self.dme_buttons = []
        for grade in DME_GRADES:
            button = _grade_button(str(grade), f"DME {grade} (M then {grade})")
            button.clicked.connect(lambda _=False, g=grade: self.dme_clicked.emit(g))
            dme_row.addWidget(button, 1)
            self.dme_buttons.append(button)
        clear = QPushButton("Clear")
        clear.setToolTip("No DME grade (Shift+M)")
        clear.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        clear.clicked.connect(lambda: self.dme_clicked.emit(None))
        dme_row.addWidget(clear)
        controls.addLayout(dme_row)
        self.notes = QPlainTextEdit()
        self.notes.setPlaceholderText("Note · N (Esc: back to grading)")
        self.notes.setFixedHeight(42)
        self.notes.setTabChangesFocus(True)
        self.notes.textChanged.connect(lambda: self.notes_edited.emit(self.notes.toPlainText()))
        controls.addWidget(self.notes)
        buttons = QHBoxLayout()
        self.commit_button = QPushButton("Save  ⏎")
        self.commit_button.setObjectName("primary")
        self.commit_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.commit_button.clicked.connect(self.commit_clicked)
        self.next_button = QPushButton("Next ungraded  G")
        self.next_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.next_button.clicked.connect(self.next_ungraded_clicked)
        buttons.addWidget(self.commit_button)
        buttons.addWidget(self.next_button)
        controls.addLayout(buttons)
        layout.addWidget(self.controls)
        layout.addStretch(1)
        self.body = body

        # Only a window smaller than the panel needs (below 1280x800) ever scrolls it.
        scroll = QScrollArea()
        scroll.setWidget(body)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)

        self.sign_in_button.clicked.connect(self.submit_sign_in)
        self.grader_name.returnPressed.connect(self.submit_sign_in)
        self.switch_button.clicked.connect(self.switch_grader)
        self.show_grader(None)
        self.reason_box.hide()

    def minimumSizeHint(self) -> QSize:  # noqa: N802
        # The window's splitter never gives the panel less than its whole content, so the grade
        # cannot scroll out of view; only on a screen too small for it does the panel scroll.
        need = self.body.sizeHint().height()
        layout = self.body.layout()
        if layout is not None and layout.hasHeightForWidth() and self.body.width() > 0:
            # Wrapped lines (an arbiter's view of the other grades) need the height they take
            # at the panel's real width, not at the width the size hint assumes.
            need = max(need, layout.totalHeightForWidth(self.body.width()))
        screen = self.screen()
        if screen is not None:
            need = min(need, screen.availableGeometry().height() - SCREEN_CHROME)
        return QSize(super().minimumSizeHint().width(), max(need, 0))

    def submit_sign_in(self) -> None:
        name = self.grader_name.text().strip()
        if name:
            self.sign_in.emit(name)

    # ------------------------------------------------------------------ state in
    def show_grader(self, name: str | None, *, read_only: bool = False) -> None:
        """Show who grades; without a name (or read-only) the grade controls are disabled."""
        self.sign_in_box.setVisible(name is None and not read_only)
        self.grader_box.setVisible(name is not None)
        self.grader_label.setText(name or "")
        self.switch_button.setEnabled(not read_only)
        self.controls.setEnabled(name is not None and not read_only)
        if read_only:
            self.notice.setText("Read-only: grades cannot be saved in this window.")
        elif name is None:
            self.notice.setText("Grades are always signed. Enter your name to start grading.")
            self.grader_name.setFocus()
        else:
            self.notice.setText("")
        self.notice.setVisible(bool(self.notice.text()))

    def show_image(self, title: str, meta: str) -> None:
        self.image_title.setText(title)
        self.image_meta.setText(meta)
        self.image_meta.setVisible(bool(meta))

    def show_draft(
        self, draft: Draft, *, reason_prompt: bool = False, dme_prompt: bool = False
    ) -> None:
        for grade, button in enumerate(self.dr_buttons):
            button.setChecked(draft.gradable and draft.dr_grade == grade)
        for grade, button in enumerate(self.amd_buttons):
            button.setChecked(draft.gradable and draft.amd_grade == grade)
        self.ungradable_button.setChecked(not draft.gradable or reason_prompt)
        reasons = not draft.gradable or reason_prompt
        if reasons != self.reason_box.isVisibleTo(self):
            self.reason_box.setVisible(reasons)
            self.updateGeometry()  # the splitter makes room for the reason buttons
        for reason, button in self.reason_buttons.items():
            button.setChecked(not draft.gradable and draft.reason is reason)
        for grade, button in enumerate(self.dme_buttons):
            button.setChecked(draft.dme == grade)
            button.setEnabled(draft.gradable)
            button.setProperty("prompt", dme_prompt)
        if self.notes.toPlainText() != draft.notes:
            self.notes.blockSignals(True)
            self.notes.setPlainText(draft.notes)
            self.notes.blockSignals(False)

    def show_nhs(self, text: str, tooltip: str) -> None:
        """The NHS code of the draft or saved grade ("" hides it); a lossy code ends in "*"."""
        self.nhs.setText(text)
        self.nhs.setToolTip(tooltip)
        self.nhs.setVisible(bool(text))

    def show_beside(self, text: str) -> None:
        """Other graders' gradings of the image (an arbiter's view); "" hides them."""
        if text == self.beside.text() and self.beside.isVisibleTo(self) == bool(text):
            return
        self.beside.setText(text)
        self.beside.setVisible(bool(text))
        self.updateGeometry()  # the splitter makes room for the lines

    def show_save_state(self, state: str, text: str) -> None:
        """``state`` is "saved", "pending", "failed", "draft" or "" (nothing to say)."""
        self.save_state.setProperty("state", state)
        self.save_state.setText(text)
        self.save_state.setVisible(bool(text))
        self.save_state.style().unpolish(self.save_state)
        self.save_state.style().polish(self.save_state)

    def show_progress(self, graded: int, total: int) -> None:
        self.progress.setText(f"{graded} / {total}" if total else "")
        self.progress.setToolTip(f"{graded} of {total} images graded by you" if total else "")
