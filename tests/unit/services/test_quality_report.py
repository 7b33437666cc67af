"""The grader quality report as files: one self-contained HTML with names escaped, a PDF of
several pages, a PNG, the suffix chooses; files are written whole or not at all."""

from __future__ import annotations

import hashlib
import html
import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sall_desktop.domain.grades import Grading, UngradableReason
from sall_desktop.services import quality_report
from sall_desktop.services.quality import QualityReport, ReportRow, grader_quality
from sall_desktop.services.quality_report import summary_lines, write_report

NASTY = '<b>Dr "X" & Y</b> $a^$'
"""User input in a name: HTML, quotes, an ampersand, and mathtext that would not parse."""
NASTY_SET = "<i>EQA</i> & co"
GRADERS = ("alice", "bob", NASTY)


def _grading(image: str, grader: str, dr: int | None) -> Grading:
    if dr is None:
        return Grading(image, grader, gradable=False, ungradable_reason=UngradableReason.FIELD)
    return Grading(image, grader, dr_grade=dr, amd_grade=0, dme=0)


def _rows(n: int, graders: tuple[str, ...], test_set: str = "") -> list[ReportRow]:
    """Everyone grades every image; the last grader misses a third of the referable ones."""
    rng = np.random.default_rng(len(test_set))
    rows = []
    for i in range(n):
        image = hashlib.sha256(f"{test_set}{i}".encode()).hexdigest()
        truth = None if i % 17 == 0 else int(rng.choice(5, p=[0.55, 0.15, 0.15, 0.1, 0.05]))
        final = _grading(image, "final", truth)
        for name in graders:
            dr = truth
            if truth is not None and truth >= 2 and name == NASTY and rng.random() < 0.35:
                dr = 1
            level = "test" if test_set else "primary"
            rows.append(ReportRow(name, level, image, _grading(image, name, dr), final, test_set))
    return rows


@pytest.fixture(scope="module")
def report() -> QualityReport:
    rows = _rows(120, GRADERS) + _rows(30, ("alice", NASTY), test_set=NASTY_SET)
    return grader_quality(rows, created_at="2026-11-25T17:50:01+00:00", n_boot=200)


def test_html_is_self_contained_with_every_name_escaped(
    report: QualityReport, tmp_path: Path
) -> None:
    out = tmp_path / "report.html"
    write_report(report, out)
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and "Grader quality report" in text
    for name in (*GRADERS, NASTY_SET):
        assert html.escape(name) in text
    assert NASTY not in text and "<b>" not in text and "<i>" not in text
    assert "data:image/png;base64," in text
    assert "http://" not in text and "https://" not in text
    assert "<script" not in text.lower() and ' src="data:' in text
    assert not re.search(r'src="(?!data:)', text)  # nothing is fetched from anywhere
    assert "2026-11-25 17:50 UTC" in text and "0.95" in text  # date and standards
    assert "Krippendorff" in text and "FLAG" in text
    assert text.count("<table>") == 2  # programme work, then the test set


def test_pdf_has_a_summary_page_and_confusion_pages(report: QualityReport, tmp_path: Path) -> None:
    out = tmp_path / "report.PDF"  # the suffix is read without case
    write_report(report, out)
    data = out.read_bytes()
    assert data.startswith(b"%PDF")
    pages = re.findall(rb"/Type\s*/Page(?![a-zA-Z])", data)
    assert len(pages) >= 4  # summary and matrices, for the programme and for the test set


def test_png_decodes_to_a_real_picture(report: QualityReport, tmp_path: Path) -> None:
    out = tmp_path / "report.png"
    write_report(report, out)
    with Image.open(io.BytesIO(out.read_bytes())) as image:
        pixels = np.asarray(image.convert("L"))
    assert pixels.shape[0] > 500 and pixels.shape[1] > 500
    assert pixels.std() > 5  # not a blank page


def test_a_wrong_suffix_writes_nothing(report: QualityReport, tmp_path: Path) -> None:
    for name in ("report.txt", "report", "report.html.bak"):
        with pytest.raises(ValueError, match=r"the report must be \.html, \.pdf or \.png"):
            write_report(report, tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_htm_is_html_too(report: QualityReport, tmp_path: Path) -> None:
    write_report(report, tmp_path / "r.htm")
    assert (tmp_path / "r.htm").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_a_failed_write_leaves_the_old_file_and_no_temporary(
    report: QualityReport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "report.html"
    out.write_text("the report of last month", encoding="utf-8")

    def refuse(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(quality_report.os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        write_report(report, out)
    assert out.read_text(encoding="utf-8") == "the report of last month"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_summary_lines_give_one_line_per_grader(report: QualityReport) -> None:
    lines = summary_lines(report)
    assert lines[0].startswith("Grader quality report, 2026-11-25 17:50 UTC")
    assert "Krippendorff" in lines[1]
    per_grader = lines[2:]
    assert len(per_grader) == len(report.graders) + len(report.test_sets[0].graders)
    flagged = [line for line in per_grader if NASTY in line and "FLAG" in line]
    assert flagged and all("FLAG" not in line for line in per_grader if NASTY not in line)


def test_summary_lines_keep_control_characters_out_of_the_terminal() -> None:
    image = hashlib.sha256(b"x").hexdigest()
    name = "eve\x1b[2J\nmallory"
    final = _grading(image, "final", 0)
    rep = grader_quality(
        [ReportRow(name, "primary", image, _grading(image, name, 0), final)],
        created_at="2026-01-01T00:00:00+00:00",
        n_boot=10,
    )
    (line,) = summary_lines(rep)[2:]
    assert line.startswith("eve?[2J?mallory: ") and "\x1b" not in line


def test_an_empty_report_and_a_grader_without_cases_still_render(tmp_path: Path) -> None:
    empty = grader_quality([], created_at="2026-01-01T00:00:00+00:00")
    image = hashlib.sha256(b"x").hexdigest()
    final = _grading(image, "final", None)
    lone = grader_quality(
        [ReportRow("una", "primary", image, _grading(image, "una", None), final)],
        created_at="2026-01-01T00:00:00+00:00",
        n_boot=10,
    )
    for which, rep in (("empty", empty), ("lone", lone)):
        for suffix in (".html", ".pdf", ".png"):
            write_report(rep, tmp_path / f"{which}{suffix}")
            assert (tmp_path / f"{which}{suffix}").stat().st_size > 0
    assert "too few cases" in (tmp_path / "lone.html").read_text(encoding="utf-8")
