"""Explicit, verified downloads: official URLs, MD5 checks, atomic writes, safe tar extraction.

Nothing here runs unless a caller passes ``download=True``; the rest of the library never
touches the network.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath

from tpp.errors import DataError

MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"

# MD5s as published in torchvision's dataset sources (also listed in shared/data/verify.sh).
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
FASHION_MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
CIFAR10_TAR_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR100_TAR_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"
CIFAR10_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}
CIFAR100_MD5 = {
    "train": "16019d7e3df5f24257cddd939b257f8d",
    "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
    "meta": "7973b15100ade9c7d40fb424638fde48",
}

_CHUNK = 1 << 20


def fetch_url(url: str, dest: Path, timeout: float = 60.0) -> None:
    """Stream ``url`` into the file ``dest`` (overwritten). Tests monkeypatch this function."""
    with urllib.request.urlopen(url, timeout=timeout) as response, open(dest, "wb") as out:
        shutil.copyfileobj(response, out, _CHUNK)


def md5_of(path: Path) -> str:
    """Hex MD5 digest of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(url: str, dest: Path, md5: str, expected_hint: str) -> Path:
    """Download ``url`` to ``dest`` atomically and verify its MD5.

    The bytes go to a temporary sibling first and are moved into place with ``os.replace``
    only after the checksum matches, so a failure never leaves a partial ``dest``.

    Args:
        url: source address.
        dest: final path.
        md5: expected hex MD5.
        expected_hint: short text naming the files expected and where, used in errors.

    Raises:
        DataError: on network failure or checksum mismatch.
    """
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"Cannot create data folder {dest.parent} ({exc}). Pass a writable --data-dir or set TPP_DATA."
        ) from exc
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    try:
        try:
            fetch_url(url, tmp)
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DataError(f"Download of {url} failed ({reason}). {expected_hint}") from exc
        got = md5_of(tmp)
        if got != md5:
            raise DataError(
                f"Downloaded {url} has MD5 {got}, expected {md5}; the file was discarded. "
                f"Retry later or {expected_hint[0].lower()}{expected_hint[1:]}"
            )
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest


def _check_member(member: tarfile.TarInfo, archive: Path) -> PurePosixPath:
    """Return a member's relative path, refusing anything that could escape the target folder."""
    name = PurePosixPath(member.name)
    if member.name.startswith(("/", "\\")) or name.is_absolute() or ".." in name.parts:
        raise DataError(f"Archive {archive} contains unsafe path {member.name!r}; delete it and download it again.")
    if not (member.isfile() or member.isdir()):
        raise DataError(
            f"Archive {archive} contains a link or special file {member.name!r}; delete it and download it again."
        )
    return name


def safe_extract(archive: Path, target: Path) -> list[Path]:
    """Extract regular files and folders of a tar archive below ``target``.

    Every member is checked before anything is written: absolute paths, ``..`` components,
    links and device files are refused. Files are written atomically.

    Returns:
        The extracted file paths.

    Raises:
        DataError: if the archive is unreadable or contains an unsafe member.
    """
    written: list[Path] = []
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            checked = [(m, _check_member(m, archive)) for m in members]
            for member, rel in checked:
                out = target.joinpath(*rel.parts)
                if member.isdir():
                    out.mkdir(parents=True, exist_ok=True)
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(member)
                if src is None:  # isfile() members always have data; guard anyway
                    continue
                tmp = out.with_name(f".{out.name}.{os.getpid()}.part")
                try:
                    with src, open(tmp, "wb") as dst:
                        shutil.copyfileobj(src, dst, _CHUNK)
                    os.replace(tmp, out)
                finally:
                    if tmp.exists():
                        tmp.unlink()
                written.append(out)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(f"Cannot extract {archive} ({exc}); delete it and download it again.") from exc
    return written
