"""Runtime hook (``sall-desktop`` only): the Qt half of ``sall-desktop --self-test``.

``sall_desktop.services.self_test`` must not import Qt (docs/architecture.md), so it starts this
executable again with ``SALL_DESKTOP_QT_PROBE=<result file>``. This hook then, before the app
starts, creates an offscreen ``QApplication`` and a widget and decodes a JPEG through Qt's image
plugins (the spec trims them), writes ``ok ...`` or ``error ...`` to the result file and exits
(0 = ok, 3 = Qt started but cannot decode JPEG, 4 = Qt failed). Without the variable it does
nothing. The source-tree equivalent is ``self_test._QT_PROBE_SOURCE``; keep the two in step.
"""

import os
import sys


def _probe(result_file: str) -> int:
    def report(line: str) -> None:
        partial = result_file + ".partial"
        with open(partial, "w", encoding="utf-8") as handle:
            handle.write(line + "\n")
        os.replace(partial, result_file)

    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    try:
        from PySide6 import QtCore, QtGui, QtWidgets

        app = QtWidgets.QApplication(["sall-qt-probe"])
        widget = QtWidgets.QWidget()
        widget.resize(64, 64)
        widget.show()
        app.processEvents()
        jpeg = bytes.fromhex(os.environ.get("SALL_DESKTOP_QT_PROBE_JPEG", ""))
        image = QtGui.QImage.fromData(QtCore.QByteArray(jpeg))
        formats = " ".join(
            sorted(bytes(f.data()).decode() for f in QtGui.QImageReader.supportedImageFormats())
        )
        widget.close()
        if image.isNull():
            report(f"error Qt cannot decode JPEG; image formats: {formats}")
            return 3
        report(f"ok {app.platformName()} Qt {QtCore.qVersion()}; image formats: {formats}")
        return 0
    except Exception as exc:  # reported to the self-test, which prints it
        report(f"error {type(exc).__name__}: {exc}")
        return 4


_result = os.environ.pop("SALL_DESKTOP_QT_PROBE", "")
if _result:
    if sys.stdout is not None:
        sys.stdout.flush()
    os._exit(_probe(_result))
