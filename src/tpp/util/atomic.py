"""Atomic file writes: a reader sees either the old file or the complete new one, never a part.

Data goes to a temporary file in the destination's directory (same filesystem, so the final
``os.replace`` is atomic), is flushed and fsynced, then renamed over the destination.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, Iterable

from tpp.errors import CheckpointError
from tpp.util.fault_injection import write_point


def describe_os_error(error: OSError) -> str:
    """Short human reason of an OSError ("Permission denied", "Not a directory", ...)."""
    return error.strerror or str(error) or type(error).__name__


# torch.save writes through a C++ zip writer that reports a short write (disk full, a file-size
# limit) as a RuntimeError such as "[enforce fail at inline_container.cc:672] . unexpected pos"
_TORCH_WRITE_FAILURE = re.compile(r"inline_container|PytorchStreamWriter|unexpected pos|file write failed")


def atomic_write(path: str | os.PathLike[str], writer: Callable[[IO[bytes]], None]) -> Path:
    """Call ``writer(file)`` on a temporary file, then atomically move it to ``path``.

    On any failure the temporary file is removed and an existing ``path`` is left untouched.
    A process killed meanwhile leaves a ``.<name>.*.tmp`` file, which
    :func:`remove_stale_temporaries` deletes on the next start.

    Raises:
        CheckpointError: the directory is missing or unwritable, the disk is full or a file-size
            limit is reached (also when torch's zip writer reports it as a RuntimeError).
    """
    path = Path(path)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise CheckpointError(f"cannot write {path}: {describe_os_error(error)}; choose a writable location") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            writer(handle)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp creates 0600 files; results are meant to be shared like any other output
        os.chmod(tmp_name, 0o644)
        write_point()
        os.replace(tmp_name, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        if isinstance(error, OSError):
            raise CheckpointError(f"cannot write {path}: {describe_os_error(error)}") from None
        if isinstance(error, RuntimeError) and _TORCH_WRITE_FAILURE.search(str(error)):
            raise CheckpointError(
                f"cannot write {path}: the write stopped short (the disk is full or a file-size limit was reached); "
                f"free some space or choose another location; {path.name} was left as it was"
            ) from None
        raise
    _fsync_directory(path.parent)
    write_point()
    return path


def remove_stale_temporaries(directory: str | os.PathLike[str], names: Iterable[str]) -> list[Path]:
    """Delete the temporary files that :func:`atomic_write` left in ``directory`` when a process
    was killed mid-write, for destinations called one of ``names``; returns what was removed.

    Only names of this exact form (``.<name>.<8 random characters>.tmp``, as ``mkstemp`` makes
    them) are touched, so no other file is ever deleted.
    """
    directory = Path(directory)
    pattern = re.compile(r"\.(" + "|".join(re.escape(n) for n in names) + r")\.[A-Za-z0-9_]{8}\.tmp")
    removed = []
    try:
        entries = list(directory.iterdir())
    except OSError:
        return removed
    for entry in entries:
        if pattern.fullmatch(entry.name) and entry.is_file() and not entry.is_symlink():
            with contextlib.suppress(OSError):
                entry.unlink()
                removed.append(entry)
    return removed


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


def json_plain(value: Any) -> Any:
    """``value`` as plain JSON data (dicts, lists, str, numbers, bools, None): what a report or a checkpoint's
    config may hold so that it stays ``weights_only``-loadable. Arrays and tensors become lists (``tolist``),
    anything else its ``str``."""
    return json.loads(json.dumps(value, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON (non-JSON values are written with ``str``)."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
