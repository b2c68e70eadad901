"""CIFAR-10/100 "python version" readers through a restricted unpickler, with optional download."""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch

from tpp.data import download as dl
from tpp.errors import DataError
from tpp.util.safe_pickle import BUILTIN_GLOBALS, NUMPY_GLOBALS, RestrictedUnpickler

_CIFAR10_DIR = "cifar-10-batches-py"
_CIFAR100_DIR = "cifar-100-python"
_SPLIT_FILES = {
    "cifar10": {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
    "cifar100": {"train": ["train"], "test": ["test"]},
}
_LABEL_KEY = {"cifar10": b"labels", "cifar100": b"fine_labels"}
_NUM_CLASSES = {"cifar10": 10, "cifar100": 100}


class _CifarUnpickler(RestrictedUnpickler):
    """Resolves only builtin containers and numpy's array reconstruction; refuses other globals."""

    allowed = MappingProxyType({**BUILTIN_GLOBALS, **NUMPY_GLOBALS})


def safe_unpickle(path: Path) -> Any:
    """Unpickle a CIFAR batch file, refusing every global outside a small allowlist.

    Raises:
        DataError: naming the file if it is unreadable or references a disallowed object.
    """
    try:
        data = path.read_bytes()
        # encoding="bytes": the official files are Python 2 pickles with byte-string keys
        return _CifarUnpickler(io.BytesIO(data), encoding="bytes").load()
    except pickle.UnpicklingError as exc:
        raise DataError(
            f"Refused to load {path}: {exc}; it is not an official CIFAR batch file. Replace it with "
            "the official file (--download; download=True in Python)."
        ) from exc
    except (OSError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise DataError(
            f"Corrupt CIFAR file {path} ({type(exc).__name__}: {exc}). Delete it and re-download it "
            "(--download; download=True in Python) or replace it with the official file."
        ) from exc


def _bad(path: Path, what: str) -> DataError:
    return DataError(
        f"Corrupt CIFAR file {path}: {what}. Delete it and re-download it (--download; download=True in Python) "
        "or replace it with the official file."
    )


def read_batch(path: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR batch file into (uint8 [N,3,32,32], int64 [N]) after validating its fields."""
    batch = safe_unpickle(path)
    if not isinstance(batch, dict):
        raise _bad(path, f"top-level object is {type(batch).__name__}, expected dict")
    # official files give bytes keys; tolerate str keys from files re-pickled under Python 3
    batch = {k.encode() if isinstance(k, str) else k: v for k, v in batch.items()}
    key = _LABEL_KEY[name]
    if b"data" not in batch or key not in batch:
        raise _bad(path, f"missing keys b'data' and/or {key!r}")
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise _bad(path, f"data is {data.dtype} {list(data.shape)}, expected uint8 [N, 3072]")
    if labels.shape != (data.shape[0],):
        raise _bad(path, f"{labels.size} labels for {data.shape[0]} images")
    if labels.size and (labels.min() < 0 or labels.max() >= _NUM_CLASSES[name]):
        raise _bad(path, f"labels outside 0..{_NUM_CLASSES[name] - 1}")
    # rows are channel-major: 1024 red, 1024 green, 1024 blue values, each row-major 32x32
    return data.reshape(-1, 3, 32, 32), labels


def cifar_folder(name: str, root: Path) -> Path:
    """Folder of the extracted python-version files of ``name`` below the data root."""
    return root / (_CIFAR10_DIR if name == "cifar10" else _CIFAR100_DIR)


def _download(name: str, root: Path, folder: Path, hint: str) -> None:
    url, tar_md5, file_md5 = (
        (dl.CIFAR10_URL, dl.CIFAR10_TAR_MD5, dl.CIFAR10_MD5)
        if name == "cifar10"
        else (dl.CIFAR100_URL, dl.CIFAR100_TAR_MD5, dl.CIFAR100_MD5)
    )
    archive = root / url.rsplit("/", 1)[1]
    if not archive.is_file():
        dl.download_file(url, archive, tar_md5, hint)
    dl.safe_extract(archive, root)
    for fname, md5 in file_md5.items():
        path = folder / fname
        if not path.is_file() or dl.md5_of(path) != md5:
            raise DataError(
                f"{path} is missing or has a wrong MD5 after extracting {archive}. Delete {archive} "
                f"and {folder}/ and download again."
            )
    archive.unlink()  # the extracted files are verified; the archive is redundant


def load_cifar(name: str, split: str, root: Path, download: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Load CIFAR-10 or CIFAR-100 (fine labels) as (uint8 [N,3,32,32], int64 [N]).

    Raises:
        DataError: if files are missing (and ``download`` is False), corrupt or unsafe.
    """
    folder = cifar_folder(name, root)
    files = _SPLIT_FILES[name][split]
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        hint = (
            f"Put {', '.join(files)} (the python-version files) in {folder}/ by hand, pass --data-dir, or set TPP_DATA."
        )
        if not download:
            raise DataError(
                f"{name} {split} files missing: {', '.join(missing)} in {folder}/. Expected the "
                f"python-version files {', '.join(files)} there; extract the official archive into "
                f"{root}/, pass --data-dir, set TPP_DATA, or pass --download (download=True in Python) where the network is reachable."
            )
        _download(name, root, folder, hint)
    parts = [read_batch(folder / f, name) for f in files]
    images = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
    labels = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
    return torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels)
