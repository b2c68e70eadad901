"""Static hygiene: no unused imports, undefined names or dead f-strings in the package (pyflakes)."""

from __future__ import annotations

from pathlib import Path

import pyflakes.api as pyflakes_api  # a dev dependency: a missing one fails, never skips


def test_pyflakes_finds_nothing_in_the_package():
    from pyflakes.reporter import Reporter
    import io

    out, err = io.StringIO(), io.StringIO()
    root = Path(__file__).resolve().parents[1]
    count = sum(pyflakes_api.checkRecursive([str(root / d)], Reporter(out, err)) for d in ("src", "tests", "bench"))
    assert count == 0, out.getvalue() + err.getvalue()
