"""How much memory this machine can spare, for checks made before a large allocation."""

from __future__ import annotations

import os

# a model or a forward pass may keep several copies alive at once (weights, gradients, optimizer
# state, activations): more than this share of the free memory would likely end in the
# out-of-memory killer rather than in an error
SPARE_SHARE = 0.5


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``), or None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def spare_memory() -> int | None:
    """:data:`SPARE_SHARE` of :func:`available_memory` (None if unknown)."""
    free = available_memory()
    return None if free is None else int(free * SPARE_SHARE)


def gigabytes(count: float) -> str:
    """``count`` bytes as e.g. ``'3.2 GB'``."""
    return f"{count / 2**30:.3g} GB"


def human_size(count: float) -> str:
    """``count`` bytes in the largest fitting unit: ``'912 bytes'``, ``'1.37 MB'``, ``'3.2 GB'``."""
    for unit, scale in (("TB", 2**40), ("GB", 2**30), ("MB", 2**20), ("kB", 2**10)):
        if count >= scale:
            return f"{count / scale:.3g} {unit}"
    return f"{int(count)} bytes"
