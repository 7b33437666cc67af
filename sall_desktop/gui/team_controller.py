"""The team controller: a team-store workstation follows the other workstations' saves.

Only built when the store is a team store. A timer asks ``services.team_watch.TeamWatch`` for
the gradings rows that arrived since its last look (one indexed read on the store thread); this
object only forwards what it hears:

- the images touched go to the work controller, which reads their routing and levels again, so
  queues, counts and an arbiter's strip follow the others' grades without a reload;
- the signed-in grader's own rows saved at another workstation show on this one's badges, unless
  this workstation still has a write of that image on its way (its own is newer);
- assignment leases (``services.leases.LeaseKeeper``): the image shown in a programme queue is
  held at its level, so no other grader is handed it at that level meanwhile; the images others
  hold leave this grader's queues until released; the lease is renewed while the image stays
  shown, and released on switching grader and on close.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QTimer, Signal

from sall_desktop.gui.bridges import Failure, Reply, TaskBridge
from sall_desktop.gui.grading_controller import GradingController
from sall_desktop.gui.image_model import ImageListModel
from sall_desktop.gui.navigation import Navigator
from sall_desktop.gui.work_controller import WorkController
from sall_desktop.services.grading import GradingService, SaveState
from sall_desktop.services.image_entry import ImageEntry
from sall_desktop.services.leases import RENEW_EVERY_S, LeaseKeeper
from sall_desktop.services.team_watch import TeamNews, TeamWatch

POLL_MS = 1000
"""How often the team store is asked for news: well inside the 2 s a grade may take to show."""


class TeamController(QObject):
    """Polls the team store and forwards the news to the work queues and the badges."""

    news = Signal(object)  # TeamNews, after it was applied (tests and the status bar listen)
    unreachable = Signal(str)
    notice = Signal(str)  # one line for the status bar (an image another grader holds)

    def __init__(
        self,
        service: GradingService,
        model: ImageListModel,
        work: WorkController,
        grading: GradingController,
        navigator: Navigator,
        *,
        interval_ms: int = POLL_MS,
    ) -> None:
        super().__init__(work)
        self.service, self.model, self.work, self.grading = service, model, work, grading
        self.navigator = navigator
        self.keeper: LeaseKeeper | None = None
        self.renew = QTimer(self, interval=int(RENEW_EVERY_S * 1000))
        self.renew.timeout.connect(self._renew)
        grading.grader_changed.connect(self._grader_changed)
        navigator.current_changed.connect(self._current_changed)
        self.watch = TeamWatch(service.submit)
        self.tasks = TaskBridge(self)
        self.tasks.finished.connect(self._finished)
        self.tasks.failed.connect(self._failed)
        self.timer = QTimer(self, interval=interval_ms)
        self.timer.timeout.connect(self.poll)
        self._request = 0

    def start(self) -> None:
        """Find where the store stands now and poll from then on."""
        self._grader_changed(self.grading.grader)
        self.poll()
        self.timer.start()
        self.renew.start()

    def stop(self) -> None:
        """Stop polling and let go of this workstation's leases (before the store closes)."""
        self.timer.stop()
        self.renew.stop()
        if self.keeper is not None:
            self.keeper.release_all()
            self.keeper = None

    # ------------------------------------------------------------------ leases
    def _grader_changed(self, name: str | None) -> None:
        if self.keeper is not None:
            self.keeper.release_all()  # queued before any claim of the next grader's
        self.keeper = None if name is None else LeaseKeeper(self.service.submit, name)
        self._current_changed(self.navigator.current)

    def _current_changed(self, entry: ImageEntry | None) -> None:
        keeper, queue = self.keeper, self.work.work
        if keeper is None or entry is None or not queue.active:
            return
        level = queue.level_for(entry)
        self.tasks.track(keeper.hold(entry.sha256, level), ("hold", entry.sha256))

    def _renew(self) -> None:
        if self.keeper is not None:
            self.tasks.track(self.keeper.renew_due(), ("renew", ""))

    def _skip_sets(self) -> None:
        keeper, queue = self.keeper, self.work.work
        if keeper is None or not queue.active:
            return
        for level in queue.levels():
            self.tasks.track(keeper.skip_set(level), ("leased", level))

    def poll(self) -> None:
        """Ask for the news now (the timer calls it; tests may too)."""
        self._request = self.tasks.track(self.watch.poll(), "team")

    def _finished(self, reply: Reply) -> None:
        if isinstance(reply.context, tuple):
            self._lease_reply(reply)
            return
        if reply.context != "team" or reply.request_id != self._request:
            return
        news: TeamNews = reply.value
        if news.rows:
            self._apply(news)
        self.news.emit(news)
        self._skip_sets()
        if news.more:
            self.poll()  # a backlog: read on at once rather than a page a second

    def _lease_reply(self, reply: Reply) -> None:
        kind, what = reply.context
        if kind == "leased":
            self.work.work.set_leased(what, reply.value)
            self.work.refresh()
        elif kind in ("hold", "renew") and reply.value is False:
            self.notice.emit(
                "Another grader is grading this image at this level now; "
                "it leaves your queue until they finish."
                if kind == "hold"
                else "Your hold on this image ran out and another grader took it."
            )

    def _apply(self, news: TeamNews) -> None:
        grader = self.grading.grader
        if grader is not None:
            for sha, grading in news.current_of(grader).items():
                if self.service.state_of(sha) == SaveState.SAVED:
                    self.model.set_grading(sha, grading, SaveState.SAVED)
        self.work.others_saved(news.images)

    def _failed(self, failure: Failure) -> None:
        if failure.context == "team" and failure.request_id == self._request:
            self.unreachable.emit(failure.message)
