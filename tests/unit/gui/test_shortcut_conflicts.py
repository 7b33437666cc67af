"""The shortcut conflict rule (gui.shortcuts.conflicts) on plain strings, without Qt."""

from __future__ import annotations

import subprocess
import sys

from sall_desktop.gui.shortcuts import (
    COMMANDS,
    Conflict,
    bindings,
    conflicts,
    effective_keys,
    normalize,
)


def test_the_shipped_defaults_have_no_conflict() -> None:
    assert conflicts(bindings({})) == []


def test_the_rule_needs_no_qt() -> None:
    code = (
        "import sys, sall_desktop.gui.shortcuts\n"
        "print(any(m.startswith('PySide6') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_normalize_ignores_case_order_and_aliases() -> None:
    assert normalize("Escape") == normalize("esc")
    assert normalize("shift+ctrl+z") == normalize("Ctrl+Shift+Z")
    assert normalize("Page Down") == normalize("PgDown")
    assert normalize("Ctrl++") == "ctrl++" and normalize("+") == "+"
    assert normalize("Ctrl+,") == "ctrl+,"
    assert normalize("Ctrl+K, Ctrl+C") == "ctrl+k, ctrl+c"
    assert normalize("Return") != normalize("Enter")  # two keys (main and keypad)


def test_an_override_replaces_every_default_key_and_empty_means_none() -> None:
    nxt = next(c for c in COMMANDS if c.id == "next")
    assert effective_keys(nxt, None) == ("Right", "PgDown", "Space")
    assert effective_keys(nxt, "J") == ("J",)
    assert effective_keys(nxt, "") == ()


def test_two_commands_on_one_key_are_refused_from_both_sides() -> None:
    found = conflicts(bindings({"next_ungraded": "Ctrl+G"}))
    assert Conflict("next_ungraded", "Ctrl+G", "grade_folder", "same") in found
    assert Conflict("grade_folder", "Ctrl+G", "next_ungraded", "same") in found
    message = next(c for c in found if c.command_id == "next_ungraded").message()
    assert message == "Ctrl+G is already the key of “Grade the folder with the model”."


def test_default_secondary_keys_count() -> None:
    # Space and Enter are not the primary keys of "next" and "commit", but they are bound.
    found = conflicts(bindings({"toggle_pair": "space", "notes": "Enter"}))
    assert {(c.command_id, c.other) for c in found} >= {
        ("toggle_pair", "next"),
        ("notes", "commit"),
    }
    # Once "next" has a key of its own, its default Space is free again.
    assert conflicts(bindings({"toggle_pair": "Space", "next": "J"})) == []


def test_the_prefix_keys_and_their_answers() -> None:
    found = conflicts(bindings({"fit": "U"}))  # U stays Ungradable's key
    assert Conflict("fit", "U", "ungradable", "same") in found
    assert conflicts(bindings({"ungradable": "Ctrl+U", "fit": "U"})) == []  # U moved away
    # After U the digits 1-6 pick a reason, after M 0-2 the DME: only digit commands hold them.
    found = conflicts(bindings({"fit": "6", "reason_6": "X"}))
    assert found == [Conflict("fit", "6", "ungradable", "answer")]
    assert found[0].message().startswith("6 answers “Ungradable…")
    # 5 and 6 are answer commands of their own (no DR grade carries them), so they may hold them.
    assert conflicts(bindings({"reason_5": "6", "reason_6": "5"})) == []
    assert Conflict("fit", "0", "dme", "answer") in conflicts(bindings({"fit": "0", "dr_0": "X"}))
    # Swapping two DR digits is allowed: the digit commands deliver the answers.
    assert conflicts(bindings({"dr_1": "2", "dr_2": "1"})) == []
    # Without a DME key nobody can start the DME prefix, so 0-2 are not reserved by it.
    assert all(c.other != "dme" for c in conflicts(bindings({"dme": "", "fit": "0", "dr_0": ""})))


def test_a_chord_that_starts_with_another_key_is_refused() -> None:
    found = conflicts(bindings({"fit": "G, X"}))
    assert Conflict("fit", "G, X", "next_ungraded", "chord") in found
    assert Conflict("next_ungraded", "G", "fit", "chord") in found


def test_the_window_quit_key_is_reserved() -> None:
    found = conflicts(bindings({"fit": "ctrl+q"}))
    assert found == [Conflict("fit", "ctrl+q", "Quit", "reserved")]
    assert found[0].message() == "ctrl+q is already the key of “Quit”."


def test_a_command_without_a_key_conflicts_with_nothing() -> None:
    assert conflicts(bindings({c.id: "" for c in COMMANDS})) == []
