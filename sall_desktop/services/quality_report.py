"""The grader quality report as a file a QA lead can email: HTML, PDF or PNG; and as text.

The figures come from ``services.quality``; this module only lays them out. Matplotlib draws on
its own ``Figure`` with an Agg canvas, never through pyplot or ``matplotlib.use``: the GUI
imports this module too and its backend must stay as it is. The HTML is one self-contained file
(inline CSS, plots as base64 PNG, no script, no external address) because it travels by email
and is opened offline. Grader and test-set names are user input: HTML-escaped, and drawn with
mathtext off so a ``$`` in a name is text. Every file is written whole or not at all.
"""

from __future__ import annotations

import io
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from sall_desktop.services.quality import DR_LABELS, GraderStats, QualityReport, Standards

TITLE = "Grader quality report"
HEADER: tuple[str, ...] = (
    "Grader",
    "Levels",
    "Images",
    "Ungradable",
    "Own final",
    "Referable sensitivity",
    "Referable specificity",
    "Any-DR sensitivity",
    "Any-DR specificity",
    "DR QWK",
    "Flag",
)
TABLE_ROWS_PER_PAGE = 18
"""Graders per table on a PDF page (more continue on the next page)."""
MATRICES_PER_PAGE = 12
"""Confusion matrices per PDF page (a 3 x 4 grid)."""
_A4_PORTRAIT = (8.27, 11.69)
_PNG_META = {"Software": "SALL Desktop"}
_NAME_CHARS = 22
"""Longest grader name drawn in a figure; the HTML table always shows the whole name."""
# ---------------------------------------------------------------- words and numbers


def _num(x: float, digits: int = 2) -> str:
    return "—" if math.isnan(x) else f"{x:.{digits}f}"


def _with_ci(x: float, ci: tuple[float, float]) -> str:
    if math.isnan(x):
        return "—"
    if math.isnan(ci[0]):
        return _num(x)
    return f"{_num(x)} ({_num(ci[0])}–{_num(ci[1])})"


def _proportion(x: float, ci: tuple[float, float], hits: int, total: int) -> str:
    return "—" if total == 0 else f"{_with_ci(x, ci)} {hits}/{total}"


def _flag_text(g: GraderStats) -> str:
    if g.flagged:
        return "FLAG: " + "; ".join(g.flag_reasons)
    if g.notes:
        return "; ".join(g.notes)
    return "ok"


def table_row(g: GraderStats) -> list[str]:
    """One grader's row of the table, in :data:`HEADER` order (display text, not escaped)."""
    ref, dr = g.referable, g.any_dr
    return [
        g.grader,
        ", ".join(g.levels),
        str(g.images),
        f"{g.ungradable_rate * 100:.1f} % ({g.ungradable}/{g.rows})",
        str(g.own_final),
        _proportion(ref.sensitivity, ref.sensitivity_ci, ref.tp, ref.positives),
        _proportion(ref.specificity, ref.specificity_ci, ref.tn, ref.negatives),
        _proportion(dr.sensitivity, dr.sensitivity_ci, dr.tp, dr.positives),
        _proportion(dr.specificity, dr.specificity_ci, dr.tn, dr.negatives),
        f"{_with_ci(g.qwk, g.qwk_ci)} n={g.qwk_n}" if g.qwk_n else "—",
        _flag_text(g),
    ]


def standards_text(s: Standards) -> str:
    return (
        f"referable DR sensitivity ≥ {s.min_sensitivity:g}, "
        f"specificity ≥ {s.min_specificity:g} (point estimates)"
    )


def alpha_text(report: QualityReport) -> str:
    if math.isnan(report.team_alpha):
        return (
            "Team agreement (Krippendorff's alpha, ordinal, DR): cannot be computed "
            f"({report.alpha_images} images graded by two graders or more)."
        )
    return (
        f"Team agreement (Krippendorff's alpha, ordinal, DR): {report.team_alpha:.3f} over "
        f"{report.alpha_images} images graded by two graders or more."
    )


def _printable(name: str) -> str:
    # A name is user input; a control character in it must not drive the reader's terminal.
    return "".join(c if c.isprintable() else "?" for c in name)


def summary_lines(report: QualityReport) -> list[str]:
    """A short plain-text summary for the command line: a header, then one line per grader."""
    lines = [
        f"{TITLE}, {when(report.created_at)}: {report.images} images, {report.rows} gradings; "
        f"standards: {standards_text(report.standards)}",
        alpha_text(report),
    ]

    def grader_line(g: GraderStats, prefix: str = "") -> str:
        ref = g.referable
        return (
            f"{prefix}{_printable(g.grader)}: {g.images} images, "
            f"ungradable {g.ungradable_rate * 100:.1f} %, "
            f"referable sensitivity {_with_ci(ref.sensitivity, ref.sensitivity_ci)}, "
            f"specificity {_with_ci(ref.specificity, ref.specificity_ci)}, "
            f"QWK {_with_ci(g.qwk, g.qwk_ci)} — {_flag_text(g)}"
        )

    lines += [grader_line(g) for g in report.graders]
    for test in report.test_sets:
        lines += [grader_line(g, f"[test set {_printable(test.name)}] ") for g in test.graders]
    return lines


# ---------------------------------------------------------------- figures


def when(created_at: str) -> str:
    """``2026-12-07 18:20 UTC`` for an ISO-8601 time (the text as given if it is not one)."""
    try:
        moment = datetime.fromisoformat(created_at)
    except ValueError:
        return created_at
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _short(name: str) -> str:
    return name if len(name) <= _NAME_CHARS else name[: _NAME_CHARS - 1] + "…"


def _whiskers(x: float, ci: tuple[float, float]) -> list[list[float]]:
    # Never negative: errorbar refuses a bound a rounding error on the wrong side of the point.
    return [[max(0.0, x - ci[0])], [max(0.0, ci[1] - x)]]


def _draw_scatter(ax: Axes, graders: Sequence[GraderStats], standards: Standards) -> None:
    """Referable sensitivity against specificity with Wilson whiskers; the standards dashed."""
    shown = [
        g
        for g in graders
        if not math.isnan(g.referable.sensitivity) and not math.isnan(g.referable.specificity)
    ]
    # Each axis from a little below its lowest whisker or standard, so good graders do not
    # crowd into one corner.
    spec_lows = [g.referable.specificity_ci[0] for g in shown] + [standards.min_specificity]
    sens_lows = [g.referable.sensitivity_ci[0] for g in shown] + [standards.min_sensitivity]
    ax.set_xlim(max(0.0, min(spec_lows) - 0.03), 1.005)
    ax.set_ylim(max(0.0, min(sens_lows) - 0.03), 1.005)
    ax.fill_between(
        [standards.min_specificity, 1.005],
        standards.min_sensitivity,
        1.005,
        color="#2e7d32",
        alpha=0.12,
        label="meets both standards",
    )
    ax.axvline(standards.min_specificity, color="#555", linestyle="--", linewidth=1)
    ax.axhline(standards.min_sensitivity, color="#555", linestyle="--", linewidth=1)
    x_span, y_span = 1.005 - ax.get_xlim()[0], 1.005 - ax.get_ylim()[0]
    placed: list[tuple[float, float]] = []
    for g in shown:
        ref = g.referable
        # Graders who meet the standards crowd into the top-right corner: each label near an
        # earlier one steps down a line so no two names print over each other.
        near = sum(
            1
            for x, y in placed
            if abs(x - ref.specificity) < 0.3 * x_span and abs(y - ref.sensitivity) < 0.05 * y_span
        )
        placed.append((ref.specificity, ref.sensitivity))
        colour, marker = ("#c62828", "X") if g.flagged else ("#1565c0", "o")
        ax.errorbar(
            ref.specificity,
            ref.sensitivity,
            xerr=_whiskers(ref.specificity, ref.specificity_ci),
            yerr=_whiskers(ref.sensitivity, ref.sensitivity_ci),
            fmt=marker,
            color=colour,
            markersize=8 if g.flagged else 6,
            capsize=3,
            linewidth=1,
        )
        ax.annotate(
            _short(g.grader),
            (ref.specificity, ref.sensitivity),
            xytext=(5, 5 - 11 * near),
            textcoords="offset points",
            fontsize=8,
            color=colour,
            parse_math=False,
        )
    ax.set_xlabel("referable DR specificity (95 % Wilson CI)")
    ax.set_ylabel("referable DR sensitivity (95 % Wilson CI)")
    left_out = len(graders) - len(shown)
    note = f"; {left_out} grader(s) without cases not shown" if left_out else ""
    ax.set_title(f"Against the standards (dashed); red X: flagged{note}", fontsize=9)
    ax.legend(loc="lower left", fontsize=7)
    ax.grid(True, alpha=0.3)


def _draw_confusion(ax: Axes, g: GraderStats) -> None:
    """A small DR heatmap with counts; colour is the share of the final grade's column."""
    counts = [list(row) for row in g.confusion_dr]
    totals = [sum(row[j] for row in counts) for j in range(len(DR_LABELS))]
    shares = [[c / totals[j] if totals[j] else 0.0 for j, c in enumerate(row)] for row in counts]
    ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    for i, row in enumerate(counts):
        for j, c in enumerate(row):
            if c:
                dark = shares[i][j] > 0.6
                ax.text(
                    j,
                    i,
                    str(c),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if dark else "black",
                )
    ticks = range(len(DR_LABELS))
    names = [str(label) for label in DR_LABELS]
    ax.set_xticks(ticks, names, fontsize=7)
    ax.set_yticks(ticks, names, fontsize=7)
    ax.set_xlabel("final", fontsize=7)
    ax.set_ylabel("grader", fontsize=7)
    ax.set_title(_short(g.grader), fontsize=8, parse_math=False)


def _draw_table(ax: Axes, graders: Sequence[GraderStats]) -> None:
    ax.axis("off")
    if not graders:
        ax.text(0.0, 0.5, "No gradings.", fontsize=10)
        return
    columns = (2, 3, 5, 6, 9)  # the ones that fit a page beside the name: the HTML has them all
    cells: list[list[str]] = []
    for g in graders:
        texts = table_row(g)
        flag = "FLAG" if g.flagged else ("too few cases" if g.notes else "ok")
        cells.append([_short(g.grader), *(texts[c] for c in columns), flag])
    labels = [HEADER[0], *(HEADER[c] for c in columns), HEADER[-1]]
    table = ax.table(cellText=cells, colLabels=labels, loc="upper center", cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(6.5)
    table.auto_set_column_width(list(range(len(labels))))
    for (row, _), cell in table.get_celld().items():
        cell.get_text().set_parse_math(False)
        if row > 0 and graders[row - 1].flagged:
            cell.set_facecolor("#fde2e2")


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Figure, dpi: int = 100) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, metadata=_PNG_META)
    return buffer.getvalue()


def scatter_png(graders: Sequence[GraderStats], standards: Standards) -> bytes:
    figure = _figure(6.0, 5.0)
    _draw_scatter(figure.add_subplot(), graders, standards)
    figure.tight_layout()
    return _png(figure)


def confusion_png(g: GraderStats) -> bytes:
    figure = _figure(2.8, 2.8)
    _draw_confusion(figure.add_subplot(), g)
    figure.tight_layout()
    return _png(figure)


def _header_text(report: QualityReport) -> str:
    return (
        f"{TITLE} — {when(report.created_at)}\n"
        f"Standards: {standards_text(report.standards)}\n"
        f"{report.images} images, {report.rows} gradings; test-set gradings: {report.test_rows}\n"
        f"{alpha_text(report)}"
    )


def _summary_figure(report: QualityReport, graders: Sequence[GraderStats], head: str) -> Figure:
    """Header, scatter and table on one page (``graders`` may be the first page's share)."""
    figure = _figure(*_A4_PORTRAIT)
    figure.text(0.06, 0.97, head, va="top", fontsize=9, parse_math=False)
    _draw_scatter(figure.add_axes((0.14, 0.50, 0.72, 0.36)), graders, report.standards)
    _draw_table(figure.add_axes((0.03, 0.03, 0.94, 0.40)), graders[:TABLE_ROWS_PER_PAGE])
    return figure


def _pdf_pages(report: QualityReport, head: str, graders: Sequence[GraderStats]) -> list[Figure]:
    pages = [_summary_figure(report, graders, head)]
    for start in range(TABLE_ROWS_PER_PAGE, len(graders), TABLE_ROWS_PER_PAGE):
        page = _figure(*_A4_PORTRAIT)
        page.text(0.06, 0.97, f"{head.splitlines()[0]} (continued)", va="top", parse_math=False)
        _draw_table(page.add_axes((0.03, 0.03, 0.94, 0.90)), graders[start:][:TABLE_ROWS_PER_PAGE])
        pages.append(page)
    for start in range(0, len(graders), MATRICES_PER_PAGE):
        page = _figure(*_A4_PORTRAIT)
        page.suptitle("DR confusion matrices (rows: grader, columns: final; U = ungradable)")
        chunk = graders[start : start + MATRICES_PER_PAGE]
        for k, g in enumerate(chunk):
            _draw_confusion(page.add_subplot(4, 3, k + 1), g)
        page.tight_layout(rect=(0.0, 0.0, 1.0, 0.96))
        pages.append(page)
    return pages


def pdf_bytes(report: QualityReport) -> bytes:
    """The report as a multi-page PDF: summary, more table if needed, confusion matrices; then
    the same for each test set."""
    pages = _pdf_pages(report, _header_text(report), report.graders)
    for test in report.test_sets:
        head = (
            f"Test set: {test.name} — {test.images} images, {test.rows} gradings against the "
            f"reference answers\nStandards: {standards_text(report.standards)}"
        )
        pages += _pdf_pages(report, head, test.graders)
    buffer = io.BytesIO()
    with PdfPages(buffer, metadata={"Title": TITLE, "Creator": "SALL Desktop"}) as pdf:
        for page in pages:
            pdf.savefig(page)
    return buffer.getvalue()


def png_bytes(report: QualityReport) -> bytes:
    """The scatter and the table summary of programme work as one PNG."""
    table_in = 0.4 + 0.22 * (max(len(report.graders), 1) + 1)
    height = 1.0 + 4.4 + 0.7 + table_in  # inches: header, scatter, its axis labels, table
    figure = _figure(11.0, height)
    figure.text(
        0.03, 1.0 - 0.1 / height, _header_text(report), va="top", fontsize=9, parse_math=False
    )
    scatter = figure.add_axes((0.3, (table_in + 0.7) / height, 0.4, 4.2 / height))
    _draw_scatter(scatter, report.graders, report.standards)
    _draw_table(figure.add_axes((0.02, 0.02 / height, 0.96, table_in / height)), report.graders)
    return _png(figure)


# ---------------------------------------------------------------- files


def _write_atomically(out: Path, data: bytes) -> None:
    """Write ``data`` to ``out`` whole or not at all: a temporary file beside it, then replace."""
    fd, temp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        # mkstemp makes the file private to its owner; a report is a document to share.
        os.chmod(temp, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, out)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def render_html(report: QualityReport, out: Path) -> None:
    from sall_desktop.services.quality_html import html_text  # it draws with this module

    _write_atomically(out, html_text(report).encode("utf-8"))


def render_pdf(report: QualityReport, out: Path) -> None:
    _write_atomically(out, pdf_bytes(report))


def render_png(report: QualityReport, out: Path) -> None:
    _write_atomically(out, png_bytes(report))


RENDERERS: dict[str, Callable[[QualityReport, Path], None]] = {
    ".html": render_html,
    ".htm": render_html,
    ".pdf": render_pdf,
    ".png": render_png,
}


def write_report(report: QualityReport, out: Path) -> None:
    """Write the report in the format ``out``'s suffix names (``.html``/``.htm``, ``.pdf``,
    ``.png``); any other suffix raises ValueError before anything is written."""
    renderer = RENDERERS.get(out.suffix.lower())
    if renderer is None:
        raise ValueError("the report must be .html, .pdf or .png")
    renderer(report, out)
