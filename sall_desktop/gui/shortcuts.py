"""Keyboard-first grading: every command, its default keys and its cheat-sheet text in one table.

The same table builds the window's actions, the F1 cheat-sheet and the shortcut editor, so they
can never disagree. Keys are chosen for one hand on the keyboard: DR on the digit row, AMD on the
row beneath (Q W E R = 0 1 2 3), prefix keys for the rarer answers (U then a reason digit, M then
a DME digit).
"""

from __future__ import annotations

from dataclasses import dataclass

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


UNGRADABLE_REASONS: tuple[tuple[UngradableReason, str], ...] = (
    (UngradableReason.BLUR, "Blur / out of focus"),
    (UngradableReason.EXPOSURE, "Under- or over-exposed"),
    (UngradableReason.ARTEFACT, "Artefact (eyelash, dust)"),
    (UngradableReason.FIELD, "Field not adequate"),
    (UngradableReason.MEDIA_OPACITY, "Media opacity (cataract)"),
    (UngradableReason.OTHER, "Other"),
)
"""Reasons in the order of their digit (1-6) after the Ungradable key."""

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
    Command("cheat_sheet", "Keyboard shortcuts", ("F1",), "Help"),
)

COMMANDS_BY_ID = {c.id: c for c in COMMANDS}
