"""Keep libjpeg's and libpng's warnings off the process's stderr (issue 22, item 8).

libjpeg prints "Corrupt JPEG data: ..." (libpng "libpng error: ...") from C straight to file
descriptor 2, and OpenCV gives no hook to stop it: a folder of damaged files fills the terminal
or the app's log with lines nobody can act on (the file's ``LoadError``, or its decoded pixels,
say what matters).

While a decode runs inside :func:`decoder_output_filtered`, descriptor 2 points at a private
temporary file. When the last concurrent decode leaves, the descriptor is restored and every
captured line that is not such a warning is copied to the real stderr: another thread's
output written meanwhile is delayed, not lost. One thing is lost: a traceback written while the
process dies inside a decode (faulthandler's, on a segfault) goes to the temporary file.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

#: Lines libjpeg (libjpeg-turbo's jerror.h warnings) and libpng write for a damaged file.
DECODER_WARNING = re.compile(
    rb"^(?:Corrupt JPEG data|Premature end of JPEG file|Invalid SOS parameters"
    rb"|Inconsistent progression sequence|Application transferred too few scanlines"
    rb"|Warning: |Unsupported marker type|Bogus |JPEG datastream contains no image"
    rb"|libpng error: |libpng warning: "
    # pylibjpeg-openjpeg's colour conversion of a damaged frame (the frame is refused anyway).
    rb"|\tCAN NOT CONVERT|lib/interface/color\.c:)"
)

_lock = threading.Lock()
_active = 0
_saved_fd = -1
_capture: IO[bytes] | None = None


@contextmanager
def decoder_output_filtered() -> Iterator[None]:
    """Run the block with the decoders' warnings captured and dropped (see the module docstring).

    Re-entrant and thread-safe: overlapping decodes share one capture window. Where descriptor
    2 cannot be redirected (no such descriptor, or the platform refuses) the block runs as is.
    """
    entered = _enter()
    try:
        yield
    finally:
        if entered:
            _leave()


def _enter() -> bool:
    global _active, _saved_fd, _capture
    with _lock:
        if _active == 0:
            try:
                if _capture is None:
                    _capture = tempfile.TemporaryFile(prefix="sall-decoder-stderr-")
                _flush_python_stderr()
                _saved_fd = os.dup(2)
                os.dup2(_capture.fileno(), 2)
            except OSError:
                return False
        _active += 1
        return True


def _leave() -> None:
    global _active, _saved_fd
    with _lock:
        _active -= 1
        if _active > 0 or _capture is None:
            return
        _flush_python_stderr()
        os.dup2(_saved_fd, 2)
        os.close(_saved_fd)
        _saved_fd = -1
        _forward(_capture)


def _flush_python_stderr() -> None:
    try:
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):
        pass  # no stderr (a windowed app) or a closed one


def _forward(capture: IO[bytes]) -> None:
    """Copy the captured lines that are not decoder warnings to descriptor 2; empty the file."""
    capture.seek(0)
    captured = capture.read()
    capture.seek(0)
    capture.truncate()
    kept = [line for line in captured.splitlines(keepends=True) if not DECODER_WARNING.match(line)]
    if kept:
        try:
            os.write(2, b"".join(kept))
        except OSError:
            pass
