"""The 'mnist_subset' dataset shipped inside the package (7000 real MNIST digits, 1.2 MB).

It lets demos and tests train on real images with no data folder and no network. The file
is produced by ``scripts/make_embedded_subset.py`` (stratified, seeded).
"""

from __future__ import annotations

import zipfile
from importlib import resources

import numpy as np
import torch

from tpp.data.mnist import resize_to_32
from tpp.errors import DataError

EMBEDDED_FILE = "mnist_subset.npz"


def _read_npz() -> dict[str, np.ndarray]:
    ref = resources.files("tpp.data").joinpath("embedded", EMBEDDED_FILE)
    fix = "Reinstall tpp-pruning, or regenerate it with scripts/make_embedded_subset.py."
    try:
        with resources.as_file(ref) as path, np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except FileNotFoundError as exc:
        raise DataError(f"Embedded dataset file tpp/data/embedded/{EMBEDDED_FILE} is missing. {fix}") from exc
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"Embedded dataset file tpp/data/embedded/{EMBEDDED_FILE} is corrupt ({exc}). {fix}") from exc


def load_mnist_subset(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Load the embedded subset as (uint8 [N,1,32,32], int64 [N]); 6000 train / 1000 test images."""
    arrays = _read_npz()
    try:
        images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
    except KeyError as exc:
        raise DataError(
            f"Embedded dataset file {EMBEDDED_FILE} lacks the {split!r} split. Regenerate it with "
            "scripts/make_embedded_subset.py or reinstall tpp-pruning."
        ) from exc
    x = resize_to_32(torch.from_numpy(images.astype(np.uint8)).unsqueeze(1))
    return x, torch.from_numpy(labels.astype(np.int64))
