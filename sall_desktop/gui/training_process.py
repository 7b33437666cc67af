"""The training child as a ``QProcess``: JSON-lines events in, STOP-file cancel out.

``readyReadStandardOutput`` delivers arbitrary chunks; complete lines are parsed with
``training.protocol.events.parse_event`` (unknown events ignored, malformed lines logged and
skipped, never raised), partial lines wait for the rest. stderr is kept as a bounded tail for
error messages. Cancel creates ``RUN_DIR/STOP`` (the trainer acknowledges within 1 s and saves
a checkpoint); if the child has not exited after a grace period, it and its descendants
(DataLoader workers) are killed with psutil.
"""

from __future__ import annotations

import collections
import logging
from pathlib import Path

import psutil
from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, QTimer, Signal

from sall_desktop.services.training_jobs import request_stop
from training.protocol.events import Event, EventParseError, parse_event

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 4 * 1024 * 1024
"""A stdout line longer than this is dropped (a runaway child must not exhaust memory)."""
STDERR_TAIL_LINES = 60
CHILD_NICENESS = 10
"""POSIX nice value of the training child, so the GUI thread runs first on a busy machine."""


class TrainingProcess(QObject):
    """Runs one training command and turns its stdout into typed events.

    Signals:
        event_received(object): a parsed :class:`~training.protocol.events.Event`.
        malformed(str): a line that is not a valid event (already logged).
        finished(int, bool): exit code and whether the process crashed or was killed.
        failed_to_start(str): the program could not be started (message).
    """

    event_received = Signal(object)
    malformed = Signal(str)
    finished = Signal(int, bool)
    failed_to_start = Signal(str)

    def __init__(self, parent: QObject | None = None, *, grace_ms: int = 15_000) -> None:
        super().__init__(parent)
        self._proc = QProcess(self)
        self._proc.setProcessChannelMode(QProcess.ProcessChannelMode.SeparateChannels)
        self._proc.readyReadStandardOutput.connect(self._read_stdout)
        self._proc.readyReadStandardError.connect(self._read_stderr)
        self._proc.finished.connect(self._on_finished)
        self._proc.errorOccurred.connect(self._on_error)
        self._proc.started.connect(self._lower_priority)
        self._buffer = bytearray()
        self._discarding = False
        self._stderr: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._run_dir: Path | None = None
        self._grace = QTimer(self)
        self._grace.setSingleShot(True)
        self._grace.setInterval(grace_ms)
        self._grace.timeout.connect(self.kill)
        self.cancel_requested = False
        self.events: list[Event] = []

    # ------------------------------------------------------------------ control

    def start(self, argv: list[str], run_dir: Path, env: dict[str, str] | None = None) -> None:
        """Start ``argv`` (program first) with ``run_dir`` as working folder."""
        if self.is_running():
            raise RuntimeError("a training process is already running")
        self._run_dir = run_dir
        self._buffer.clear()
        self.events.clear()
        self.cancel_requested = False
        if env is not None:
            qenv = QProcessEnvironment()
            for key, value in env.items():
                qenv.insert(key, value)
            self._proc.setProcessEnvironment(qenv)
        self._proc.setWorkingDirectory(str(run_dir))
        self._proc.start(argv[0], argv[1:])

    def is_running(self) -> bool:
        """True while the child runs (or is starting)."""
        return self._proc.state() != QProcess.ProcessState.NotRunning

    def pid(self) -> int:
        """The child's process id (0 when not running)."""
        return int(self._proc.processId())

    def cancel(self) -> None:
        """Ask the child to stop (STOP file); kill it and its descendants after the grace."""
        if not self.is_running() or self._run_dir is None:
            return
        self.cancel_requested = True
        try:
            request_stop(self._run_dir)
        except OSError as exc:  # the folder vanished: nothing left to ask politely
            log.warning("cannot write the STOP file (%s); killing the training process", exc)
            self.kill()
            return
        self._grace.start()

    def kill(self) -> None:
        """Kill the child and every descendant now (DataLoader workers included)."""
        pid = self.pid()
        if pid:
            try:
                children = psutil.Process(pid).children(recursive=True)
            except psutil.Error:
                children = []
            for child in children:
                try:
                    child.kill()
                except psutil.Error:
                    pass
        if self.is_running():
            self._proc.kill()

    def _lower_priority(self) -> None:
        # Training saturates every core; at normal priority the scheduler would share them
        # evenly with the GUI thread and the GUI would stall for hundreds of ms (R24). The
        # child's threads (torch's pool is created later) inherit this priority.
        try:
            child = psutil.Process(self.pid())
            if psutil.WINDOWS:
                child.nice(psutil.BELOW_NORMAL_PRIORITY_CLASS)
            else:
                child.nice(max(child.nice(), CHILD_NICENESS))
        except (psutil.Error, OSError) as exc:
            log.info("cannot lower the training process's priority: %s", exc)

    def wait_finished(self, msecs: int = 30_000) -> bool:
        """Block until the child exits (tests and shutdown only)."""
        return bool(self._proc.waitForFinished(msecs))

    def stderr_tail(self) -> str:
        """The last lines the child wrote to stderr."""
        return "\n".join(self._stderr)

    # ------------------------------------------------------------------ stream

    def feed(self, data: bytes) -> None:
        """Split ``data`` into lines and emit their events (public for replaying recordings)."""
        self._buffer += data
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                break
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            if self._discarding:
                self._discarding = False
                continue
            self._handle_line(line)
        if len(self._buffer) > MAX_LINE_BYTES:
            log.warning("training output line over %d bytes dropped", MAX_LINE_BYTES)
            self._buffer.clear()
            self._discarding = True

    def _handle_line(self, line: bytes) -> None:
        if not line.strip():
            return
        try:
            ev = parse_event(line)
        except EventParseError as exc:
            log.warning("ignored a malformed training event: %s", exc)
            self.malformed.emit(str(exc))
            return
        if ev is None:  # an event a newer trainer knows and this app does not
            return
        self.events.append(ev)
        self.event_received.emit(ev)

    def _read_stdout(self) -> None:
        self.feed(bytes(self._proc.readAllStandardOutput().data()))

    def _read_stderr(self) -> None:
        text = bytes(self._proc.readAllStandardError().data()).decode("utf-8", "replace")
        for line in text.splitlines():
            if line.strip():
                self._stderr.append(line[:500])

    def _on_finished(self, code: int, status: QProcess.ExitStatus) -> None:
        self._grace.stop()
        self._read_stdout()
        if self._buffer.strip() and not self._discarding:
            self._handle_line(bytes(self._buffer))  # a last line without its newline
        self._buffer.clear()
        self._discarding = False
        self.finished.emit(int(code), status == QProcess.ExitStatus.CrashExit)

    def _on_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self._grace.stop()
            self.failed_to_start.emit(
                f"The training program could not be started ({self._proc.errorString()})."
            )


__all__ = ["TrainingProcess"]
