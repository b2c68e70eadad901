"""Fault injection for the crash tests (tests/test_crash_resume.py): a process that kills itself at a
chosen write, so that every interruption point of a job can be resumed from and checked.

With ``TPP_KILL_AT_WRITE=K`` the process SIGKILLs itself at the K-th write point (1-based) counted
over this process: point 2n-1 is "the n-th file's data is in its temporary file, not yet renamed",
point 2n "renamed, nothing after it done yet". :mod:`tpp.util.atomic` marks the points; unset, it
costs one environment lookup per write.
"""

from __future__ import annotations

import os
import signal

KILL_AT_WRITE_ENV = "TPP_KILL_AT_WRITE"
_write_points = 0


def write_point() -> None:
    """Count one write point; SIGKILL this process if it is the one ``TPP_KILL_AT_WRITE`` names."""
    global _write_points
    target = os.environ.get(KILL_AT_WRITE_ENV)
    if not target:
        return
    _write_points += 1
    if _write_points == int(target):
        os.kill(os.getpid(), signal.SIGKILL)
