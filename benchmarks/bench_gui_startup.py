"""GUI start-up benchmark (issue 5, P7): the window is shown < 1.5 s after launch, without torch.

Launches ``python -m sall_desktop gui FOLDER`` (the real entry point, offscreen Qt) several times
with a probe that notes when the main window is visible and painted, and whether ``torch`` was
imported by then. Prints, measured in this one run: the median and worst time from process
launch to the painted window, the ratio to the 1.5 s goal, and the share of it spent importing
Python and PySide6 alone (a bare ``QApplication`` start, measured the same way).

Run: ``.venv/bin/python benchmarks/bench_gui_startup.py`` (or ``make bench``).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np

RUNS = 5

PROBE = textwrap.dedent(
    """
    import os, sys, time
    t0 = float(os.environ["BENCH_T0"])
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication
    app = QApplication(sys.argv[:1])

    def check():
        from sall_desktop.gui.main_window import MainWindow
        shown = [w for w in app.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]
        if not shown:
            QTimer.singleShot(2, check)
            return
        window = shown[0]
        window.repaint()  # count the first paint, not only the show
        print(f"SHOWN {time.time() - t0:.4f} TORCH {'torch' in sys.modules}", flush=True)
        window._closing_confirmed = True
        window.close()

    QTimer.singleShot(0, check)
    from sall_desktop.__main__ import main
    sys.exit(main(sys.argv[1:]))
    """
)

BARE = textwrap.dedent(
    """
    import os, time
    t0 = float(os.environ["BENCH_T0"])
    from PySide6.QtWidgets import QApplication, QMainWindow
    app = QApplication([])
    w = QMainWindow(); w.show(); w.repaint()
    print(f"SHOWN {time.time() - t0:.4f} TORCH False", flush=True)
    """
)


def launch(code: str, args: list[str], home: Path) -> tuple[float, bool]:
    env = {**os.environ, "SALL_DESKTOP_HOME": str(home), "QT_QPA_PLATFORM": "offscreen"}
    env["BENCH_T0"] = repr(time.time())
    out = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=120
    )
    for line in out.stdout.splitlines():
        if line.startswith("SHOWN"):
            _, seconds, _, torch = line.split()
            return float(seconds), torch == "True"
    raise RuntimeError(f"the window never showed:\n{out.stderr[-2000:]}")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "folder"
        folder.mkdir()
        rng = np.random.default_rng(0)
        for i in range(10):
            cv2.imwrite(
                str(folder / f"{i}_left.jpg"), rng.integers(0, 255, (256, 256, 3), np.uint8)
            )
        home = Path(tmp) / "home"
        home.mkdir()
        launch(PROBE, ["gui", str(folder)], home)  # first run creates the database: not timed
        app_runs = [launch(PROBE, ["gui", str(folder)], home) for _ in range(RUNS)]
        bare_runs = [launch(BARE, [], home)[0] for _ in range(RUNS)]
    times = [t for t, _ in app_runs]
    torch_loaded = any(flag for _, flag in app_runs)
    median, worst = statistics.median(times), max(times)
    bare = statistics.median(bare_runs)
    print(
        f"P7 window shown and painted after launch: median {median:.2f} s, worst {worst:.2f} s "
        f"over {RUNS} runs (goal < 1.5 s; ratio {median / 1.5:.2f} of goal)"
    )
    print(f"P7 torch imported before the window showed: {torch_loaded} (goal: False)")
    print(
        f"P7 bare Python + PySide6 window, same probe: median {bare:.2f} s "
        f"({bare / median:.0%} of the app's start-up)"
    )
    print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
