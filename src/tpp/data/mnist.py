"""MNIST and Fashion-MNIST: gzip IDX readers with validation, optional download, 28->32 resize."""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tpp.data import download as dl
from tpp.errors import DataError
from tpp.util.files import not_a_regular_file

# dataset name -> (folder under the data root, base URL, file MD5s); torchvision's layout
_SOURCES = {
    "mnist": ("MNIST", dl.MNIST_URL, dl.MNIST_MD5),
    "fashion_mnist": ("FashionMNIST", dl.FASHION_MNIST_URL, dl.FASHION_MNIST_MD5),
}
_PREFIX = {"train": "train", "test": "t10k"}
_IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
_LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension
_RESIZE_CHUNK = 8192  # bounds the float32 scratch memory of the resize
MAX_IDX_BYTES = 2**30  # what an IDX header may promise; MNIST's largest file holds 47 MB


def split_files(split: str) -> tuple[str, str]:
    """Names of the (images, labels) gzip files of a split ('train' or 'test')."""
    prefix = _PREFIX[split]
    return f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz"


def _corrupt(path: Path, what: str) -> DataError:
    return DataError(
        f"Corrupt MNIST-format file {path}: {what}. Delete it and re-download it (--download; download=True in Python) "
        "or replace it with the official file."
    )


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Read a gzip-compressed IDX file of unsigned bytes, checking magic number and size.

    The header is read first and only as many bytes as it promises are inflated (plus one, to
    see that nothing follows), so a small file that inflates to gigabytes costs nothing.

    Args:
        path: the ``.gz`` file.
        magic: expected magic number (0x803 for images, 0x801 for labels).

    Returns:
        A uint8 array shaped as the header says.

    Raises:
        DataError: naming the file if it is unreadable, truncated, longer than its header says,
            promises more than :data:`MAX_IDX_BYTES`, or has a wrong header.
    """
    ndim = magic & 0xFF
    header_size = 4 + 4 * ndim
    try:
        with gzip.open(path, "rb") as fh:
            header = fh.read(header_size)
            if len(header) < header_size:
                raise _corrupt(path, f"only {len(header)} bytes, shorter than the IDX header")
            got_magic = int.from_bytes(header[:4], "big")
            if got_magic != magic:
                raise _corrupt(path, f"magic number {got_magic:#010x}, expected {magic:#010x}")
            dims = [int.from_bytes(header[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
            expected = math.prod(dims)
            if expected > MAX_IDX_BYTES:
                raise _corrupt(
                    path,
                    f"the header {dims} promises {expected} bytes, more than the "
                    f"{MAX_IDX_BYTES // 2**20} MiB an MNIST-format file may hold",
                )
            raw = fh.read(expected)
            if len(raw) != expected:
                raise _corrupt(path, f"{len(raw)} bytes of data but the header {dims} implies {expected}")
            if fh.read(1):  # also reaches the gzip trailer, whose CRC-32 checks the data read
                raise _corrupt(path, f"more bytes than the {expected} the header {dims} implies")
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise _corrupt(path, f"cannot decompress ({exc})") from exc
    return np.frombuffer(raw, dtype=np.uint8).reshape(dims)


def resize_to_32(images: torch.Tensor) -> torch.Tensor:
    """Bilinearly resize uint8 [N,1,H,W] images to 32x32 and round back to uint8.

    Matches torchvision ``Resize(32)`` on a PIL uint8 image: for upsampling PIL's bilinear
    filter equals half-pixel-centred interpolation without antialiasing, and PIL rounds
    half up, hence ``floor(x + 0.5)``.
    """
    if images.shape[-2:] == (32, 32):
        return images
    out = torch.empty((images.shape[0], images.shape[1], 32, 32), dtype=torch.uint8)
    for start in range(0, images.shape[0], _RESIZE_CHUNK):
        chunk = images[start : start + _RESIZE_CHUNK].float()
        big = F.interpolate(chunk, size=(32, 32), mode="bilinear", align_corners=False, antialias=False)
        out[start : start + _RESIZE_CHUNK] = big.add_(0.5).floor_().clamp_(0, 255).to(torch.uint8)
    return out


def mnist_folder(name: str, root: Path) -> Path:
    """Folder holding the raw gzip files of ``name`` below the data root."""
    return root / _SOURCES[name][0] / "raw"


def _ensure_files(name: str, folder: Path, files: tuple[str, str], download: bool) -> None:
    kinds = {f: not_a_regular_file(folder / f) for f in files}
    odd = [f for f, kind in kinds.items() if kind not in (None, "missing")]
    if odd:  # a FIFO would block the read forever; a download would replace it
        raise DataError(
            f"{folder / odd[0]} is {kinds[odd[0]]}, not a regular file; replace it with the official "
            "file or pass another --data-dir"
        )
    missing = [f for f, kind in kinds.items() if kind == "missing"]
    if not missing:
        return
    hint = f"Put {', '.join(files)} in {folder}/ by hand, pass --data-dir, or set TPP_DATA."
    if not download:
        raise DataError(
            f"{name} file not found: {folder / missing[0]}. Expected {', '.join(files)} in {folder}/; "
            "put the official files there, pass --data-dir, set TPP_DATA, or pass --download "
            "(download=True in Python) where the network is reachable."
        )
    _, base_url, md5s = _SOURCES[name]
    for fname in missing:
        dl.download_file(base_url + fname, folder / fname, md5s[fname], hint)


def load_mnist_like(name: str, split: str, root: Path, download: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Load MNIST or Fashion-MNIST as (uint8 [N,1,32,32], int64 [N]).

    Raises:
        DataError: if files are missing (and ``download`` is False), corrupt or inconsistent.
    """
    folder = mnist_folder(name, root)
    files = split_files(split)
    _ensure_files(name, folder, files, download)
    images = read_idx(folder / files[0], _IMAGES_MAGIC)
    labels = read_idx(folder / files[1], _LABELS_MAGIC)
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{folder / files[0]} has {images.shape[0]} images but {folder / files[1]} has "
            f"{labels.shape[0]} labels. Replace both with the official files of the same split."
        )
    if labels.size and labels.max() > 9:
        raise _corrupt(folder / files[1], f"label {int(labels.max())} outside 0..9")
    x = resize_to_32(torch.from_numpy(images.copy()).unsqueeze(1))
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y
