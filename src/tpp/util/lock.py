"""One writer per folder: an exclusive ``fcntl.flock`` on ``<folder>/.tpp-lock``.

A tpp process that writes into a run folder (``tpp train``, ``tpp prune``, ``tpp run``) holds the
lock for as long as it writes; a second writer (``--overwrite``, ``--resume``, another ``tpp run``
on the same output) is refused with one line naming the PID that holds it, before it changes
anything. The kernel releases a ``flock`` when its holder dies, so a run killed with SIGKILL
leaves no lock behind: only a stale file, which the next writer locks and reuses.

The holder writes its PID into the file (for the message) and deletes the file when it releases
the lock, so a finished run leaves nothing behind. Because a file can be deleted between another
process's ``open`` and its ``flock``, a lock counts only if the path still names the locked file
afterwards; otherwise the attempt is repeated. The file is opened with ``O_NOFOLLOW``: a symlink
planted in its place is refused, never followed (the lock file is truncated on acquisition).
"""

from __future__ import annotations

import fcntl
import os
import stat
from pathlib import Path
from types import TracebackType

from tpp.errors import CheckpointError
from tpp.util.atomic import describe_os_error

LOCK_FILE = ".tpp-lock"
_OPEN_FLAGS = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


class FolderLock:
    """The exclusive lock of one folder, held by this process between :meth:`acquire` and
    :meth:`release` (also a context manager). The folder must exist."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fd is not None

    def acquire(self) -> FolderLock:
        """Take the lock without waiting; returns ``self``.

        Raises:
            CheckpointError: another process holds it (one line naming its PID), or the lock file
                cannot be created (unwritable folder, a symlink or folder in its place).
        """
        if self._fd is not None:
            return self
        for _ in range(5):  # the holder may delete the file between our open and our flock
            try:
                fd = os.open(self.path, _OPEN_FLAGS, 0o644)
            except OSError as error:
                raise CheckpointError(
                    f"cannot lock {self.folder}: {self.path} cannot be opened "
                    f"({describe_os_error(error)}); remove it if it is not tpp's"
                ) from None
            if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO or device of the user's: not ours to lock
                os.close(fd)
                raise CheckpointError(f"cannot lock {self.folder}: {self.path} is not a regular file; remove it")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _read_pid(fd)
                os.close(fd)
                raise in_use(self.folder, pid) from None
            except OSError as error:  # e.g. a filesystem without locks
                os.close(fd)
                raise CheckpointError(
                    f"cannot lock {self.folder}: {describe_os_error(error)}; use a folder on a local disk"
                ) from None
            if _names(self.path, fd):
                try:
                    os.ftruncate(fd, 0)
                    os.write(fd, f"{os.getpid()}\n".encode())
                except OSError:
                    pass  # the PID is only for the message of a second writer
                self._fd = fd
                return self
            os.close(fd)  # locked a file that its holder had just deleted: try the new one
        raise CheckpointError(
            f"cannot lock {self.folder}: another process keeps replacing {self.path}; run again when it has finished"
        )

    def release(self) -> None:
        """Delete the lock file (if it is still ours) and release the lock. Idempotent."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if _names(self.path, fd):  # deleted while locked, so no one can lock it in between
                os.unlink(self.path)
        except OSError:
            pass  # a lock file left behind is harmless: the next writer locks and reuses it
        finally:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.release()

    def __del__(self) -> None:  # an object dropped without release(): the kernel frees the lock anyway
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass


def lock_holder(folder: str | os.PathLike[str]) -> int | None:
    """The PID of the process that holds ``folder``'s lock (0 when it is unknown), or None when the
    folder is not locked. Creates nothing (for checks that must not change the folder)."""
    path = Path(folder) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None  # no lock file (or not a readable one): acquire() says what is wrong
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read_pid(fd)
    except OSError:
        return None
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def in_use(folder: Path, pid: int) -> CheckpointError:
    """The one-line refusal of a second writer."""
    who = f"tpp process {pid}" if pid else "another tpp process"
    stop = f" (kill {pid})" if pid else ""
    return CheckpointError(
        f"{folder} is in use by {who}, which is writing into it; wait for it to finish or stop it{stop}, then run again"
    )


def _read_pid(fd: int) -> int:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return 0
    return int(text) if text.isdigit() else 0


def _names(path: Path, fd: int) -> bool:
    """Whether ``path`` still names the open file ``fd``."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path, follow_symlinks=False))
    except OSError:
        return False
