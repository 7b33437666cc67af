"""Typed access to the workstation's QSettings, stored as an INI file in the data folder.

The file lives in ``data_dir()`` (``$SALL_DESKTOP_HOME`` in tests), never in the registry, so a
portable install and the test suite keep everything in one folder. Qt writes INI files through
``QSaveFile`` (temporary file + rename), which keeps them atomic (R3).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

from sall_desktop.services.paths import data_dir

MAX_RECENT = 8
THUMBNAIL_SIZES = (128, 160, 192, 256)


DEFAULT_INPUT_CACHE_GB = 4.0
"""About 27,000 inputs of a 224-px model, 80,000 of the 128-px demo model."""


class AppSettings:
    """The workstation's preferences (theme, thumbnail size, auto-advance, grader, shortcuts)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path if path is not None else data_dir() / "settings.ini"
        self.qsettings = QSettings(str(self.path), QSettings.Format.IniFormat)

    def _get(self, key: str, default: object) -> object:
        value = self.qsettings.value(key, default)
        return default if value is None else value

    def _bool(self, key: str, default: bool) -> bool:
        value = self._get(key, default)
        if isinstance(value, str):
            return value.lower() in ("1", "true", "yes")
        return bool(value)

    def _str(self, key: str, default: str = "") -> str:
        value = self._get(key, default)
        return value if isinstance(value, str) else default

    def sync(self) -> None:
        self.qsettings.sync()

    # ------------------------------------------------------------------ appearance
    @property
    def theme(self) -> str:
        value = self._str("appearance/theme", "dark")
        return value if value in ("dark", "light") else "dark"

    @theme.setter
    def theme(self, value: str) -> None:
        self.qsettings.setValue("appearance/theme", value)

    @property
    def thumbnail_size(self) -> int:
        try:
            value = int(str(self._get("appearance/thumbnail_size", 160)))
        except ValueError:
            return 160
        return value if value in THUMBNAIL_SIZES else 160

    @thumbnail_size.setter
    def thumbnail_size(self, value: int) -> None:
        self.qsettings.setValue("appearance/thumbnail_size", int(value))

    # ------------------------------------------------------------------ grading
    @property
    def auto_advance(self) -> bool:
        return self._bool("grading/auto_advance", True)

    @auto_advance.setter
    def auto_advance(self, value: bool) -> None:
        self.qsettings.setValue("grading/auto_advance", bool(value))

    @property
    def show_pair(self) -> bool:
        """Show the other eye of the same patient beside the current image."""
        return self._bool("viewer/show_pair", True)

    @show_pair.setter
    def show_pair(self, value: bool) -> None:
        self.qsettings.setValue("viewer/show_pair", bool(value))

    @property
    def grader(self) -> str:
        return self._str("grading/grader").strip()

    @grader.setter
    def grader(self, value: str) -> None:
        self.qsettings.setValue("grading/grader", value.strip())

    @property
    def team_store(self) -> str:
        """The team store's ``postgresql://`` address to grade into ("" : this workstation's own
        database). Never with a password (``services.team_store.team_url_problem``)."""
        return self._str("store/team_store").strip()

    @team_store.setter
    def team_store(self, value: str) -> None:
        self.qsettings.setValue("store/team_store", value.strip())

    # ------------------------------------------------------------------ model
    @property
    def blind_first(self) -> bool:
        """Hide the model's grade and overlay until the grader saved a grade (R10)."""
        return self._bool("model/blind_first", False)

    @blind_first.setter
    def blind_first(self, value: bool) -> None:
        self.qsettings.setValue("model/blind_first", bool(value))

    @property
    def auto_grade(self) -> bool:
        """Grade a newly opened folder with the model in the background."""
        return self._bool("model/auto_grade", True)

    @auto_grade.setter
    def auto_grade(self, value: bool) -> None:
        self.qsettings.setValue("model/auto_grade", bool(value))

    @property
    def low_confidence(self) -> float:
        """Top-probability threshold of the low-confidence flag, in (0, 1)."""
        try:
            value = float(str(self._get("model/low_confidence", 0.6)))
        except ValueError:
            return 0.6
        return value if 0.0 < value < 1.0 else 0.6

    @low_confidence.setter
    def low_confidence(self, value: float) -> None:
        self.qsettings.setValue("model/low_confidence", float(value))

    @property
    def input_cache_gb(self) -> float:
        """Disk kept for prepared model inputs, in GB (0: none; every grading decodes again)."""
        try:
            value = float(str(self._get("model/input_cache_gb", DEFAULT_INPUT_CACHE_GB)))
        except ValueError:
            return DEFAULT_INPUT_CACHE_GB
        return value if 0.0 <= value < 1e6 else DEFAULT_INPUT_CACHE_GB

    @input_cache_gb.setter
    def input_cache_gb(self, value: float) -> None:
        self.qsettings.setValue("model/input_cache_gb", float(value))

    @property
    def overlay_opacity(self) -> float:
        try:
            value = float(str(self._get("model/overlay_opacity", 0.45)))
        except ValueError:
            return 0.45
        return min(0.95, max(0.05, value))

    @overlay_opacity.setter
    def overlay_opacity(self, value: float) -> None:
        self.qsettings.setValue("model/overlay_opacity", float(value))

    @property
    def overlay_colormap(self) -> str:
        return self._str("model/overlay_colormap", "jet")

    @overlay_colormap.setter
    def overlay_colormap(self, value: str) -> None:
        self.qsettings.setValue("model/overlay_colormap", value)

    @property
    def triage_order(self) -> str:
        """The triage queue's ordering (a ``TriageOrder`` value), kept across restarts."""
        return self._str("triage/order", "uncertainty")

    @triage_order.setter
    def triage_order(self, value: str) -> None:
        self.qsettings.setValue("triage/order", value)

    # ------------------------------------------------------------------ folders
    @property
    def recent_folders(self) -> list[str]:
        value = self._get("folders/recent", [])
        if isinstance(value, str):
            value = [value]
        return [str(v) for v in value if v][:MAX_RECENT] if isinstance(value, list) else []

    def add_recent_folder(self, folder: str) -> None:
        folders = [folder] + [f for f in self.recent_folders if f != folder]
        self.qsettings.setValue("folders/recent", folders[:MAX_RECENT])

    # ------------------------------------------------------------------ shortcuts
    def shortcut(self, action_id: str) -> str | None:
        """The user's key sequence for an action, "" for no key at all, or None for the default."""
        value = self.qsettings.value(f"shortcuts/{action_id}")
        return value if isinstance(value, str) else None

    def shortcut_overrides(self, action_ids: Iterable[str]) -> dict[str, str | None]:
        """``shortcut`` of each id: the input of ``gui.shortcuts.bindings``."""
        return {i: self.shortcut(i) for i in action_ids}

    def set_shortcut(self, action_id: str, keys: str | None) -> None:
        """Store ``keys`` ("" frees the action's keys); None goes back to the defaults."""
        if keys is None:
            self.qsettings.remove(f"shortcuts/{action_id}")
        else:
            self.qsettings.setValue(f"shortcuts/{action_id}", keys)

    # ------------------------------------------------------------------ window
    def window_state(self) -> tuple[QByteArray | None, QByteArray | None]:
        geometry = self.qsettings.value("window/geometry")
        state = self.qsettings.value("window/state")
        return (
            geometry if isinstance(geometry, QByteArray) else None,
            state if isinstance(state, QByteArray) else None,
        )

    def save_window_state(self, geometry: QByteArray, state: QByteArray) -> None:
        self.qsettings.setValue("window/geometry", geometry)
        self.qsettings.setValue("window/state", state)
