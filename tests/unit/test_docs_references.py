"""The repository stands alone: every document it names exists, every requirement code it uses is
defined in ``docs/requirements.md``, and nothing points at documents kept outside it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
REQUIREMENTS = ROOT / "docs/requirements.md"

TEXT_SUFFIXES = {".py", ".md", ".sql", ".toml", ".spec", ".cfg", ".ini", ".txt", ".yml", ".yaml"}
TEXT_NAMES = {"Makefile", "run"}
SKIPPED_DIRS = {
    ".git",
    ".venv",
    "venv",
    "build",
    "dist",
    "node_modules",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
    ".import_linter_cache",
}

DESIGN_DOCS = ("architecture", "requirements", "grading-conventions", "sall-method", "reliability")
"""Design documents: referred to by their path in the repository (``docs/<name>.md``)."""

DOC_PATH = re.compile(r"(?<![\w.-])docs/[\w./-]*?\.md\b")
MD_LINK = re.compile(r"\]\(([^)\s#]+\.md)(?:#[^)]*)?\)")
BARE_DESIGN_DOC = re.compile(r"(?<![\w/.-])(" + "|".join(DESIGN_DOCS) + r")\.md\b")
NUMBERED_SECTION = re.compile(
    r"§\s*\d|\b(?:" + "|".join(DESIGN_DOCS) + r")(?:\.md)?`*\s+rule\s+\d", re.IGNORECASE
)
OUTSIDE = ("../" + "shared", "shared" + "/docs")
# Requirement codes start at R1; R0 is the NHS code for no retinopathy.
CODE = re.compile(r"\b(R[1-9]\d?|P\d)\b")
DEFINITION = re.compile(r"^### (R\d{1,2}|P\d) — ", re.MULTILINE)


def _text_files() -> Iterator[Path]:
    stack = [ROOT]
    while stack:
        folder = stack.pop()
        for entry in sorted(folder.iterdir()):
            if entry.is_dir():
                if entry.name not in SKIPPED_DIRS and not entry.name.endswith(".egg-info"):
                    stack.append(entry)
            elif entry.suffix in TEXT_SUFFIXES or entry.name in TEXT_NAMES:
                yield entry


def _lines() -> Iterator[tuple[Path, int, str]]:
    for path in _text_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            yield path, number, line


def _where(path: Path, number: int) -> str:
    return f"{path.relative_to(ROOT).as_posix()}:{number}"


def _in_docs(path: Path) -> bool:
    return DOCS in path.parents


def test_named_docs_exist() -> None:
    missing = [
        f"{_where(path, n)}: {name}"
        for path, n, line in _lines()
        for name in DOC_PATH.findall(line)
        if not (ROOT / name).is_file()
    ]
    assert not missing, "documents named but not in the repository:\n" + "\n".join(missing)


def test_markdown_links_to_documents_resolve() -> None:
    broken = [
        f"{_where(path, n)}: {target}"
        for path, n, line in _lines()
        if path.suffix == ".md"
        for target in MD_LINK.findall(line)
        if "://" not in target and not (path.parent / target).is_file()
    ]
    assert not broken, "links to missing documents:\n" + "\n".join(broken)


def test_design_documents_are_named_by_their_repository_path() -> None:
    """Outside ``docs/`` a design document is ``docs/<name>.md``; inside, it must exist there."""
    wrong = [
        f"{_where(path, n)}: {name}.md"
        for path, n, line in _lines()
        for name in BARE_DESIGN_DOC.findall(line)
        if not (_in_docs(path) and (DOCS / f"{name}.md").is_file())
    ]
    assert not wrong, "write docs/<name>.md (and the document must exist):\n" + "\n".join(wrong)


def test_no_numbered_sections_of_documents() -> None:
    """Our documents have named sections: a section number points at an old outside document."""
    found = [
        f"{_where(path, n)}: {line.strip()}"
        for path, n, line in _lines()
        if NUMBERED_SECTION.search(line)
    ]
    assert not found, "name the section of the repository's document instead:\n" + "\n".join(found)


def test_nothing_points_outside_the_repository() -> None:
    found = [
        f"{_where(path, n)}: {line.strip()}"
        for path, n, line in _lines()
        if any(marker in line for marker in OUTSIDE)
    ]
    assert not found, "references to documents outside the repository:\n" + "\n".join(found)


def _defined_codes() -> list[str]:
    return DEFINITION.findall(REQUIREMENTS.read_text(encoding="utf-8"))


def test_every_requirement_code_is_defined() -> None:
    defined = set(_defined_codes())
    undefined = [
        f"{_where(path, n)}: {code}"
        for path, n, line in _lines()
        for code in CODE.findall(line)
        if code not in defined
    ]
    assert not undefined, "codes missing from docs/requirements.md:\n" + "\n".join(undefined)


def test_each_requirement_is_defined_once_with_its_checks_and_status() -> None:
    text = REQUIREMENTS.read_text(encoding="utf-8")
    codes = _defined_codes()
    assert len(codes) == len(set(codes)), "a code is defined twice"
    sections = re.split(r"^### ", text, flags=re.MULTILINE)[1:]
    for section in sections:
        body = section.split("\n## ")[0]
        code = section.split(" ", 1)[0]
        assert "- Checks:" in body, f"{code} says nothing about what checks it"
        assert re.search(r"- Status: \*\*(met|partly|not yet|unknown)\*\*", body), code
