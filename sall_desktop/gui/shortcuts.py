"""Keyboard-first grading: every command, its default keys and its cheat-sheet text in one table.

The same table builds the window's actions, the F1 cheat-sheet and the shortcut editor, so they
can never disagree. Keys are chosen for one hand on the keyboard: DR on the digit row, AMD on the
row beneath (Q W E R = 0 1 2 3), prefix keys for the rarer answers (U then a reason digit, M then
a DME digit).
"""

from __future__ import annotations

from dataclasses import dataclass

from sall_desktop.domain.draft import REASON_ORDER
from sall_desktop.domain.grades import AMD_NAMES, DR_NAMES, UngradableReason


@dataclass(frozen=True, slots=True)
class Command:
    """One keyboard command.

    Args:
        id: stable id (settings key, object name of the QAction).
        text: what it does, shown in menus and the cheat-sheet.
        keys: default key sequences (first is the primary one), portable text form.
        group: cheat-sheet section.
    """

    id: str
    text: str
    keys: tuple[str, ...]
    group: str


REASON_TEXT = {
    UngradableReason.BLUR: "Blur / out of focus",
    UngradableReason.EXPOSURE: "Under- or over-exposed",
    UngradableReason.ARTEFACT: "Artefact (eyelash, dust)",
    UngradableReason.FIELD: "Field not adequate",
    UngradableReason.MEDIA_OPACITY: "Media opacity (cataract)",
    UngradableReason.OTHER: "Other",
}

UNGRADABLE_REASONS: tuple[tuple[UngradableReason, str], ...] = tuple(
    (reason, REASON_TEXT[reason]) for reason in REASON_ORDER
)
"""Reasons with their names, in the order of their digit (1-6) after the Ungradable key (the
order is the domain's key grammar, :data:`~sall_desktop.domain.draft.REASON_ORDER`)."""

AMD_KEYS = ("Q", "W", "E", "R")

COMMANDS: tuple[Command, ...] = (
    *(
        Command(f"dr_{g}", f"DR {g} — {name}", (str(g),), "Grade")
        for g, name in enumerate(DR_NAMES)
    ),
    *(
        Command(f"amd_{g}", f"AMD {g} — {name}", (AMD_KEYS[g],), "Grade")
        for g, name in enumerate(AMD_NAMES)
    ),
    Command("ungradable", "Ungradable… then 1–6 for the reason", ("U",), "Grade"),
    # 1-4 reach the reasons through the DR commands; 5 and 6 have no DR grade to ride on.
    Command("reason_5", "After U: reason 5 — media opacity", ("5",), "Grade"),
    Command("reason_6", "After U: reason 6 — other", ("6",), "Grade"),
    Command("dme", "DME… then 0–2 (Shift+M clears)", ("M",), "Grade"),
    Command("clear_dme", "Clear DME", ("Shift+M",), "Grade"),
    Command("notes", "Write a note", ("N",), "Grade"),
    Command("commit", "Save the grading now", ("Return", "Enter"), "Grade"),
    Command("discard", "Cancel the unsaved draft / prefix", ("Escape",), "Grade"),
    Command("undo", "Undo", ("Ctrl+Z",), "Grade"),
    Command("redo", "Redo", ("Ctrl+Shift+Z", "Ctrl+Y"), "Grade"),
    Command("next", "Next image", ("Right", "PgDown", "Space"), "Navigate"),
    Command("previous", "Previous image", ("Left", "PgUp", "Shift+Space"), "Navigate"),
    Command("next_ungraded", "Next ungraded image", ("G",), "Navigate"),
    Command("fit", "Fit to window", ("F",), "View"),
    Command("actual_size", "Actual pixels (1:1)", ("O",), "View"),
    Command("zoom_in", "Zoom in", ("+", "="), "View"),
    Command("zoom_out", "Zoom out", ("-",), "View"),
    Command("pan_left", "Pan left", ("Shift+Left",), "View"),
    Command("pan_right", "Pan right", ("Shift+Right",), "View"),
    Command("pan_up", "Pan up", ("Shift+Up",), "View"),
    Command("pan_down", "Pan down", ("Shift+Down",), "View"),
    Command("cycle_enhancement", "Cycle look: original → red-free → CLAHE → both", ("V",), "View"),
    Command(
        "reset_enhancement",
        "Original look (reset gamma, brightness, contrast)",
        ("Shift+V",),
        "View",
    ),
    Command("toggle_pair", "Show both eyes side by side", ("B",), "View"),
    Command("toggle_overlay", "Show / hide the attention overlay", ("A",), "Model"),
    Command("cycle_overlay_head", "Attention overlay: next head (DR / AMD)", ("Shift+A",), "Model"),
    Command("grade_folder", "Grade the folder with the model", ("Ctrl+G",), "Model"),
    Command("cancel_grading", "Cancel batch grading", ("Ctrl+Shift+G",), "Model"),
    Command("toggle_blind", "Blind-first: hide the model until you grade", ("Ctrl+B",), "Model"),
    Command("models", "Models…", ("Ctrl+Shift+M",), "Model"),
    Command("finetune", "Fine-tune…", ("Ctrl+Shift+T",), "Model"),
    Command("open_folder", "Open folder…", ("Ctrl+O",), "File"),
    Command("export", "Export labels…", ("Ctrl+E",), "File"),
    Command("import", "Import labels…", ("Ctrl+I",), "File"),
    Command("settings", "Settings…", ("Ctrl+,",), "File"),
    Command("retry", "Retry saving now", ("Ctrl+R",), "File"),
    Command("grader_report", "Grader quality report…", ("Ctrl+Shift+R",), "Programme"),
    Command("programme_setup", "Set up double grading…", (), "Programme"),
    Command("cheat_sheet", "Keyboard shortcuts", ("F1",), "Help"),
)

COMMANDS_BY_ID = {c.id: c for c in COMMANDS}


# ---------------------------------------------------------------------- conflicts
# Kept free of Qt so the rule is unit-tested on plain strings; the Settings page only shows it.

PREFIX_ANSWERS: dict[str, tuple[str, ...]] = {
    "ungradable": tuple(str(i) for i in range(1, len(UNGRADABLE_REASONS) + 1)),
    "dme": ("0", "1", "2"),
}
"""Plain keys that answer a prefix command (U then a reason digit, M then a DME digit)."""

ANSWER_COMMANDS = frozenset(
    [f"dr_{g}" for g in range(len(DR_NAMES))]
    + [f"reason_{r}" for r in range(len(DR_NAMES), len(UNGRADABLE_REASONS) + 1)]
)
"""The digit commands: they deliver the prefix answers, so they may hold the answer digits."""

RESERVED: dict[str, str] = {"Ctrl+Q": "Quit"}
"""Keys the window binds outside the command table (the standard Quit)."""

_MODIFIERS = ("ctrl", "alt", "shift", "meta")
_MODIFIER_ALIASES = {"control": "ctrl", "option": "alt", "cmd": "meta", "win": "meta"}
_KEY_ALIASES = {
    "escape": "esc",
    "page down": "pgdown",
    "pagedown": "pgdown",
    "pgdn": "pgdown",
    "page up": "pgup",
    "pageup": "pgup",
    "delete": "del",
    "insert": "ins",
}


def _chord(text: str) -> str:
    text = text.strip()
    if text.endswith("+") and len(text) > 1:  # the "+" key itself, maybe with modifiers
        key, mods = "+", [m for m in text[:-1].split("+") if m]
    elif text == "+":
        key, mods = "+", []
    else:
        *mods, key = text.split("+")
    names = {_MODIFIER_ALIASES.get(m.strip().lower(), m.strip().lower()) for m in mods}
    ordered = [m for m in _MODIFIERS if m in names] + sorted(names - set(_MODIFIERS))
    key = key.strip().lower()
    return "+".join([*ordered, _KEY_ALIASES.get(key, key)])


def normalize(keys: str) -> str:
    """One spelling per key sequence: case, modifier order and key aliases do not matter.

    ``"Escape"`` and ``"Esc"``, ``"shift+ctrl+z"`` and ``"Ctrl+Shift+Z"`` compare equal; the
    chords of a multi-key sequence are separated by ``", "`` as in Qt's portable text.
    """
    return ", ".join(_chord(c) for c in keys.split(", ") if c.strip())


def effective_keys(command: Command, override: str | None) -> tuple[str, ...]:
    """The keys a command answers to: its defaults, or the user's one key ("" for none)."""
    if override is None:
        return command.keys
    return (override,) if override.strip() else ()


def bindings(overrides: dict[str, str | None]) -> dict[str, tuple[str, ...]]:
    """Every command's keys in effect, given the user's overrides by command id."""
    return {c.id: effective_keys(c, overrides.get(c.id)) for c in COMMANDS}


def _text_of(command_id: str) -> str:
    command = COMMANDS_BY_ID.get(command_id)
    return command.text if command is not None else command_id


@dataclass(frozen=True, slots=True)
class Conflict:
    """``command_id`` may not have ``key``: ``other`` (a command id or a reserved name) needs it.

    ``kind`` is ``"same"`` (both have it), ``"chord"`` (one sequence starts with the other's:
    the shorter would fire first), ``"answer"`` (the key answers the prefix ``other``) or
    ``"reserved"`` (the window binds it outside the table).
    """

    command_id: str
    key: str
    other: str
    kind: str

    def message(self) -> str:
        """One line for the grader, naming the other command."""
        other = _text_of(self.other)
        if self.kind == "answer":
            return f"{self.key} answers “{other}”: choose another key."
        if self.kind == "chord":
            return f"{self.key} starts like a key of “{other}”: choose another key."
        return f"{self.key} is already the key of “{other}”."


def conflicts(keys_by_command: dict[str, tuple[str, ...]]) -> list[Conflict]:
    """Every clash in ``keys_by_command`` (see ``bindings``), once per command and key.

    A clash is listed from both sides, so each offending row can be marked. The prefix answers
    (``PREFIX_ANSWERS``) stay free for the digit commands while their prefix command has a key.
    """
    holders: dict[str, list[tuple[str, str]]] = {}
    for command_id, keys in keys_by_command.items():
        for key in keys:
            holders.setdefault(normalize(key), []).append((command_id, key))
    answers = {
        normalize(digit): prefix
        for prefix, digits in PREFIX_ANSWERS.items()
        if keys_by_command.get(prefix)
        for digit in digits
    }
    reserved = {normalize(k): name for k, name in RESERVED.items()}
    found: list[Conflict] = []
    for norm, owners in holders.items():
        for command_id, key in owners:
            for other_id, _ in owners:
                if other_id != command_id:
                    found.append(Conflict(command_id, key, other_id, "same"))
            for other_norm, others in holders.items():
                if other_norm != norm and norm.startswith(other_norm + ", "):
                    found.extend(
                        Conflict(command_id, key, o, "chord") for o, _ in others if o != command_id
                    )
                    found.extend(
                        Conflict(o, k, command_id, "chord") for o, k in others if o != command_id
                    )
            if norm in answers and command_id not in ANSWER_COMMANDS:
                found.append(Conflict(command_id, key, answers[norm], "answer"))
            if norm in reserved:
                found.append(Conflict(command_id, key, reserved[norm], "reserved"))
    return list(dict.fromkeys(found))  # in order, each once
