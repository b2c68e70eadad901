"""``load_arrays``: one entry point returning whole in-memory datasets as uint8 tensors."""

from __future__ import annotations

import os

import torch

from tpp.data.cifar import load_cifar
from tpp.data.embedded import load_mnist_subset
from tpp.data.info import canonical_name, resolve_data_dir
from tpp.data.mnist import load_mnist_like
from tpp.errors import DataError

SPLITS = ("train", "test")


def load_arrays(
    name: str, split: str, data_dir: str | os.PathLike[str] | None = None, download: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load a whole split of a small dataset into memory.

    Args:
        name: 'mnist', 'fashion_mnist', 'mnist_subset', 'cifar10' or 'cifar100' (aliases accepted).
        split: 'train' or 'test'.
        data_dir: dataset root (see :func:`resolve_data_dir`); ignored by 'mnist_subset',
            which ships inside the package.
        download: fetch missing files from the official URLs (MD5-verified). Only this
            flag ever touches the network.

    Returns:
        ``(images, labels)``: uint8 ``[N, C, H, W]`` (MNIST-likes resized to 32x32) and
        int64 ``[N]``.

    Raises:
        DataError: unknown name or split, missing/corrupt files, or failed download.
    """
    key = canonical_name(name)
    if split not in SPLITS:
        raise DataError(f"Unknown split {split!r}. Use 'train' or 'test'.")
    if key in ("imagenet", "imagefolder"):
        raise DataError(
            f"{key} is read from image files, not loaded as arrays; use build_loaders({key!r}, ...) instead."
        )
    if key == "mnist_subset":
        return load_mnist_subset(split)
    root = resolve_data_dir(data_dir)
    if key in ("mnist", "fashion_mnist"):
        return load_mnist_like(key, split, root, download)
    return load_cifar(key, split, root, download)
