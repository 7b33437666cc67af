"""The grader quality report as one self-contained HTML file a QA lead can send.

Plots are embedded as PNG data (drawn by :mod:`sall_desktop.services.quality_report`), styles
are inline, and a content security policy stops anything from loading or running when the file
is opened from an email. Every name is escaped: grader and test-set names are user input.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence

from sall_desktop.services.quality import GraderStats, QualityReport, Standards
from sall_desktop.services.quality_report import (
    HEADER,
    TITLE,
    alpha_text,
    confusion_png,
    scatter_png,
    standards_text,
    table_row,
    when,
)

_CSS = """
body{font-family:Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:17px;margin-top:28px;
border-bottom:1px solid #ccc}h3{font-size:15px}
table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #bbb;padding:4px 6px;
vertical-align:top}th{background:#eee;text-align:left}td.n{text-align:right}
tr.flag td{background:#fde2e2}.meta{color:#555}.grid{display:flex;flex-wrap:wrap;gap:8px}
figure{margin:0}figcaption{font-size:12px;text-align:center}img{max-width:100%}
"""


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def _html_table(graders: Sequence[GraderStats]) -> str:
    if not graders:
        return "<p>No gradings.</p>"
    numeric = {2, 4}
    head = "".join(f"<th>{html.escape(h)}</th>" for h in HEADER)
    body = []
    for g in graders:
        cells = "".join(
            f'<td class="n">{html.escape(text)}</td>'
            if c in numeric
            else f"<td>{html.escape(text)}</td>"
            for c, text in enumerate(table_row(g))
        )
        body.append(f'<tr class="flag">{cells}</tr>' if g.flagged else f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _html_section(graders: Sequence[GraderStats], standards: Standards) -> list[str]:
    parts = [_html_table(graders)]
    if graders:
        parts.append("<h3>Referable DR: sensitivity against specificity</h3>")
        parts.append(_img(scatter_png(graders, standards), "sensitivity against specificity"))
        parts.append("<h3>DR confusion matrices (rows: grader, columns: final)</h3>")
        figures = "".join(
            f"<figure>{_img(confusion_png(g), f'DR confusion matrix of {g.grader}')}"
            f"<figcaption>{html.escape(g.grader)}</figcaption></figure>"
            for g in graders
        )
        parts.append(f'<div class="grid">{figures}</div>')
    return parts


_HOW_TO_READ = (
    "Sensitivity and specificity count images both the grader and the final grade call "
    "gradable; ungradable answers show in the ungradable rate and in the U row and column of "
    "the confusion matrix. Intervals are 95 %: Wilson for proportions, a percentile bootstrap "
    "for the quadratic weighted kappa ({n_boot} resamples, seed {seed}). "
    "“Own final” counts gradings that are themselves the final grade (a single-graded normal, "
    "an agreed secondary grade, an arbitration): they agree with it by construction. "
    "A grader is flagged when a point estimate falls below the standard; with no cases to "
    "measure, the report says so and does not flag. Test sets are measured against their "
    "reference answers, apart from programme work."
)


def html_text(report: QualityReport) -> str:
    """The report as one self-contained HTML document."""
    esc = html.escape
    parts = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        # Defence in depth for a file opened from email: nothing may load or run.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "img-src data:; style-src 'unsafe-inline'\">",
        f"<title>{esc(TITLE)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(TITLE)}</h1>",
        f'<p class="meta">Created {esc(when(report.created_at))}. '
        f"Standards: {esc(standards_text(report.standards))}.</p>",
        f"<p>Programme work: {report.images} images, {report.rows} gradings. "
        f"Test-set gradings: {report.test_rows}.</p>",
        "<h2>Graders</h2>",
        f"<p>{esc(alpha_text(report))}</p>",
        *_html_section(report.graders, report.standards),
    ]
    for test in report.test_sets:
        parts.append(f"<h2>Test set: {esc(test.name)}</h2>")
        parts.append(
            f"<p>{test.images} images, {test.rows} gradings, each against the reference answer.</p>"
        )
        parts += _html_section(test.graders, report.standards)
    how = _HOW_TO_READ.format(n_boot=report.n_boot, seed=report.seed)
    parts += ["<h2>How to read this report</h2>", f"<p>{esc(how)}</p>", "</body></html>"]
    return "\n".join(parts)
