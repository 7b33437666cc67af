"""The session: which services the window drives, where it starts, and where it was last.

At start the window opens the folder it was given, else the last folder at the last image (both
kept in the database, so they survive a crash, R7), else the demo folder (generated on first
run). While the grader works, the current image is recorded, throttled, after each move.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal

from sall_desktop.gui.bridges import Failure, Reply, TaskBridge
from sall_desktop.gui.folder_controller import FolderController
from sall_desktop.gui.grading_controller import GradingController
from sall_desktop.gui.navigation import Navigator
from sall_desktop.gui.settings import AppSettings
from sall_desktop.gui.status import Banner, StatusController
from sall_desktop.services.catalogue import InputCache
from sall_desktop.services.decode_pool import DecodePool
from sall_desktop.services.grading import LAST_FOLDER_KEY, LAST_IMAGE_KEY, GradingService
from sall_desktop.services.image_entry import ImageEntry
from sall_desktop.services.images import ImageService
from sall_desktop.services.thumbnails import ThumbnailService

LAST_IMAGE_PATH_KEY = "gui.last_image_path"
REMEMBER_EVERY_MS = 250


@dataclass
class WorkstationServices:
    """The Qt-free services the window drives (built by ``sall_desktop.app``)."""

    grading: GradingService
    thumbnails: ThumbnailService
    images: ImageService
    jobs: Executor
    read_only_reason: str = ""
    warnings: list[str] = field(default_factory=list)
    unclean_shutdown: bool = False
    demo_folder: Callable[[], Path] | None = None
    decode: DecodePool = field(default_factory=lambda: DecodePool(0))
    """Where catalogue and thumbnail decoding runs (the app passes its process pool)."""
    model_inputs: Callable[[], InputCache | None] | None = None
    """Where a folder's first read leaves the active model's prepared inputs (None: nowhere)."""
    team_store: str = ""
    """``host:port/dbname`` of the team store the window grades into ("": this workstation's
    own SQLite file): the window then follows the other workstations' saves."""


class SessionController(QObject):
    """Start-up folder choice, the demo folder, open notices and the remembered last image."""

    last_image_saved = Signal(str)  # sha256 recorded as the last image (committed)
    error = Signal(str)

    def __init__(
        self,
        services: WorkstationServices,
        settings: AppSettings,
        folders: FolderController,
        grading: GradingController,
        navigator: Navigator,
        banner: Banner,
        status: StatusController,
    ) -> None:
        super().__init__(banner)
        self.services, self.settings = services, settings
        self.folders, self.grading, self.navigator = folders, grading, navigator
        self.banner, self.status = banner, status
        self.tasks = TaskBridge(self)
        self.tasks.finished.connect(self._finished)
        self.tasks.failed.connect(self._failed)
        self._start_folder: str | None = None
        self._remember = QTimer(self, singleShot=True, interval=REMEMBER_EVERY_MS)
        self._remember.timeout.connect(self.remember_now)
        navigator.current_changed.connect(self._moved)
        self._show_open_notices()

    def start(self, folder: str | None) -> None:
        """Open ``folder``, else the last folder (at the last image), else the demo folder."""
        self._start_folder = folder
        self.grading.set_grader(self.settings.grader or None)
        keys = (LAST_FOLDER_KEY, LAST_IMAGE_KEY, LAST_IMAGE_PATH_KEY)
        self.tasks.track(self.services.grading.recall(*keys), "recall")

    def flush(self) -> None:
        """Record the current image now if a recording is due (before the store closes)."""
        if self._remember.isActive():
            self._remember.stop()
            self.remember_now()

    def stop(self) -> None:
        self._remember.stop()

    def remember_now(self) -> None:
        entry = self.navigator.current
        if entry is None or entry.record is None or self.services.read_only_reason:
            return
        values = {
            LAST_FOLDER_KEY: self.folders.folder,
            LAST_IMAGE_KEY: entry.sha256,
            LAST_IMAGE_PATH_KEY: entry.path,
        }
        self.tasks.track(self.services.grading.remember(values), ("remember", entry.sha256))

    def _moved(self, entry: ImageEntry | None) -> None:
        if entry is not None and entry.record is not None and not self._remember.isActive():
            self._remember.start()  # throttled, not debounced: fast grading still records it

    def _open_start_folder(self, remembered: dict[str, str | None]) -> None:
        last_folder = remembered.get(LAST_FOLDER_KEY) or ""
        folder = self._start_folder or last_folder
        if folder and Path(folder).is_dir():
            same = bool(last_folder) and Path(folder) == Path(last_folder)
            self.folders.open_folder(
                folder,
                select_sha=(remembered.get(LAST_IMAGE_KEY) or "") if same else "",
                select_path=(remembered.get(LAST_IMAGE_PATH_KEY) or "") if same else "",
            )
        elif self.services.demo_folder is not None:
            self.banner.show_message("demo", "info", "Preparing the demo images (first run only)…")
            self.tasks.track(self.services.jobs.submit(self.services.demo_folder), "demo")

    def _finished(self, reply: Reply) -> None:
        if reply.context == "recall":
            self._open_start_folder(reply.value)
        elif reply.context == "demo":
            self.banner.clear("demo")
            self.folders.open_folder(str(reply.value))
        elif isinstance(reply.context, tuple) and reply.context[0] == "remember":
            self.last_image_saved.emit(reply.context[1])

    def _failed(self, failure: Failure) -> None:
        if failure.context == "demo":
            self.banner.clear("demo")
            self.error.emit(f"The demo images could not be prepared: {failure.message}")
        else:
            self.error.emit(failure.message)

    def _show_open_notices(self) -> None:
        s = self.services
        self.status.set_read_only(s.read_only_reason)
        # The banner shows one message: warnings (an altered audit trail, a backup not taken)
        # are added to the read-only or recovery notice, never hidden behind it.
        warnings = " ".join(s.warnings)
        if s.read_only_reason:
            text = f"{s.read_only_reason} {warnings}".strip()
            self.banner.show_message("read_only", "warning", text)
        elif s.unclean_shutdown:
            text = (
                "SALL Desktop did not close cleanly last time. The database was checked and "
                "every saved grade is kept; it reopens at your last image."
            )
            severity = "warning" if warnings else "info"
            self.banner.show_message("recovery", severity, f"{text} {warnings}".strip())
        elif warnings:
            self.banner.show_message("warning", "warning", warnings)
