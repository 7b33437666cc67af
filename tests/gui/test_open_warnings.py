"""Issue 22: an audit trail found altered at open reaches the window's banner."""

from __future__ import annotations

import sqlite3

from sall_desktop.domain.grades import Grading
from sall_desktop.store import open_store


def test_an_altered_audit_trail_at_open_is_shown_in_the_banner(
    qtbot, open_workstation, image_folder, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    db = tmp_path / "labels.sqlite"
    with open_store(db, backups=None) as store:
        store.add_grading(Grading("ab" * 32, "Dr A", dr_grade=1, amd_grade=0))
    conn = sqlite3.connect(db)
    conn.execute("DROP TRIGGER audit_log_no_update")
    conn.execute("UPDATE audit_log SET new_value = '3' WHERE id = 2")
    conn.commit()
    conn.close()

    ws = open_workstation(image_folder(2), db=db)
    banner = ws.window.banner
    assert banner.isVisible() and banner.kind == "warning"
    text = banner.label.text()
    assert "The audit trail was altered: row 2" in text
    assert "No backup was taken" in text  # the good backups are kept, and it says so
