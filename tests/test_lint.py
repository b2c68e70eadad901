"""Static hygiene with ruff, configured once in pyproject.toml: lint (pyflakes' unused imports and
undefined names, pycodestyle, import order) and the formatter, over the package, tests, benchmarks and
scripts. Fix what it reports with ``.venv/bin/ruff check --fix . && .venv/bin/ruff format .``."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("src", "tests", "bench", "scripts")


def _ruff() -> str:
    # a dev dependency, pinned in constraints.txt: a missing one fails, never skips
    found = Path(sys.executable).with_name("ruff")
    return str(found) if found.is_file() else (shutil.which("ruff") or "ruff")


def test_ruff_lint_finds_nothing():
    result = subprocess.run([_ruff(), "check", "--no-cache", *FOLDERS], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_code_is_formatted():
    result = subprocess.run(
        [_ruff(), "format", "--check", "--no-cache", *FOLDERS], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, "run `ruff format .`:\n" + result.stdout + result.stderr
