"""Static checks over the source (R2, R7): no file copy of the database, no removal of
SQLite's -wal/-shm/-journal files, sqlite3 only inside the store."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("sall_desktop", "model_zoo", "training")
COPY_CALLS = {
    "copy",
    "copy2",
    "copyfile",
    "copyfileobj",
    "copytree",
    "link",
    "symlink",
    "hardlink_to",
    "symlink_to",
}
REMOVE_CALLS = {"unlink", "remove", "rmtree", "rmdir"}
SQLITE_SIDECARS = ("-wal", "-shm", "-journal")
DB_WORDS = re.compile(r"(?<![a-z])db(?![a-z])|database|sqlite")


def _sources() -> list[Path]:
    return [p for pkg in PACKAGES if (ROOT / pkg).is_dir() for p in (ROOT / pkg).rglob("*.py")]


def _call_name(node: ast.Call) -> str:
    func = node.func
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


@dataclass
class _Scope:
    removes: list[str] = field(default_factory=list)
    sidecars: list[str] = field(default_factory=list)


class _Scan(ast.NodeVisitor):
    """One pass per file: copy calls near the database; per function, removals and the
    SQLite sidecar names it mentions."""

    def __init__(self, source: str, in_store: bool) -> None:
        self.source, self.in_store = source, in_store
        self.scopes = [_Scope()]
        self.problems: list[str] = []

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.scopes.append(_Scope())
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]  # a docstring may explain the rule
        for child in body:
            self.visit(child)
        self._close(self.scopes.pop(), node.lineno)

    visit_FunctionDef = _function
    visit_AsyncFunctionDef = _function

    def visit_Call(self, node: ast.Call) -> None:
        name = _call_name(node)
        if name not in COPY_CALLS | REMOVE_CALLS:
            self.generic_visit(node)
            return
        segment = (ast.get_source_segment(self.source, node) or "").lower()
        if segment.startswith("cur.copy("):  # psycopg's COPY FROM STDIN into the team store
            self.generic_visit(node)
            return
        if name in COPY_CALLS and (self.in_store or DB_WORDS.search(segment)):
            self.problems.append(f"line {node.lineno}: file copy or link of the database")
        if name in REMOVE_CALLS:
            self.scopes[-1].removes.append(segment)
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and node.value.endswith(SQLITE_SIDECARS):
            self.scopes[-1].sidecars.append(node.value)

    def _close(self, scope: _Scope, lineno: int) -> None:
        named = [r for r in scope.removes if any(w in r for w in ("wal", "shm", "journal"))]
        if named or (scope.sidecars and scope.removes):
            self.problems.append(f"line {lineno}: removes SQLite's -wal/-shm/-journal files")

    def finish(self) -> list[str]:
        self._close(self.scopes[0], 0)
        return self.problems


def test_no_copy_of_the_database_and_no_removal_of_sqlite_files() -> None:
    sources = _sources()
    assert any(p.parts[-2:] == ("store", "sqlite_repository.py") for p in sources)
    problems = []
    for path in sources:
        source = path.read_text(encoding="utf-8")
        scan = _Scan(source, in_store="store" in path.relative_to(ROOT).parts)
        scan.visit(ast.parse(source))
        problems += [f"{path.relative_to(ROOT)} {p}" for p in scan.finish()]
    assert problems == []


def test_the_scan_catches_what_it_must() -> None:
    bad = (
        "import shutil, os\n"
        "def backup(db_path):\n    shutil.copy2(db_path, 'x')\n"
        "def clean(p):\n    os.remove(str(p) + '-wal')\n"
        "def tidy(p):\n    for s in ('-shm',):\n        (p / s).unlink()\n"
    )
    scan = _Scan(bad, in_store=False)
    scan.visit(ast.parse(bad))
    assert len(scan.finish()) == 3


def test_sqlite3_is_imported_only_by_the_store() -> None:
    offenders = []
    for path in _sources():
        if path.relative_to(ROOT).parts[:2] == ("sall_desktop", "store"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n == "sqlite3" or n.startswith("sqlite3.") for n in names):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
