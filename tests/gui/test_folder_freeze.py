"""An open folder's objects are kept out of full garbage collections once its scan is done, and
handed back when another folder opens or the window closes (``sall_desktop.gui.collector``)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.gui.conftest import WAIT_MS


def test_a_scanned_folder_is_frozen_until_another_opens(
    open_workstation: Callable[..., Any], image_folder: Callable[..., Path], qtbot: Any
) -> None:
    gc.unfreeze()
    ws = open_workstation(image_folder(6, name="first"))
    qtbot.waitUntil(lambda: gc.get_freeze_count() > 0, timeout=WAIT_MS)
    # A reference cycle made by the first folder's session, unreachable once it is gone: it
    # is frozen with the folder, and reclaimed only after the folder is handed back.
    cycle: list[Any] = []
    cycle.append(cycle)

    class Marker:
        pass

    marker = Marker()
    cycle.append(marker)
    gone = weakref.ref(marker)
    gc.freeze()  # as a scan finishing now would
    del cycle, marker
    gc.collect()
    assert gone() is not None  # frozen: the collector does not look at it

    window = ws.window
    second = image_folder(4, name="second")
    window.folders.open_folder(str(second))
    assert gc.get_freeze_count() == 0  # handed back before the new folder's rows
    gc.collect()
    assert gone() is None
    qtbot.waitUntil(lambda: not window.folders.scanning, timeout=WAIT_MS)
    assert gc.get_freeze_count() > 0  # the second folder, scanned, is frozen in its turn


def test_closing_the_window_hands_everything_back(
    open_workstation: Callable[..., Any], image_folder: Callable[..., Path], qtbot: Any
) -> None:
    gc.unfreeze()
    ws = open_workstation(image_folder(4))
    qtbot.waitUntil(lambda: gc.get_freeze_count() > 0, timeout=WAIT_MS)
    ws.window._closing_confirmed = True
    ws.window.close()
    assert gc.get_freeze_count() == 0
