"""Background threads yield the CPU to the GUI thread.

Decoding, hashing and enhancement run on worker threads of the GUI process. On a busy machine the
operating system shares the cores evenly between runnable threads, so the GUI thread would wait
behind them and stall (R24). Lowering a worker thread's scheduling priority keeps the workers'
throughput when the machine is otherwise idle and lets the GUI thread run first when it is not.
"""

from __future__ import annotations

import os
import sys
import threading

BACKGROUND_NICENESS = 10
"""Linux "nice" increment for worker threads (0 = normal, 19 = lowest)."""

_lowered = threading.local()


def background_priority() -> None:
    """Lower the calling thread's scheduling priority once (Linux; a no-op elsewhere).

    Safe to call repeatedly, e.g. at the start of every task a pool runs.
    """
    if getattr(_lowered, "done", False):
        return
    _lowered.done = True
    if sys.platform.startswith("linux"):
        try:
            # On Linux a thread is a task with its own nice value; PRIO_PROCESS with the
            # thread's native id changes only this thread.
            current = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
            os.setpriority(
                os.PRIO_PROCESS, threading.get_native_id(), max(current, BACKGROUND_NICENESS)
            )
        except OSError:
            pass  # not permitted (sandbox): run at normal priority
