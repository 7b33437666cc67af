"""Composition root: open the store, build the services, build the main window, wire them.

This is the one module that constructs concrete objects. ``run_gui`` shows the window before
anything slow happens (P7: no torch import, no scan, no demo generation before the window is up),
then opens the folder given, the last folder at the last image (R7), or the demo folder.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from model_zoo.fileio import remove_stale_temp_files
from sall_desktop.gui import collector
from sall_desktop.gui.launch import delete_window, qt_application, run_window, show_startup_error
from sall_desktop.gui.main_window import MainWindow
from sall_desktop.gui.session import WorkstationServices
from sall_desktop.gui.settings import AppSettings
from sall_desktop.services.background import background_priority
from sall_desktop.services.decode_pool import DEFAULT_WORKERS as DEFAULT_DECODE_WORKERS
from sall_desktop.services.decode_pool import DecodePool
from sall_desktop.services.demo import ensure_demo_folder
from sall_desktop.services.grading import GradingService
from sall_desktop.services.images import ImageService
from sall_desktop.services.inference import InferenceService, active_model_dir
from sall_desktop.services.outbox import Outbox, outbox_path
from sall_desktop.services.paths import data_dir, default_db_path
from sall_desktop.services.thumbnails import ThumbnailService
from sall_desktop.store import StoreError, StoreThread, is_team_url
from sall_desktop.store.input_cache import prune_inputs
from sall_desktop.store.outbox import OutboxError

APP_VERSION = "0.1.0"
GIL_SWITCH_INTERVAL_S = 0.001


@dataclass
class Workstation:
    """Everything ``run_gui`` builds, so tests and the crash driver can drive and close it."""

    store: StoreThread
    services: WorkstationServices
    settings: AppSettings
    window: MainWindow
    inference: InferenceService
    outbox: Outbox | None = None

    def shutdown(self) -> list[object]:
        """Stop every background thread and close the store (after the window closed).

        Returns the grading writes that never committed (the user chose to quit anyway).
        """
        self.window.stop_timers()
        collector.release()  # the open folder's objects are collected with the window
        # A fine-tune in flight is stopped (STOP, then kill) while the store can still record it.
        if self.window.model_windows is not None:
            self.window.model_windows.shutdown()
        self.window.catalogue_bridge.stop()
        self.services.thumbnails.close()
        self.services.decode.close()
        self.services.images.close()
        lost: list[object] = list(self.services.grading.close())
        if self.outbox is not None:  # what it keeps is sent at the next start
            self.outbox.close()
        self.services.jobs.shutdown(wait=True, cancel_futures=True)
        # Before the store: a batch-grading chunk in flight waits for its store commit.
        self.inference.shutdown(cancel_futures=True)
        self.store.close()
        # Every worker has stopped; deleting the window now also drops the results they queued
        # for it, which would otherwise reach controllers whose services are closed.
        delete_window(self.window)
        return lost


INPUTS_FOLDER = "model-inputs"
"""Prepared model inputs (``sall_desktop.store.input_cache``), beside the thumbnails."""


def create_workstation(
    db: str | os.PathLike[str] | None = None,
    *,
    settings: AppSettings | None = None,
    retry_delays: tuple[float, ...] | None = None,
    model: Path | Callable[[], Path] | None = None,
    device: str | None = None,
    decode_workers: int = DEFAULT_DECODE_WORKERS,
) -> Workstation:
    """Open the database and build the services and the main window (not shown yet).

    Args:
        db: the label database (default: the user's data folder).
        settings: preferences (default: ``settings.ini`` in the data folder).
        retry_delays: seconds between automatic retries of failed writes (tests shorten them).
        model: the model version folder (default: the active version of ``services.models``,
            resolved on the inference worker at each (re)load; the bundled demo model on first
            use).
        device: inference device (default: automatic).
        decode_workers: decode processes for the catalogue and thumbnails (0: threads).

    Raises:
        StoreError: the database cannot be opened at all (the message says why).
    """
    # Worker threads (hashing, decoding) hold the GIL for up to the switch interval each time the
    # GUI thread releases it; 1 ms instead of 5 ms keeps the GUI thread's waits short (R24, P6).
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    home = data_dir()
    remove_stale_temp_files(home)
    db_path: Path | str = default_db_path() if db is None else Path(db)
    if db is not None and is_team_url(str(db)):
        db_path = str(db)
    store = StoreThread(db_path, app_version=APP_VERSION)
    try:
        opened = store.wait_open()
    except BaseException:
        store.close()
        raise
    settings = settings if settings is not None else AppSettings()
    kwargs: dict[str, object] = {} if retry_delays is None else {"retry_delays": retry_delays}
    warnings = list(opened.warnings)
    outbox = _team_outbox(home, db_path, warnings)
    if outbox is not None:
        kwargs["outbox"] = outbox
    decode = DecodePool(decode_workers)
    decode.start()  # the workers import numpy and OpenCV while the window is being built
    inputs_root = home / INPUTS_FOLDER if settings.input_cache_gb > 0 else None
    inference = InferenceService(
        model if model is not None else partial(active_model_dir, store),
        store=store,
        device=device,
        low_confidence=settings.low_confidence,
        inputs_root=inputs_root,
        # The scan only needs the card to know which inputs to prepare: re-hashing the weights
        # there kept the store thread busy while the first screen of a folder waited on it.
        card_dir=None if model is not None else partial(active_model_dir, store, verify=False),
    )
    services = WorkstationServices(
        grading=GradingService(store, **kwargs),  # type: ignore[arg-type]
        thumbnails=ThumbnailService(
            home / "thumbnails", max_side=settings.thumbnail_size, decoder=decode
        ),
        images=ImageService(),
        # Jobs (demo generation, ...) and the threads they start run below the GUI's priority.
        jobs=ThreadPoolExecutor(1, thread_name_prefix="sall-jobs", initializer=background_priority),
        read_only_reason=opened.read_only_reason if opened.read_only else "",
        warnings=warnings,
        unclean_shutdown=bool(getattr(opened, "unclean_shutdown", False)),
        demo_folder=ensure_demo_folder,
        decode=decode,
        model_inputs=inference.input_cache if inputs_root is not None else None,
        team_store=str(getattr(opened, "where", "")),
    )
    if inputs_root is not None:  # last session's folders may have left more than the cap
        services.jobs.submit(prune_inputs, inputs_root, int(settings.input_cache_gb * 1e9))
    window = MainWindow(services, settings, inference, store=store)
    return Workstation(store, services, settings, window, inference, outbox)


def _team_outbox(home: Path, db: Path | str, warnings: list[str]) -> Outbox | None:
    """On a team store, the file that keeps grades while the server cannot be reached."""
    if not isinstance(db, str):
        return None  # a workstation's own file is always there: nothing to keep aside
    try:
        outbox = Outbox(outbox_path(home, db))
    except OutboxError as err:
        warnings.append(f"{err} Grades cannot be kept on this workstation while offline.")
        return None
    warnings.extend(outbox.warnings)
    return outbox


def _kept_note(target: str | None) -> str:
    """For a team store that cannot be reached: how many grades this workstation keeps for it."""
    if target is None or not is_team_url(target):
        return ""
    path = outbox_path(data_dir(), target)
    if not path.exists():
        return ""
    try:
        outbox = Outbox(path)
    except OutboxError:
        return ""
    try:
        kept = outbox.count()
    finally:
        outbox.close()
    if not kept:
        return ""
    return (
        f"\n\n{kept} grade(s) from your last session are kept safely on this workstation; "
        "they are sent when the team store can be reached and SALL Desktop opens again."
    )


def run_gui(db: str | None, folder: str | None) -> int:
    """Run the workstation until its window closes; return the process exit code."""
    settings = AppSettings()
    app = qt_application("SALL Desktop", APP_VERSION, settings)
    # --db wins; else the team store chosen in Settings; else this workstation's own file.
    target = db or settings.team_store or None
    try:
        workstation = create_workstation(target, settings=settings)
    except (StoreError, OSError) as exc:
        show_startup_error(
            "SALL Desktop cannot start",
            f"The label database cannot be opened.\n\n{exc}{_kept_note(target)}",
        )
        return 1
    return run_window(app, workstation.window, folder, workstation.shutdown)
