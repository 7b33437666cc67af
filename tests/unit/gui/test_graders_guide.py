"""The graders' guide keeps up with the command table: every command, with its default keys."""

from __future__ import annotations

import re
from pathlib import Path

from sall_desktop.gui.shortcuts import COMMANDS, RESERVED, UNGRADABLE_REASONS, normalize
from sall_desktop.services.triage import ORDER_LABELS

GUIDE = Path(__file__).parents[3] / "docs" / "graders-guide.md"


def _reference_rows() -> dict[str, set[str]]:
    """The keyboard reference table: command text -> its keys (normalized)."""
    text = GUIDE.read_text(encoding="utf-8")
    section = text.split("## Keyboard reference", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, set[str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 2 or cells[0] in ("keys", "---"):
            continue
        rows[cells[1]] = {normalize(k) for k in re.findall(r"\*\*(.+?)\*\*", cells[0])}
    return rows


def test_every_command_is_in_the_reference_with_all_its_default_keys() -> None:
    rows = _reference_rows()
    for command in COMMANDS:
        assert command.text in rows, f"{command.id} ({command.text}) is missing from the guide"
        missing = {normalize(k) for k in command.keys} - rows[command.text]
        assert not missing, f"{command.id}: the guide lacks {sorted(missing)}"


def test_the_reference_lists_no_command_that_does_not_exist() -> None:
    known = {c.text for c in COMMANDS} | set(RESERVED.values())
    assert set(_reference_rows()) <= known


def test_the_guide_names_every_ungradable_reason_and_the_features() -> None:
    text = GUIDE.read_text(encoding="utf-8").lower()
    for _, reason in UNGRADABLE_REASONS:
        assert reason.split(" ")[0].lower() in text, reason
    for words in (
        "your name",
        "start grading",
        "switch",
        "blind-first",
        "attention overlay",
        "random sample",
        "review:",
        "fine-tune",
        "promote",
        "roll back",
        "shortcuts",
        "undo",
        "export labels",
        "import labels",
    ):
        assert words in text, words


def test_the_guide_names_each_triage_ordering_as_the_queue_does() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    for label in ORDER_LABELS.values():
        assert f"**{label}**" in text, label
