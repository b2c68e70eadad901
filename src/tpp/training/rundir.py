"""A training run's output folder: config, metadata, per-epoch metrics and checkpoints.

Layout::

    <run>/config.json     fully resolved configuration (rewritten on resume)
    <run>/meta.json       argv, versions, git commit, device, seed, host, start time
    <run>/metrics.jsonl   one JSON object per finished epoch (0-based "epoch" as in LR schedules)
    <run>/last.pt         checkpoint after the latest finished epoch (what --resume reads)
    <run>/best.pt         checkpoint of the epoch with the best test top-1

    <run>/.tpp-run        tpp's mark: written when tpp opens the folder for a run
    <run>/.tpp-lock       held (fcntl.flock) by the process writing here; gone when it ends

Overwrite policy: a new run refuses a non-empty folder (nothing there is touched) unless
``resume`` (continue from ``last.pt``) or ``overwrite`` (delete the old ``last.pt``, ``best.pt``
and ``metrics.jsonl``, replace the other files above, keep any other file) is requested.
``resume`` accepts only a folder tpp marked: it holds ``.tpp-run`` with tpp's text, or nothing at
all yet (a run killed before it wrote anything). File names alone, or a ``meta.json`` with a
``tpp_version`` key, prove nothing: a user's own ``config.json`` is never overwritten by a resume.
Folders written before the mark existed are accepted when their ``meta.json`` holds every field
tpp writes there *and* they hold a checkpoint tpp wrote (:func:`tpp.util.owned.checkpoint_is_ours`);
the mark is added then. A folder with no ``last.pt`` yet (killed before the first epoch ended)
starts over.

One writer at a time: the folder is locked (:mod:`tpp.util.lock`) before anything in it changes,
and a second writer is refused with the PID of the first.

Every file is written atomically. An epoch is committed by ``last.pt``, which also carries that
epoch's metrics record and the index of the best epoch; ``best.pt`` and the ``metrics.jsonl``
line are written after it and repaired from it on resume (see :meth:`Trainer.resume`), so a kill
at any instant leaves a folder that resumes to the files of an uninterrupted run. Temporary
files of interrupted writes are deleted when the folder is opened again.
"""

from __future__ import annotations

import json
import os
import platform
import re
import socket
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

from tpp.errors import CheckpointError
from tpp.util.atomic import atomic_write_json, atomic_write_text, describe_os_error, remove_stale_temporaries
from tpp.util.lock import LOCK_FILE, FolderLock, in_use, lock_holder
from tpp.util.owned import checkpoint_is_ours

_TEMPORARY = re.compile(r"\..+\.[A-Za-z0-9_]{8}\.tmp")  # an interrupted atomic write
MARK = ".tpp-run"
MARK_TEXT = (
    "tpp run folder\n"
    "tpp wrote this file when it opened this folder for a run; `--resume` continues only such folders.\n"
)
# the fields write_meta always writes: a meta.json of an unmarked (older) run folder must hold all of them
_META_FIELDS = frozenset(
    {"argv", "tpp_version", "torch_version", "python_version", "git", "hostname", "start_time", "command"}
)
# where an unmarked (older) run folder keeps the checkpoints tpp wrote (training runs and pruning jobs)
_CHECKPOINTS = ("last.pt", "best.pt", "pruned.pt", "pruned_model.pt", "prune/last.pt", "finetune/last.pt")


def is_marked(path: str | os.PathLike[str]) -> bool:
    """Whether the folder holds tpp's mark (:data:`MARK` starting with tpp's text)."""
    if not (Path(path) / MARK).is_file():  # (a FIFO would block the read)
        return False
    try:
        with open(Path(path) / MARK, "rb") as handle:
            return handle.read(len(MARK_TEXT) + 1).decode("utf-8", "replace") == MARK_TEXT
    except OSError:
        return False


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def source_git_commit() -> dict[str, Any] | None:
    """``{"commit", "dirty"}`` of the git checkout tpp runs from, or None (installed copy, no git)."""
    package_dir = Path(__file__).resolve().parents[1]
    # only trust the answer if tpp's own files are tracked there (a venv inside some repo is not)
    if _git(["ls-files", "--error-unmatch", "__init__.py"], package_dir) is None:
        return None
    commit = _git(["rev-parse", "HEAD"], package_dir)
    if not commit:
        return None
    status = _git(["status", "--porcelain", "--untracked-files=no", "."], package_dir)
    return {"commit": commit, "dirty": bool(status)}


class RunDirectory:
    """Creates/validates a run folder and writes its files; also a metrics logger (``log_epoch``).

    Raises:
        CheckpointError: the folder cannot be created or written, is a file, is non-empty without
            ``resume``/``overwrite``, or ``resume`` is asked of a folder that is missing or not tpp's.
    """

    CONFIG = "config.json"
    META = "meta.json"
    METRICS = "metrics.jsonl"
    LAST = "last.pt"
    BEST = "best.pt"
    # everything tpp writes in a run folder (training runs and pruning jobs); other files are the user's
    OWN_FILES = frozenset(
        {
            CONFIG,
            META,
            METRICS,
            LAST,
            BEST,
            "tb",
            "prune",
            "finetune",
            "pruned.pt",
            "pruned_model.pt",
            "report.json",
            "jsv.png",
            "curves.png",
            "layers.png",
            "README.txt",
            "run.json",
            MARK,
            LOCK_FILE,
        }
    )

    # what a run folder holds before any result: its mark, options and provenance
    START_FILES = frozenset({MARK, CONFIG, META})

    def __init__(self, path: str | os.PathLike[str], *, resume: bool = False, overwrite: bool = False) -> None:
        """With ``resume`` the earlier metric records are kept; whether there is a checkpoint to
        continue from is for the caller to find out (``last.pt`` here, or in a job's sub-folders)."""
        self.path = Path(path)
        self.resume = resume
        self._records: list[dict[str, Any]] = []
        self.check(self.path, resume=resume, overwrite=overwrite)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise CheckpointError(
                f"cannot create run directory {self.path}: {describe_os_error(error)}; pass a writable --out"
            ) from None
        if not os.access(self.path, os.W_OK | os.X_OK):
            raise CheckpointError(f"run directory {self.path} is not writable; pass a writable --out")
        self._lock = FolderLock(self.path).acquire()  # held until close(): nothing changes here before it
        try:
            non_empty = self._check_policy(self.path, resume, overwrite)  # again: another run may have ended here
            remove_stale_temporaries(self.path, self.OWN_FILES)
            if resume:
                self._records = self._read_metrics()
            elif non_empty:
                self._remove_stale_outputs()
            if not is_marked(self.path):
                atomic_write_text(self.path / MARK, MARK_TEXT)
        except BaseException:
            self._lock.release()
            raise

    @classmethod
    def check(cls, path: str | os.PathLike[str], *, resume: bool = False, overwrite: bool = False) -> bool:
        """The policy checks of the constructor, without creating or changing anything (for
        ``--dry-run``); returns whether the folder exists and is not empty.

        Raises:
            CheckpointError: as the constructor, except for an unwritable location.
        """
        path = Path(path)
        holder = lock_holder(path) if path.is_dir() else None
        if holder is not None:
            raise in_use(path, holder)
        return cls._check_policy(path, resume, overwrite)

    @classmethod
    def _check_policy(cls, path: Path, resume: bool, overwrite: bool) -> bool:
        if path.exists() and not path.is_dir():
            raise CheckpointError(f"run directory {path} exists and is a file; pass another --out")
        names = [p.name for p in path.iterdir() if p.name != LOCK_FILE] if path.is_dir() else []
        non_empty = bool(names)
        if resume:
            cls._check_resumable(path)
        # a run that failed before its first result (a bad option found once the model was built) left
        # only tpp's start files: no work is lost by starting there again, and the retry needs no flag
        started = not is_marked(path) or any(n not in cls.START_FILES and not _TEMPORARY.fullmatch(n) for n in names)
        if non_empty and started and not (resume or overwrite):
            raise CheckpointError(
                f"run directory {path} already exists and is not empty; "
                "pass --resume to continue it, --overwrite to reuse it, or another --out"
            )
        return non_empty

    @classmethod
    def _check_resumable(cls, path: Path) -> None:
        if not path.is_dir():
            raise CheckpointError(f"--resume given but {path} does not exist; start without --resume")
        if is_marked(path) or cls._older_run(path):
            return
        # a run killed before it wrote anything leaves at most its lock and temporary files
        found = sorted(p.name for p in path.iterdir() if p.name != LOCK_FILE and not _TEMPORARY.fullmatch(p.name))
        if found:
            raise CheckpointError(
                f"--resume given but {path} is not a tpp run directory (it holds {found[0]} but not the {MARK} file "
                "tpp writes in every run folder); pass the --out of an earlier run, or start without --resume"
            )

    @classmethod
    def _older_run(cls, path: Path) -> bool:
        """A run folder of a tpp from before the mark: its meta.json holds every field tpp writes
        there, and a checkpoint in it was written by tpp."""
        try:
            meta = json.loads((path / cls.META).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        if not isinstance(meta, dict) or not _META_FIELDS <= meta.keys():
            return False
        return any(checkpoint_is_ours(path / name) for name in _CHECKPOINTS)

    def _remove_stale_outputs(self) -> None:
        # an old last.pt left in an overwritten folder could later be "resumed" by mistake
        for name in (self.LAST, self.BEST, self.METRICS):
            try:
                (self.path / name).unlink(missing_ok=True)
            except OSError as error:
                raise CheckpointError(f"cannot replace {self.path / name}: {describe_os_error(error)}") from None

    @property
    def last_checkpoint(self) -> Path:
        """Path of ``last.pt``."""
        return self.path / self.LAST

    @property
    def best_checkpoint(self) -> Path:
        """Path of ``best.pt``."""
        return self.path / self.BEST

    def write_config(self, config: Mapping[str, Any]) -> None:
        """Write ``config.json`` (the fully resolved configuration)."""
        atomic_write_json(self.path / self.CONFIG, dict(config))

    def write_meta(self, **fields: Any) -> dict[str, Any]:
        """Write ``meta.json``: argv, tpp/torch/python versions, git commit, host, start time + ``fields``.

        On resume the original metadata is kept and this invocation is appended to ``resumes``.
        """
        import torch

        from tpp._version import __version__

        meta: dict[str, Any] = {
            "argv": list(sys.argv),
            "tpp_version": __version__,
            "torch_version": torch.__version__,
            "python_version": platform.python_version(),
            "git": source_git_commit(),
            "hostname": socket.gethostname(),
            "start_time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **fields,
        }
        previous = self._read_json(self.META) if self.resume else None
        if isinstance(previous, dict):
            previous.setdefault("resumes", []).append(meta)
            meta = previous
        atomic_write_json(self.path / self.META, meta)
        return meta

    def truncate_metrics(self, before_epoch: int) -> None:
        """Drop metric records of epochs >= ``before_epoch`` (written after the checkpoint we resume)."""
        self._records = [r for r in self._records if int(r.get("epoch", -1)) < before_epoch]
        self._write_metrics()

    def log_epoch(self, record: Mapping[str, Any]) -> None:
        """Append one record to ``metrics.jsonl`` (rewritten atomically, so never half a line)."""
        self._records.append(dict(record))
        self._write_metrics()

    def recover_epoch(self, record: Mapping[str, Any]) -> None:
        """Log ``record`` unless a record of its epoch (and ``stage``) is there already: the
        process that finished the epoch may have died before logging it."""
        key = (record.get("epoch"), record.get("stage"))
        if all((r.get("epoch"), r.get("stage")) != key for r in self._records):
            self.log_epoch(record)

    def close(self) -> None:
        """Release the folder's lock (the logger protocol's end); nothing is written after it."""
        self._lock.release()

    @property
    def records(self) -> list[dict[str, Any]]:
        """Metric records written so far (including those kept from a resumed run)."""
        return list(self._records)

    def _write_metrics(self) -> None:
        lines = "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in self._records)
        atomic_write_text(self.path / self.METRICS, lines)

    def _read_metrics(self) -> list[dict[str, Any]]:
        return read_metrics(self.path / self.METRICS)

    def _read_json(self, name: str) -> Any:
        try:
            return json.loads((self.path / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None


def complete_epoch_outputs(payload: Mapping[str, Any], checkpoint_dir: Path | None, loggers: Iterable[Any]) -> None:
    """Write what follows the commit of an epoch, from its ``last.pt`` ``payload``: ``best.pt``
    if that epoch was the best, and its metrics record to every logger that lacks it
    (``recover_epoch``). Idempotent, so a resume can always call it."""
    finished = int(payload.get("epoch") or 0) - 1
    if checkpoint_dir is not None and finished >= 0 and payload.get("best_epoch") == finished:
        from tpp.checkpoints.format import save_checkpoint

        save_checkpoint(Path(checkpoint_dir) / RunDirectory.BEST, payload)
    record = payload.get("record")
    if isinstance(record, dict):
        for logger in loggers:
            if hasattr(logger, "recover_epoch"):
                logger.recover_epoch(record)


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file (none if it cannot be read); a damaged or foreign line is
    skipped: it is not worth failing a resume for."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError:
        return []
    records = []
    for line in text.splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return [r for r in records if isinstance(r, dict)]
