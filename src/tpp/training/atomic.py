"""Atomic file writes: a reader sees either the old file or the complete new one, never a part.

Data goes to a temporary file in the destination's directory (same filesystem, so the final
``os.replace`` is atomic), is flushed and fsynced, then renamed over the destination.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable

from tpp.errors import CheckpointError


def describe_os_error(error: OSError) -> str:
    """Short human reason of an OSError ("Permission denied", "Not a directory", ...)."""
    return error.strerror or str(error) or type(error).__name__


def atomic_write(path: str | os.PathLike[str], writer: Callable[[IO[bytes]], None]) -> Path:
    """Call ``writer(file)`` on a temporary file, then atomically move it to ``path``.

    On any failure the temporary file is removed and an existing ``path`` is left untouched.

    Raises:
        CheckpointError: the directory is missing or unwritable, or the disk is full.
    """
    path = Path(path)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise CheckpointError(
            f"cannot write {path}: {describe_os_error(error)}; choose a writable location"
        ) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            writer(handle)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp creates 0600 files; results are meant to be shared like any other output
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        if isinstance(error, OSError):
            raise CheckpointError(f"cannot write {path}: {describe_os_error(error)}") from None
        raise
    _fsync_directory(path.parent)
    return path


def _fsync_directory(directory: Path) -> None:
    # makes the rename itself durable; not supported everywhere, hence best effort
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Atomically write UTF-8 ``text`` to ``path``."""
    data = text.encode("utf-8")
    return atomic_write(path, lambda handle: handle.write(data))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON (non-JSON values are written with ``str``)."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
