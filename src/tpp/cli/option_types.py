"""argparse types of tpp's options: each refuses a bad value in the one line argparse shows.

Bounds live here, once, so that every command taking the option refuses the same values.
"""

from __future__ import annotations

import argparse
from typing import Any


def _number_type(convert: Any, kind: str, accept: Any, expected: str, doc: str) -> Any:
    """An argparse type: ``convert(text)``, refused unless ``accept(value)``."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text.strip()}")
        return value

    parse.__doc__ = doc
    return parse


positive_int = _number_type(int, "a whole number", lambda v: v >= 1, "a number >= 1", "argparse type: an integer >= 1.")
non_negative_int = _number_type(
    int, "a whole number", lambda v: v >= 0, "a number >= 0", "argparse type: an integer >= 0."
)
non_negative_float = _number_type(
    float, "a number", lambda v: 0 <= v < float("inf"), "a finite number >= 0", "argparse type: a finite float >= 0."
)
positive_float = _number_type(
    float, "a number", lambda v: 0 < v < float("inf"), "a finite number > 0", "argparse type: a finite float > 0."
)
fraction = _number_type(
    float,
    "a number",
    lambda v: 0 <= v < 1,
    "the fraction of channels to prune, in [0, 1)",
    "argparse type: a pruning fraction in [0, 1).",
)


MAX_SEED = 2**63 - 1  # torch, NumPy and the checkpoint's int64 tensors all take seeds up to here
MAX_EPOCHS = 10_000  # the paper trains 120-200 epochs; ten thousand is already weeks of CIFAR


def seed_int(text: str) -> int:
    """argparse type: a seed, an integer in ``0..2**63-1``."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected a seed in 0..2**63-1 ({MAX_SEED}), got {text.strip()}")
    return value


def _epochs(least: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number of epochs, got {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"expected a number >= {least}, got {text.strip()}")
        if value > MAX_EPOCHS:
            years = f"; at one second per epoch that would take {value / 3.15e7:.3g} years" if value > 3.15e7 else ""
            raise argparse.ArgumentTypeError(
                f"expected a number of epochs in {least}..{MAX_EPOCHS}, got {text.strip()}{years}"
            )
        return value

    parse.__doc__ = f"argparse type: a number of epochs, ``{least}..MAX_EPOCHS``."
    return parse


epoch_count = _epochs(1)
epoch_count_or_zero = _epochs(0)


def output_path(text: str) -> str:
    """argparse type: a file or folder to write, refused when empty (it would fall back to a
    default location without a word)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(
            "expected a path, got an empty string; name the output, or leave the option out for the default"
        )
    return text


def float_list(text: str) -> tuple[float, ...]:
    """argparse type: comma-separated numbers, e.g. ``0.485,0.456,0.406``."""
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
