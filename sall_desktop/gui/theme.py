"""Dark (default: graders work in dim rooms) and light themes: a palette plus one style sheet."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication


@dataclass(frozen=True, slots=True)
class Theme:
    name: str
    window: str
    panel: str
    raised: str
    border: str
    text: str
    muted: str
    accent: str
    accent_text: str
    viewer: str
    danger: str
    warning: str
    success: str


DARK = Theme(
    name="dark",
    window="#17191c",
    panel="#1f2226",
    raised="#2a2e33",
    border="#343a40",
    text="#e3e6ea",
    muted="#8d96a0",
    accent="#3aa3c9",
    accent_text="#0c1418",
    viewer="#000000",
    danger="#e0605a",
    warning="#e0a23a",
    success="#4cb87a",
)

LIGHT = Theme(
    name="light",
    window="#eef0f3",
    panel="#f8f9fb",
    raised="#ffffff",
    border="#c9ced6",
    text="#1d2329",
    muted="#5d6772",
    accent="#1f7fa6",
    accent_text="#ffffff",
    viewer="#101214",
    danger="#c23b35",
    warning="#b7791f",
    success="#2f8a57",
)

THEMES = {"dark": DARK, "light": LIGHT}

# Colour per ICDR grade 0-4 and AMD grade 0-3: green (none) to red (sight-threatening), the
# convention of screening programme reports, so a glance at the grid shows the severe ones.
DR_COLOURS = ("#4cb87a", "#a8c545", "#e0c23a", "#e08a3a", "#e0504a")
AMD_COLOURS = ("#4cb87a", "#c9c14a", "#e08a3a", "#e0504a")
UNGRADABLE_COLOUR = "#8d96a0"


def theme_named(name: str) -> Theme:
    return THEMES.get(name, DARK)


def _style_sheet(t: Theme) -> str:
    return f"""
QWidget {{ color: {t.text}; font-size: 10pt; }}
QMainWindow, QDialog {{ background: {t.window}; }}
QFrame#panel, QWidget#panel {{ background: {t.panel}; }}
QLabel#sectionTitle {{ color: {t.muted}; font-size: 8pt; font-weight: 600;
    letter-spacing: 1px; padding: 4px 2px 1px 2px; }}
QLabel#muted {{ color: {t.muted}; }}
QLabel#nhsCode {{ color: {t.accent}; border: 1px solid {t.accent}; border-radius: 3px;
    font-size: 9pt; font-weight: 700; padding: 1px 5px; }}
QLabel#besideGrades {{ background: {t.raised}; border-left: 3px solid {t.accent};
    border-radius: 3px; padding: 3px 6px; }}
QLabel#imageTitle {{ font-size: 11pt; font-weight: 600; }}
QLabel#badge {{ background: rgba(0,0,0,150); color: #ffffff; border-radius: 4px;
    padding: 3px 8px; font-size: 9pt; }}
QLabel#enhancedBadge {{ background: {t.warning}; color: #1a1204; border-radius: 4px;
    padding: 3px 8px; font-weight: 700; font-size: 9pt; }}
QLabel#eyeBadge {{ background: rgba(0,0,0,160); color: #ffffff; border-radius: 4px;
    padding: 3px 8px; font-weight: 700; }}
QLabel#saveState {{ border-radius: 4px; padding: 3px 0; font-weight: 600; }}
QLabel#saveState[state="saved"] {{ color: {t.success}; }}
QLabel#saveState[state="pending"] {{ color: {t.warning}; }}
QLabel#saveState[state="failed"] {{ background: {t.danger}; color: #ffffff; padding: 3px 8px; }}
QLabel#saveState[state="draft"] {{ color: {t.accent}; }}
QLabel#saveState[state="outbox"] {{ color: {t.accent}; }}
QLabel#fieldError {{ color: {t.danger}; }}
QLabel#teamStore {{ color: {t.accent}; padding: 0 8px; }}
QFrame#banner {{ border-radius: 0; padding: 2px; }}
QFrame#banner[severity="error"] {{ background: {t.danger}; }}
QFrame#banner[severity="warning"] {{ background: {t.warning}; }}
QFrame#banner[severity="info"] {{ background: {t.accent}; }}
QFrame#banner QLabel {{ color: #ffffff; font-weight: 600; }}
QFrame#banner[severity="warning"] QLabel {{ color: #1a1204; }}
QFrame#banner QPushButton {{ background: rgba(255,255,255,40);
    border: 1px solid rgba(255,255,255,120); color: #ffffff; padding: 3px 12px;
    border-radius: 3px; }}
QPushButton, QToolButton {{ background: {t.raised}; border: 1px solid {t.border};
    border-radius: 4px; padding: 4px 10px; }}
QPushButton:hover, QToolButton:hover {{ border-color: {t.accent}; }}
QPushButton:checked, QToolButton:checked {{ background: {t.accent}; color: {t.accent_text};
    border-color: {t.accent}; }}
QPushButton:disabled, QToolButton:disabled {{ color: {t.muted}; background: {t.panel}; }}
QPushButton#gradeButton {{ min-width: 28px; min-height: 22px; padding: 1px 8px; text-align: left;
    border-left: 4px solid {t.border}; }}
QToolButton::menu-indicator {{ image: none; width: 0; }}
QPushButton#gradeButton:checked {{ font-weight: 700; }}
QPushButton#primary {{ background: {t.accent}; color: {t.accent_text}; border-color: {t.accent};
    font-weight: 600; }}
QLineEdit, QPlainTextEdit, QComboBox, QSpinBox, QDoubleSpinBox, QKeySequenceEdit {{
    background: {t.raised}; border: 1px solid {t.border}; border-radius: 4px; padding: 3px 6px;
    selection-background-color: {t.accent}; selection-color: {t.accent_text}; }}
QLineEdit:focus, QPlainTextEdit:focus, QComboBox:focus {{ border-color: {t.accent}; }}
QComboBox QAbstractItemView {{ background: {t.raised}; border: 1px solid {t.border};
    selection-background-color: {t.accent}; }}
QListView, QTreeView, QTableView, QTextBrowser {{ background: {t.panel}; border: none;
    selection-background-color: {t.accent}; selection-color: {t.accent_text}; }}
QListView#grid {{ background: {t.window}; }}
QHeaderView::section {{ background: {t.raised}; border: none; padding: 4px; color: {t.muted}; }}
QGraphicsView {{ background: {t.viewer}; border: none; }}
QSplitter::handle {{ background: {t.border}; }}
QSplitter::handle:horizontal {{ width: 1px; }}
QSplitter::handle:vertical {{ height: 1px; }}
QStatusBar {{ background: {t.panel}; border-top: 1px solid {t.border}; color: {t.muted}; }}
QStatusBar QLabel {{ color: {t.muted}; padding: 0 8px; }}
QMenuBar {{ background: {t.panel}; border-bottom: 1px solid {t.border}; }}
QMenuBar::item:selected {{ background: {t.raised}; }}
QMenu {{ background: {t.raised}; border: 1px solid {t.border}; }}
QMenu::item:selected {{ background: {t.accent}; color: {t.accent_text}; }}
QToolBar {{ background: {t.panel}; border: none; spacing: 4px; padding: 2px 6px; }}
QSlider::groove:horizontal {{ height: 4px; background: {t.border}; border-radius: 2px; }}
QSlider::handle:horizontal {{ background: {t.accent}; width: 12px; margin: -5px 0;
    border-radius: 6px; }}
QProgressBar {{ background: {t.raised}; border: 1px solid {t.border}; border-radius: 3px;
    text-align: center; height: 14px; }}
QProgressBar::chunk {{ background: {t.accent}; border-radius: 2px; }}
QScrollBar:vertical {{ background: transparent; width: 10px; margin: 0; }}
QScrollBar::handle:vertical {{ background: {t.border}; border-radius: 4px; min-height: 24px; }}
QScrollBar:horizontal {{ background: transparent; height: 10px; margin: 0; }}
QScrollBar::handle:horizontal {{ background: {t.border}; border-radius: 4px; min-width: 24px; }}
QScrollBar::add-line, QScrollBar::sub-line {{ width: 0; height: 0; }}
QToolTip {{ background: {t.raised}; color: {t.text}; border: 1px solid {t.border}; }}
QTabWidget::pane {{ border: 1px solid {t.border}; }}
QTabBar::tab {{ background: {t.panel}; padding: 5px 12px; border: 1px solid {t.border}; }}
QTabBar::tab:selected {{ background: {t.raised}; border-bottom-color: {t.accent}; }}
"""


def apply_theme(app: QApplication, name: str) -> Theme:
    """Apply the named theme ("dark" or "light") to the whole application; return it."""
    t = theme_named(name)
    app.setStyle("Fusion")
    palette = QPalette()
    roles = {
        QPalette.ColorRole.Window: t.window,
        QPalette.ColorRole.WindowText: t.text,
        QPalette.ColorRole.Base: t.panel,
        QPalette.ColorRole.AlternateBase: t.raised,
        QPalette.ColorRole.Text: t.text,
        QPalette.ColorRole.Button: t.raised,
        QPalette.ColorRole.ButtonText: t.text,
        QPalette.ColorRole.Highlight: t.accent,
        QPalette.ColorRole.HighlightedText: t.accent_text,
        QPalette.ColorRole.ToolTipBase: t.raised,
        QPalette.ColorRole.ToolTipText: t.text,
        QPalette.ColorRole.PlaceholderText: t.muted,
        QPalette.ColorRole.Mid: t.border,
        QPalette.ColorRole.Dark: t.window,
    }
    for role, colour in roles.items():
        palette.setColor(role, QColor(colour))
    palette.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text, QColor(t.muted))
    palette.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.ButtonText, QColor(t.muted))
    palette.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.WindowText, QColor(t.muted))
    app.setPalette(palette)
    app.setStyleSheet(_style_sheet(t))
    app.setProperty("sall_theme", t.name)
    return t


def current_theme(app: QApplication) -> Theme:
    name = app.property("sall_theme")
    return theme_named(name if isinstance(name, str) else "dark")
