"""Helpers of the pruning-job tests."""

from __future__ import annotations

import tpp


def own_flags(method: str, flags: list[str]) -> list[str]:
    """The ``--flag value`` pairs of ``flags`` that ``method`` takes (other methods' options are errors)."""
    own = {o.flag for o in tpp.pruning.get_method(method).options}
    pairs = zip(flags[::2], flags[1::2])
    return [item for flag, value in pairs if flag in own for item in (flag, value)]
