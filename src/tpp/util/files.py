"""Reading user-named files without hanging or filling memory.

A path given on the command line may name a FIFO (opening it waits for a writer, forever), a
device such as ``/dev/zero`` (endless data) or a directory. :func:`not_a_regular_file` says what
such a path is without opening it, and :func:`read_bounded` reads a regular file only, and only
up to a stated size.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def not_a_regular_file(path: str | os.PathLike[str]) -> str | None:
    """What ``path`` is when it is not a regular file ("a named pipe (FIFO)", "a directory",
    "missing", ...), or None for a regular file (symbolic links are followed). Never opens it."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "missing"
    except OSError as error:
        return f"unreadable ({error.strerror or type(error).__name__})"
    return _kind(mode)


class FileTooLarge(OSError):
    """:func:`read_bounded` found more bytes than its limit."""


def read_bounded(path: str | os.PathLike[str], limit: int) -> bytes:
    """The bytes of the regular file ``path``, refusing to read more than ``limit`` of them.

    The file is opened non-blocking, so a FIFO swapped in after a check cannot hang the call.

    Raises:
        IsADirectoryError / OSError: ``path`` is missing, unreadable or not a regular file (the
            ``strerror`` says which: "is a named pipe (FIFO)" ...).
        FileTooLarge: the file holds more than ``limit`` bytes.
    """
    fd = os.open(Path(path), os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        kind = _kind(os.fstat(fd).st_mode)
        if kind is not None:
            raise OSError(0, f"is {kind}, not a regular file")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(limit + 1 - size, 2**20))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > limit:
        raise FileTooLarge(0, f"holds more than {limit} bytes")
    return b"".join(chunks)
