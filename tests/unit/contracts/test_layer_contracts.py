"""The import-linter contracts hold on the tree, and a planted violation makes them fail.

``make test`` runs ``lint-imports`` on the real tree; these tests prove the check has teeth:
a copy of the packages with one forbidden import must be refused.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
PACKAGES = ("sall_desktop", "model_zoo", "training")


def _copy_tree(dest: Path) -> None:
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package,
            dest / package,
            ignore=shutil.ignore_patterns("__pycache__", "*.safetensors"),
        )
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")


def _lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("model_zoo/_planted.py", "import PySide6.QtCore\n", "Qt lives only in sall_desktop.gui"),
        (
            "training/engine/_planted.py",
            "import sall_desktop.domain\n",
            "Libraries never import the app",
        ),
        ("sall_desktop/gui/_planted.py", "import sall_desktop.store\n", "only through services"),
        ("training/protocol/_planted.py", "import numpy\n", "training.protocol stays light"),
    ],
)
def test_planted_forbidden_import_fails_the_contracts(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    _copy_tree(tmp_path)
    planted = tmp_path / module
    planted.parent.mkdir(parents=True, exist_ok=True)
    for parent in planted.relative_to(tmp_path).parents:
        init = tmp_path / parent / "__init__.py"
        if parent != Path(".") and not init.exists():
            init.write_text("")
    planted.write_text(line)
    result = _lint(tmp_path)
    assert result.returncode != 0, result.stdout
    broken = [ln for ln in result.stdout.splitlines() if ln.rstrip().endswith("BROKEN")]
    assert any(contract in ln for ln in broken), result.stdout


@pytest.mark.slow
def test_unmodified_copy_keeps_every_contract(tmp_path: Path) -> None:
    # The control case: the planted tests above fail because of the plant, not the copy.
    _copy_tree(tmp_path)
    result = _lint(tmp_path)
    assert result.returncode == 0, result.stdout
