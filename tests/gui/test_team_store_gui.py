"""Two workstations on one team store (real windows, offscreen; a real PostgreSQL server): a
grade saved at one shows at the other on its next poll, with no reload."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtTest import QTest

from sall_desktop.domain.programme import ProgrammeRole, RoutingRules
from sall_desktop.gui.team_controller import POLL_MS
from sall_desktop.store import open_team_store
from tests.gui.conftest import WAIT_MS
from tests.gui.test_programme_queues import AMD_Q, choose
from tests.gui.test_programme_queues import PRIMARY as PRIMARY_LEVEL

P, S = "Dr Primary", "Dr Second"


@pytest.fixture
def team_url(pg_url: str) -> str:
    """A team store with a programme: P grades first, S second (every abnormal image)."""
    with open_team_store(pg_url, app_version="test") as store:
        store.set_programme_rules(RoutingRules(normal_fraction=0.0, seed=1), actor="QA Lead")
        store.set_programme_role(P, ProgrammeRole.PRIMARY, actor="QA Lead")
        store.set_programme_role(S, ProgrammeRole.SECONDARY, actor="QA Lead")
    return pg_url


@pytest.fixture
def two_workstations(
    qtbot: Any, qapp_themed: Any, tmp_path: Path
) -> Iterator[Callable[[str, str, Path, str], Any]]:
    from sall_desktop.app import create_workstation
    from sall_desktop.gui.settings import AppSettings

    opened: list[Any] = []

    def start(url: str, name: str, folder: Path, grader: str) -> Any:
        settings = AppSettings(tmp_path / name / "settings.ini")
        settings.grader = grader
        ws = create_workstation(url, settings=settings)
        opened.append(ws)
        ws.window.show()
        ws.window.start(str(folder))
        window = ws.window
        qtbot.waitUntil(
            lambda: (
                window.navigator.current is not None
                and window.grading.grader == grader
                and not window.grading.loading
            ),
            timeout=WAIT_MS,
        )
        return ws

    yield start
    for ws in opened:
        ws.window._closing_confirmed = True
        ws.window.close()
        ws.shutdown()


def test_a_grade_saved_at_one_workstation_shows_at_the_other_on_its_next_poll(
    team_url: str,
    two_workstations: Callable[[str, str, Path, str], Any],
    image_folder: Callable[..., Path],
    qtbot: Any,
    wait_saved: Callable[[Any], None],
) -> None:
    folder = image_folder(4)
    one = two_workstations(team_url, "one", folder, P)
    two = two_workstations(team_url, "two", folder, S)
    assert one.window.team is not None and two.window.team is not None
    assert two.window.team.timer.interval() <= POLL_MS <= 1000  # a poll a second at least
    assert "team store" in two.window.windowTitle()
    assert (
        two.window.status.team.isVisible()
        and "Team store 127.0.0.1:" in two.window.status.team.text()
    )
    panel = two.window.work_panel
    qtbot.waitUntil(lambda: "Second grading — 0 to grade" in panel.texts(), timeout=WAIT_MS)
    events: list[str] = []  # in the order the GUI thread heard them
    two.window.team.news.connect(lambda news: events.append("news" if news.rows else "none"))
    one.window.grading_bridge.changed.connect(
        lambda event: events.append("commit") if event.row_id is not None else None
    )

    one.window.activateWindow()  # shortcuts go to the active window
    qtbot.waitUntil(one.window.isActiveWindow, timeout=WAIT_MS)
    choose(one.window, PRIMARY_LEVEL)
    one.window.navigator.go_to(one.window.model.entry_at(0))
    QTest.keyClick(one.window, "3")  # DR 3: abnormal, so second grading is due
    QTest.keyClick(one.window, AMD_Q)
    wait_saved(one)
    qtbot.waitUntil(lambda: "Second grading — 1 to grade" in panel.texts(), timeout=WAIT_MS)
    # Only a poll already out at the commit can come back empty; the next one brings the grade,
    # so it shows within two poll intervals (no timing is measured: the polls are counted).
    commit, news = events.index("commit"), events.index("news")
    assert events[commit:news].count("none") <= 1, events


def test_an_image_one_grader_holds_leaves_the_other_graders_queue_until_released(
    pg_url: str,
    two_workstations: Callable[[str, str, Path, str], Any],
    image_folder: Callable[..., Path],
    qtbot: Any,
) -> None:
    from sall_desktop.domain.grades import Grading
    from sall_desktop.services.image_entry import ImageEntry

    s1, s2 = "Dr Second One", "Dr Second Two"
    folder = image_folder(3)
    with open_team_store(pg_url, app_version="test") as store:
        store.set_programme_rules(RoutingRules(normal_fraction=0.0, seed=1), actor="QA Lead")
        store.set_programme_role(P, ProgrammeRole.PRIMARY, actor="QA Lead")
        for grader in (s1, s2):
            store.set_programme_role(grader, ProgrammeRole.SECONDARY, actor="QA Lead")
    one = two_workstations(pg_url, "one", folder, s1)
    two = two_workstations(pg_url, "two", folder, s2)
    routed: ImageEntry = one.window.model.entry_at(1)
    with open_team_store(pg_url, app_version="test") as store:  # P grades at a third desk
        store.add_grading(Grading(routed.sha256, P, dr_grade=3, amd_grade=0))
    panels = one.window.work_panel, two.window.work_panel
    for panel in panels:
        qtbot.waitUntil(lambda p=panel: "Second grading — 1 to grade" in p.texts(), timeout=WAIT_MS)

    one.window.navigator.go_to(one.window.model.entries_with_sha(routed.sha256)[0])
    qtbot.waitUntil(
        lambda: (
            one.window.team.keeper.held is not None
            and one.window.team.keeper.held.image_sha256 == routed.sha256
        ),
        timeout=WAIT_MS,
    )
    qtbot.waitUntil(lambda: "Second grading — 0 to grade" in panels[1].texts(), timeout=WAIT_MS)
    assert "Second grading — 1 to grade" in panels[0].texts()  # it stays the holder's work

    one.window._closing_confirmed = True
    one.window.close()  # closing releases the lease
    qtbot.waitUntil(lambda: "Second grading — 1 to grade" in panels[1].texts(), timeout=WAIT_MS)


def test_the_offline_indicator_shows_while_the_server_is_down_and_clears_after_sync(
    qtbot: Any, qapp_themed: Any, tmp_path: Path, image_folder: Callable[..., Path]
) -> None:
    from sall_desktop.app import create_workstation
    from sall_desktop.gui.settings import AppSettings
    from sall_desktop.services.grading import SaveState
    from tests.support.pg_server import PgServer

    folder = image_folder(3)
    with PgServer() as server:
        url = server.create_database("offline")
        settings = AppSettings(tmp_path / "desk" / "settings.ini")
        settings.grader = "Dr Offline"
        settings.auto_advance = False
        # No automatic retries: the test says when to try again, so nothing waits on a clock.
        ws = create_workstation(url, settings=settings, retry_delays=(3600.0,))
        try:
            window, service = ws.window, ws.services.grading
            window.show()
            window.start(str(folder))
            qtbot.waitUntil(
                lambda: window.navigator.current is not None and not window.grading.loading,
                timeout=WAIT_MS,
            )
            save = window.status.save
            first, second = window.model.entry_at(0), window.model.entry_at(1)
            window.navigator.go_to(first)
            QTest.keyClick(window, "1")
            QTest.keyClick(window, AMD_Q)
            qtbot.waitUntil(lambda: save.text() == "✓ All grades saved", timeout=WAIT_MS)

            server.kill()
            window.navigator.go_to(second)
            QTest.keyClick(window, "2")
            QTest.keyClick(window, AMD_Q)
            qtbot.waitUntil(lambda: save.text().startswith("Offline — 1 grade"), timeout=WAIT_MS)
            assert save.property("state") == "outbox"
            assert window.banner.isVisible() and window.banner.kind == "offline"
            assert service.state_of(second.sha256) is SaveState.OUTBOX

            server.restart()
            service.retry()
            qtbot.waitUntil(lambda: save.text() == "✓ All grades saved", timeout=WAIT_MS)
            assert service.online and service.outbox_count == 0
            qtbot.waitUntil(lambda: not window.banner.isVisible(), timeout=WAIT_MS)
            rows = ws.store.submit(lambda s: s.current_gradings(grader="Dr Offline")).result()
            assert {g.image_sha256: g.dr_grade for g in rows} == {
                first.sha256: 1,
                second.sha256: 2,
            }
        finally:
            ws.window._closing_confirmed = True
            ws.window.close()
            ws.shutdown()
