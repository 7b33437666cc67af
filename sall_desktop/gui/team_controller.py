"""The team controller: a team-store workstation follows the other workstations' saves.

Only built when the store is a team store. A timer asks ``services.team_watch.TeamWatch`` for
the gradings rows that arrived since its last look (one indexed read on the store thread); this
object only forwards what it hears:

- the images touched go to the work controller, which reads their routing and levels again, so
  queues, counts and an arbiter's strip follow the others' grades without a reload;
- the signed-in grader's own rows saved at another workstation show on this one's badges, unless
  this workstation still has a write of that image on its way (its own is newer).
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QTimer, Signal

from sall_desktop.gui.bridges import Failure, Reply, TaskBridge
from sall_desktop.gui.grading_controller import GradingController
from sall_desktop.gui.image_model import ImageListModel
from sall_desktop.gui.work_controller import WorkController
from sall_desktop.services.grading import GradingService, SaveState
from sall_desktop.services.team_watch import TeamNews, TeamWatch

POLL_MS = 1000
"""How often the team store is asked for news: well inside the 2 s a grade may take to show."""


class TeamController(QObject):
    """Polls the team store and forwards the news to the work queues and the badges."""

    news = Signal(object)  # TeamNews, after it was applied (tests and the status bar listen)
    unreachable = Signal(str)

    def __init__(
        self,
        service: GradingService,
        model: ImageListModel,
        work: WorkController,
        grading: GradingController,
        *,
        interval_ms: int = POLL_MS,
    ) -> None:
        super().__init__(work)
        self.service, self.model, self.work, self.grading = service, model, work, grading
        self.watch = TeamWatch(service.submit)
        self.tasks = TaskBridge(self)
        self.tasks.finished.connect(self._finished)
        self.tasks.failed.connect(self._failed)
        self.timer = QTimer(self, interval=interval_ms)
        self.timer.timeout.connect(self.poll)
        self._request = 0

    def start(self) -> None:
        """Find where the store stands now and poll from then on."""
        self.poll()
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    def poll(self) -> None:
        """Ask for the news now (the timer calls it; tests may too)."""
        self._request = self.tasks.track(self.watch.poll(), "team")

    def _finished(self, reply: Reply) -> None:
        if reply.context != "team" or reply.request_id != self._request:
            return
        news: TeamNews = reply.value
        if news.rows:
            self._apply(news)
        self.news.emit(news)
        if news.more:
            self.poll()  # a backlog: read on at once rather than a page a second

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
