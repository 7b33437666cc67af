"""No product module grows past 500 lines (issue 19): a longer file is split by what it does.

Product code is every ``.py`` file under ``sall_desktop/``, ``model_zoo/`` and ``training/``;
tests and benchmarks are not held to it.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT_PACKAGES = ("sall_desktop", "model_zoo", "training")
MAX_LINES = 500


def _line_count(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for _ in f)


def product_modules() -> list[Path]:
    return sorted(p for package in PRODUCT_PACKAGES for p in (ROOT / package).rglob("*.py"))


def test_the_product_packages_are_found() -> None:
    modules = product_modules()
    assert len(modules) > 50
    assert ROOT / "training" / "engine" / "loop.py" in modules


def oversized(paths: list[Path]) -> str:
    """``"name (N lines), ..."`` for the files over the limit; empty when none is."""
    lengths = {path: _line_count(path) for path in paths}
    return ", ".join(
        f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} ({n} lines)"
        for path, n in sorted(lengths.items())
        if n > MAX_LINES
    )


def test_no_product_module_is_over_500_lines() -> None:
    too_long = oversized(product_modules())
    assert not too_long, f"modules over {MAX_LINES} lines (split them): {too_long}"


def test_the_failure_names_the_file_and_its_length(tmp_path: Path) -> None:
    short, long = tmp_path / "short.py", tmp_path / "long.py"
    short.write_text("x = 1\n" * MAX_LINES)
    long.write_text("x = 1\n" * (MAX_LINES + 1))
    assert oversized([short, long]) == f"{long} (501 lines)"
