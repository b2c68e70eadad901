"""The files of a class folder, exactly: symbolic links are followed, but never in a loop.

``os.walk(followlinks=True)`` (what torchvision's ``ImageFolder`` uses) follows a link such as
``train/cat/loop -> ..`` back into ``train/`` and labels every dog there a cat; two such links
make the walk never end. :func:`class_files` follows links to folders elsewhere (images kept on
another disk) and refuses, in one line, a link that leads back to a folder already walked, to
the split folder or above it, or into another class's folder.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from tpp.errors import DataError
from tpp.util.files import not_a_regular_file

_FIX = "a class's images must be exactly the files under its own folder: remove or replace the link"


def class_files(split_dir: Path, classes: Sequence[str], name: str, suffixes: tuple[str, ...] | None) -> list[Path]:
    """Sorted paths of the files under ``split_dir/name`` (sub-folders and links to folders
    included) whose lower-case name ends with one of ``suffixes`` (None: only check the folders,
    list nothing); hidden files (``.name``) are skipped.

    Raises:
        DataError: a folder link that loops or leads into another class of ``classes`` (named,
            with the folder it reaches), or a listed file that is not a regular file (a broken
            link, a FIFO: reading it would fail or wait forever).
    """
    split_real = os.path.realpath(split_dir)
    owners: dict[str, list[str]] = {}
    for other in classes:
        owners.setdefault(os.path.realpath(split_dir / other), []).append(other)
    seen: dict[str, Path] = {}
    found: list[Path] = []
    stack = [split_dir / name]
    while stack:
        folder = stack.pop()
        real = os.path.realpath(folder)
        _check_folder(folder, real, split_dir, split_real, name, owners, seen)
        seen[real] = folder
        try:
            entries = list(os.scandir(folder))
        except OSError as error:
            raise DataError(
                f"cannot list {folder}: {error.strerror or type(error).__name__}; fix its permissions or remove it"
            ) from None
        for entry in entries:
            if entry.is_dir(follow_symlinks=True):
                stack.append(Path(entry.path))
            elif suffixes is not None and not entry.name.startswith(".") and entry.name.lower().endswith(suffixes):
                kind = not_a_regular_file(entry.path)
                if kind is not None:
                    what = "a broken link" if kind == "missing" else kind
                    raise DataError(
                        f"{entry.path} is {what}, not an image file; remove it or replace it with the image"
                    )
                found.append(Path(entry.path))
    return sorted(found)


def _check_folder(
    folder: Path,
    real: str,
    split_dir: Path,
    split_real: str,
    name: str,
    owners: dict[str, list[str]],
    seen: dict[str, Path],
) -> None:
    if real in seen:
        raise DataError(f"{folder} leads to {real}, already read as {seen[real]} (a loop of symbolic links); {_FIX}")
    if os.path.commonpath([real, split_real]) == real:
        where = str(split_dir) if real == split_real else f"{real}, which holds {split_dir}"
        raise DataError(f"{folder} leads back to {where} (a loop of symbolic links); {_FIX}")
    for parent in (real, *(str(p) for p in Path(real).parents)):
        others = [c for c in owners.get(parent, ()) if c != name]
        if others:
            raise DataError(
                f"{folder} leads into the folder of class {others[0]!r} ({parent}), so its images would "
                f"be labelled {name!r} too; {_FIX}"
            )
