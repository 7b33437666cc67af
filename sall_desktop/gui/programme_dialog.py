"""Programme → Set up double grading…: the QA lead's form over the programme's rules, roles and
test sets.

A view: what it shows is one :class:`~sall_desktop.services.programme_admin.ProgrammeSetup` read
on the store thread, and every change is a ``services.programme_admin`` function run there
(which checks again who may make it and audits it under the signed-in grader's name). Replies
come back through a :class:`~sall_desktop.gui.relay.Relay`; a reply to an older request is
dropped. A grader who may not change the programme sees it all disabled, with the reason.

The rules and the roles are saved together by **Apply**; a new test set and an assignment are
saved at once. After any saved change the dialog emits :attr:`ProgrammeDialog.changed` (the main
window reads its work queues again).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from sall_desktop.domain.programme import ProgrammeRole, RoutingRules
from sall_desktop.gui.geometry import remember_geometry
from sall_desktop.gui.relay import Relay
from sall_desktop.gui.theme import Theme, current_theme, theme_named
from sall_desktop.services import programme_admin as admin
from sall_desktop.services.programme_admin import ROLE_NAMES, ROLE_ORDER, ProgrammeSetup, RoleChange
from sall_desktop.services.store_executor import StoreExecutor

STANDARD_PERCENT = 10.0
"""The programme standard: at least this share of normal images is graded twice."""
NO_PROGRAMME = (
    "No programme is set up: Apply turns double grading on with these rules and makes you its "
    "first QA lead."
)
TEST_SETS_NEED_RULES = "Apply the routing rules first: test sets belong to a programme."
SCOPED_COLUMN = len(ROLE_ORDER) + 1
Saved = str | Callable[[ProgrammeSetup], str]
"""What a write says once saved (a function of the programme read after it), "" for a read."""


def _theme() -> Theme:
    app = QApplication.instance()
    return current_theme(app) if isinstance(app, QApplication) else theme_named("dark")


class NewTestSetDialog(QDialog):
    """Name, size, seed and announced or not of a test set built from final grades."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("New test set from final grades")
        self.name = QLineEdit(placeholderText="e.g. induction-2026")
        self.images = QSpinBox(minimum=0, maximum=100_000, value=50)
        self.images.setSpecialValueText("every image with a final grade")
        self.images.setToolTip("A seeded random sample of this many images with a final grade")
        self.seed = QSpinBox(minimum=0, maximum=2**31 - 1)
        self.unannounced = QCheckBox("Unannounced: mixed into the graders' first queue")
        form = QFormLayout()
        form.addRow("Name", self.name)
        form.addRow("Images", self.images)
        form.addRow("Seed of the sample", self.seed)
        form.addRow("", self.unannounced)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.create_button = buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.create_button.setText("Create")
        self.create_button.setEnabled(False)
        self.name.textChanged.connect(
            lambda text: self.create_button.setEnabled(bool(text.strip()))
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(buttons)

    def values(self) -> tuple[str, int | None, int, bool]:
        """(name, size or None for every image, seed, unannounced)."""
        size = self.images.value() or None
        return self.name.text().strip(), size, self.seed.value(), self.unannounced.isChecked()


class ProgrammeDialog(QDialog):
    """The programme of the open store, for the signed-in grader (see the module docstring)."""

    changed = Signal()
    """A change was saved: rules, roles or test sets."""

    def __init__(
        self, store: StoreExecutor, user: str | None, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Set up double grading")
        remember_geometry(self, "programme_setup", 900, 700)
        self.store, self.user = store, (user or "")
        self.setup: ProgrammeSetup | None = None
        self.added: list[str] = []  # names typed into "Add grader…", not yet in the store
        self.new_set_dialog: NewTestSetDialog | None = None
        self._relay = Relay(self)
        self._request = 0
        self._busy = False
        self._read_failed = False
        self.reason = QLabel()
        self.reason.setWordWrap(True)
        self.reason.setObjectName("programmeReason")
        self.reason.setStyleSheet(f"color: {_theme().warning}; font-weight: 600;")
        layout = QVBoxLayout(self)
        layout.addWidget(self.reason)
        layout.addWidget(self._rules_box())
        layout.addWidget(self._roles_box(), 2)
        layout.addWidget(self._tests_box(), 1)
        self.message = QLabel()
        self.message.setObjectName("programmeMessage")
        self.message.setWordWrap(True)
        self._danger = f"color: {_theme().danger}; font-weight: 600;"
        layout.addWidget(self.message)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Apply | QDialogButtonBox.StandardButton.Close
        )
        self.apply_button = buttons.button(QDialogButtonBox.StandardButton.Apply)
        self.apply_button.clicked.connect(self.apply)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        for button in self.findChildren(QPushButton):
            button.setAutoDefault(False)  # Enter in a field never applies the whole form
        self._enable()
        self.refresh()

    # ------------------------------------------------------------------ layout
    def _rules_box(self) -> QGroupBox:
        box = QGroupBox("Routing rules")
        self.fraction = QDoubleSpinBox(decimals=1, minimum=0.0, maximum=100.0, singleStep=1.0)
        self.fraction.setSuffix(" %")
        self.fraction_note = QLabel()
        self.fraction.valueChanged.connect(self._fraction_note)
        self.seed = QSpinBox(minimum=0, maximum=2**31 - 1)
        self.seed.setMinimumWidth(self.fraction.sizeHint().width())
        self.seed.setToolTip("The same seed picks the same normal images")
        self.dr_step = QSpinBox(minimum=1, maximum=4)
        self.dr_step.setSuffix(" steps")
        self.amd_step = QSpinBox(minimum=0, maximum=3)
        self.amd_step.setSuffix(" steps")
        self.amd_step.setSpecialValueText("0 (off)")
        fraction = QHBoxLayout()
        fraction.addWidget(self.fraction)
        fraction.addWidget(self.fraction_note, 1)
        form = QFormLayout(box)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.FieldsStayAtSizeHint)
        form.addRow("Normal images sent to second grading", fraction)
        form.addRow("Seed of the normal sample", self.seed)
        form.addRow("Arbitration at a DR difference of", self.dr_step)
        form.addRow("Arbitration at an AMD difference of", self.amd_step)
        self._show_rules(RoutingRules())
        return box

    def _roles_box(self) -> QGroupBox:
        box = QGroupBox("Graders and roles (everywhere)")
        header = ["Grader", *(ROLE_NAMES[r] for r in ROLE_ORDER), "In one folder only"]
        self.roles = QTableWidget(0, len(header))
        self.roles.setHorizontalHeaderLabels(header)
        self.roles.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.roles.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.roles.verticalHeader().setVisible(False)
        top = self.roles.horizontalHeader()
        top.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        for column in range(1, SCOPED_COLUMN):
            top.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        top.setStretchLastSection(True)
        self.new_grader = QLineEdit(placeholderText="Add grader… (a name not yet known)")
        self.new_grader.returnPressed.connect(self._add_typed)
        self.add_button = QPushButton("Add")
        self.add_button.clicked.connect(self._add_typed)
        add = QHBoxLayout()
        add.addWidget(self.new_grader, 1)
        add.addWidget(self.add_button)
        layout = QVBoxLayout(box)
        layout.addWidget(self.roles, 1)
        layout.addLayout(add)
        return box

    def _tests_box(self) -> QGroupBox:
        box = QGroupBox("Test sets (created and assigned at once)")
        self.tests = QTableWidget(0, 4)
        self.tests.setHorizontalHeaderLabels(["Test set", "Images", "Assigned to", "Kind"])
        self.tests.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.tests.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.tests.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.tests.verticalHeader().setVisible(False)
        self.tests.horizontalHeader().setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.tests.itemSelectionChanged.connect(self._enable)
        self.new_set_button = QPushButton("New test set from final grades…")
        self.new_set_button.clicked.connect(self._ask_new_test_set)
        self.assign_to = QComboBox()
        self.assign_to.setMinimumContentsLength(16)
        self.assign_button = QPushButton("Assign")
        self.assign_button.clicked.connect(self._assign_selected)
        self.tests_note = QLabel()
        actions = QHBoxLayout()
        actions.addWidget(self.new_set_button)
        actions.addStretch(1)
        actions.addWidget(QLabel("Assign to…"))
        actions.addWidget(self.assign_to)
        actions.addWidget(self.assign_button)
        layout = QVBoxLayout(box)
        layout.addWidget(self.tests, 1)
        layout.addWidget(self.tests_note)
        layout.addLayout(actions)
        return box

    # ------------------------------------------------------------------ reading
    def set_user(self, user: str | None) -> None:
        """The signed-in grader changed: read the programme again as them."""
        if (user or "") != self.user:
            self.user = user or ""
            self.message.clear()
            self.refresh()

    def refresh(self) -> None:
        """Read the programme on the store thread; an older reply still out is dropped."""
        self._submit(partial(admin.read_setup, user=self.user), saved="")

    def _show(self, setup: ProgrammeSetup) -> None:
        self.setup = setup
        self.added = [n for n in self.added if n not in {g.name for g in setup.graders}]
        self._show_rules(setup.rules or RoutingRules())
        self.roles.setRowCount(0)
        for grader in setup.graders:
            self._add_row(grader.name, grader.roles, grader.scoped_text())
        for name in self.added:
            self._add_row(name, frozenset(), "")
        selected = self.selected_test_set()
        self.tests.setRowCount(len(setup.test_sets))
        for row, test in enumerate(setup.test_sets):
            kind = "unannounced" if test.unannounced else "announced"
            cells = (test.name, str(test.size), ", ".join(test.graders) or "nobody yet", kind)
            for column, text in enumerate(cells):
                self.tests.setItem(row, column, QTableWidgetItem(text))
            if test.name == selected or (selected is None and row == 0):
                self.tests.selectRow(row)
        for column in (0, 1, 3):
            self.tests.resizeColumnToContents(column)
        self._fill_assign_to()
        self._enable()

    def _show_rules(self, rules: RoutingRules) -> None:
        self.fraction.setValue(rules.normal_fraction * 100.0)
        self.seed.setValue(rules.seed)
        self.dr_step.setValue(rules.dr_step)
        self.amd_step.setValue(rules.amd_step)
        self._fraction_note(self.fraction.value())

    def _fraction_note(self, value: float) -> None:
        if value < STANDARD_PERCENT:
            self.fraction_note.setText("below the programme standard of at least 10 %")
            self.fraction_note.setStyleSheet(f"color: {_theme().warning};")
        else:
            self.fraction_note.setText("the programme standard is at least 10 %")
            self.fraction_note.setStyleSheet("")

    def _add_row(self, name: str, held: frozenset[ProgrammeRole], scoped: str) -> None:
        row = self.roles.rowCount()
        self.roles.insertRow(row)
        self.roles.setItem(row, 0, QTableWidgetItem(name))
        for column, role in enumerate(ROLE_ORDER, start=1):
            item = QTableWidgetItem()
            item.setCheckState(Qt.CheckState.Checked if role in held else Qt.CheckState.Unchecked)
            item.setToolTip(f"{name}: {ROLE_NAMES[role]}")
            self.roles.setItem(row, column, item)
        self.roles.setItem(row, SCOPED_COLUMN, QTableWidgetItem(scoped))

    def _fill_assign_to(self) -> None:
        chosen = self.assign_to.currentText()
        self.assign_to.clear()
        names = [g.name for g in self.setup.graders] if self.setup else []
        self.assign_to.addItems(names + self.added)
        if chosen:
            self.assign_to.setCurrentText(chosen)

    def _enable(self) -> None:
        """Everything is disabled with the reason while the grader may not change it, and the
        actions while a request is out."""
        setup = self.setup
        editable = setup is not None and setup.may_change
        idle = editable and not self._busy
        active = setup is not None and setup.active
        if setup is None:
            self.reason.setText("" if self._read_failed else "Reading the programme…")
        elif not setup.may_change:
            self.reason.setText(setup.reason)
        else:
            self.reason.setText("" if active else NO_PROGRAMME)
        self.reason.setVisible(bool(self.reason.text()))
        for widget in (self.fraction, self.seed, self.dr_step, self.amd_step, self.new_grader):
            widget.setEnabled(editable)
        self.add_button.setEnabled(editable)
        self.apply_button.setEnabled(idle)
        flags = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsUserCheckable
        for row in range(self.roles.rowCount()):
            for column in range(SCOPED_COLUMN + 1):
                item = self.roles.item(row, column)
                if item is not None:
                    checkable = editable and 1 <= column < SCOPED_COLUMN
                    enabled = Qt.ItemFlag.ItemIsEnabled if editable else Qt.ItemFlag.NoItemFlags
                    item.setFlags(flags if checkable else enabled)
        self.new_set_button.setEnabled(idle and active)
        self.assign_to.setEnabled(editable and active)
        self.assign_button.setEnabled(
            idle and active and self.selected_test_set() is not None and self.assign_to.count() > 0
        )
        self.tests_note.setText(TEST_SETS_NEED_RULES if editable and not active else "")
        self.tests_note.setVisible(bool(self.tests_note.text()))

    # ------------------------------------------------------------------ changes
    def rules(self) -> RoutingRules:
        """The rules the form shows."""
        fraction = round(self.fraction.value() / 100.0, 4)
        stored = self.setup.rules if self.setup is not None else None
        if (
            stored is not None
            and abs(stored.normal_fraction * 100.0 - self.fraction.value()) < 0.05
        ):
            fraction = stored.normal_fraction  # shown rounded, not changed: kept as stored
        return RoutingRules(
            normal_fraction=fraction,
            seed=self.seed.value(),
            dr_step=self.dr_step.value(),
            amd_step=self.amd_step.value(),
        )

    def role_item(self, grader: str, role: ProgrammeRole) -> QTableWidgetItem | None:
        """The check box of ``grader``'s ``role`` (None when the grader is not listed)."""
        for row in range(self.roles.rowCount()):
            name = self.roles.item(row, 0)
            if name is not None and name.text() == grader:
                return self.roles.item(row, ROLE_ORDER.index(role) + 1)
        return None

    def role_changes(self) -> list[RoleChange]:
        """The boxes ticked or cleared since the last read."""
        changes = []
        for row in range(self.roles.rowCount()):
            name, *boxes = (self.roles.item(row, c) for c in range(SCOPED_COLUMN))
            if name is None:
                continue
            held = self.setup.roles_of(name.text()) if self.setup is not None else frozenset()
            for role, box in zip(ROLE_ORDER, boxes, strict=True):
                ticked = box is not None and box.checkState() == Qt.CheckState.Checked
                if ticked != (role in held):
                    changes.append(RoleChange(name.text(), role, ticked))
        return changes

    def apply(self) -> None:
        """Save the rules and the roles (Apply)."""
        if self.setup is None or not self.setup.may_change:
            return
        rules, changes, actor = self.rules(), self.role_changes(), self.user
        first = not self.setup.active
        saved = "Double grading is on; you are its QA lead." if first else "Saved."
        self._submit(
            lambda store: admin.apply_setup(store, rules, changes, actor=actor), saved=saved
        )

    def add_grader(self, name: str) -> None:
        """A row for a grader not yet known (stored once a role is ticked and applied)."""
        name = name.strip()
        known = [g.name for g in self.setup.graders] if self.setup else []
        if not name or name in known + self.added:
            self._say(f"{name} is already listed." if name else "Type the grader's name.", True)
            return
        self.added.append(name)
        self._add_row(name, frozenset(), "")
        self.assign_to.addItem(name)
        self._enable()
        self.new_grader.clear()
        self._say(f"{name} added: tick their roles, then Apply.", False)

    def _add_typed(self) -> None:
        self.add_grader(self.new_grader.text())

    def selected_test_set(self) -> str | None:
        rows = self.tests.selectionModel().selectedRows()
        item = self.tests.item(rows[0].row(), 0) if rows else None
        return item.text() if item is not None else None

    def _ask_new_test_set(self) -> None:
        self.new_set_dialog = dialog = NewTestSetDialog(self)
        dialog.accepted.connect(lambda: self.create_test_set(*dialog.values()))
        dialog.open()

    def create_test_set(
        self, name: str, size: int | None = None, seed: int = 0, unannounced: bool = False
    ) -> None:
        """Build a test set from final grades now (saved at once)."""
        actor = self.user

        def job(store: Any) -> ProgrammeSetup:
            admin.create_test_set(
                store, name, actor=actor, size=size, seed=seed, unannounced=unannounced
            )
            return admin.read_setup(store, actor)

        def saved(setup: ProgrammeSetup) -> str:
            made = next((t for t in setup.test_sets if t.name == name.strip()), None)
            images = f": {made.size} images" if made is not None else ""
            return f"Test set {name.strip()!r} created{images}; assign it to a grader."

        self._submit(job, saved=saved)

    def assign(self, name: str, grader: str) -> None:
        """Assign the test set ``name`` to ``grader`` now (saved at once)."""
        actor = self.user

        def job(store: Any) -> ProgrammeSetup:
            admin.assign_test_set(store, name, grader, actor=actor)
            return admin.read_setup(store, actor)

        self._submit(job, saved=f"Test set {name!r} assigned to {grader}.")

    def _assign_selected(self) -> None:
        name, grader = self.selected_test_set(), self.assign_to.currentText()
        if name is not None and grader:
            self.assign(name, grader)

    # ------------------------------------------------------------------ replies
    def _submit(self, job: Callable[[Any], ProgrammeSetup], *, saved: Saved) -> None:
        """Run ``job`` on the store thread; a write (``saved`` set) reports ``changed``."""
        self._request += 1
        request = self._request
        self._busy = bool(saved)
        self._enable()
        future = self.store.submit(job)
        self._relay.watch(
            future,
            lambda setup: self._done(request, setup, saved),
            lambda error: self._failed(request, error, saved),
        )

    def _done(self, request: int, setup: ProgrammeSetup, saved: Saved) -> None:
        if saved:
            self.changed.emit()  # saved, whether or not a newer request replaced this one
        if request != self._request:
            return
        self._busy = self._read_failed = False
        self._show(setup)
        if saved:
            self._say(saved if isinstance(saved, str) else saved(setup), False)

    def _failed(self, request: int, error: BaseException, saved: Saved) -> None:
        if request != self._request:
            return
        self._busy = False
        self._read_failed = self.setup is None
        what = "Not saved" if saved else "Could not read the programme"
        self._say(f"{what}: {error}", True)
        self._enable()

    def _say(self, text: str, error: bool) -> None:
        self.message.setText(" ".join(text.split()))  # one line, whatever the error's breaks
        self.message.setStyleSheet(self._danger if error else "")
