"""R1/R7: kill -9 the GUI mid-session; a restart shows every saved grade and the last image."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.gui.conftest import WAIT_S

DRIVER = Path(__file__).with_name("kill_driver.py")


@pytest.mark.slow
def test_sigkill_mid_session_then_restart_restores_grades_and_last_image(
    qtbot, open_workstation, image_folder, tmp_path, store_call
) -> None:  # type: ignore[no-untyped-def]
    folder = image_folder(30)
    db = tmp_path / "home" / "labels.sqlite"
    env = {
        **os.environ,
        "SALL_DESKTOP_HOME": str(tmp_path / "home"),
        "QT_QPA_PLATFORM": "offscreen",
    }
    child = subprocess.Popen(
        [sys.executable, str(DRIVER), str(db), str(folder)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    acks: list[tuple[str, int, int]] = []
    last = ""
    deadline = time.monotonic() + WAIT_S  # a hang guard
    try:
        assert child.stdout is not None
        while len(acks) < 8 and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            kind, sha, *values = line.split()
            if kind == "ACK":
                acks.append((sha, int(values[0]), int(values[1])))
            elif kind == "LAST":
                last = sha
    finally:
        child.send_signal(signal.SIGKILL)  # mid-session: the driver is still grading
        child.wait(timeout=WAIT_S)
    assert len(acks) >= 8 and last, "the driver did not grade in time"

    ws = open_workstation(None, db=db, grader="Dr Crash")
    window = ws.window
    assert window.banner.kind == "recovery"  # the unclean shutdown was noticed
    for sha, dr, amd in acks:
        history = store_call(ws, lambda s, sha=sha: s.grading_history(sha))
        assert any((g.dr_grade, g.amd_grade, g.grader) == (dr, amd, "Dr Crash") for g in history)
        entry = window.model.entries_with_sha(sha)[0]
        current = store_call(ws, lambda s, sha=sha: s.current_grading(sha, "Dr Crash"))
        assert entry.grading == current  # the window shows every acknowledged grade
    order = [e.sha256 for e in window.model.entries()]
    restored = window.navigator.current.sha256
    # It reopens at the last image whose position was saved: the last one acknowledged, or a
    # later one whose save committed just before the kill (never an earlier one).
    newest_ack = max(order.index(sha) for sha, _, _ in acks)
    assert order.index(last) <= order.index(restored) <= newest_ack + 2
    assert store_call(ws, lambda s: s.integrity_check()) == "ok"
