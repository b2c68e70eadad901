"""The zip container of a torch file, checked before anything inflates it.

Shared by every reader of torch files: tpp checkpoints (:mod:`tpp.checkpoints.reading`) and the
official TPP checkpoints (:mod:`tpp.models.official`), so that one check bounds them all.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

# a member may unpack to at most this multiple of the whole file's size (+1 MiB): torch writes
# members stored, not compressed, so anything far beyond it is a zip bomb
INFLATION_LIMIT = 64


def archive_damage(path: Path, data: bytes | None = None) -> str | None:
    """What is wrong with the zip container of a torch file, or None (also for non-zip files).

    torch's own reader does not check the CRC-32 of the members, so a flipped bit in a tensor
    would load silently as a wrong weight; here every member is read back and checked.
    ``data``: the file's bytes when already read (then they are checked, not ``path`` again).
    """
    source: Any = io.BytesIO(data) if data is not None else path
    try:
        if not zipfile.is_zipfile(source):
            return None
        with zipfile.ZipFile(source) as archive:
            members = archive.infolist()
            size = len(data) if data is not None else path.stat().st_size
            if sum(m.file_size for m in members) > INFLATION_LIMIT * size + 2**20:
                return "its members unpack to far more than the file holds"
            bad = archive.testzip()
    except OSError:
        return None  # unreadable, not damaged: torch.load's OSError names the reason
    except Exception:  # noqa: BLE001 - zipfile raises several types for damaged archives
        return "damaged zip archive"
    return f"checksum mismatch in {bad}: the file is damaged" if bad else None
