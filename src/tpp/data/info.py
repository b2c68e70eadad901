"""Dataset metadata (classes, channels, input size, normalisation) and data-folder resolution."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tpp.data.description import DatasetInfo
from tpp.errors import DataError

DATASETS: tuple[str, ...] = (
    "mnist",
    "fashion_mnist",
    "cifar10",
    "cifar100",
    "imagenet",
    "mnist_subset",
    "text",
    "text_tiny",
    "imagefolder",
)

# language-model corpora (tpp.data.text): "text" reads DIR/{train,valid,test}.txt, "text_tiny" the
# corpus shipped in the package
TEXT_DATASETS: tuple[str, ...] = ("text", "text_tiny")

# Spellings users commonly type, mapped to the canonical name.
_ALIASES = {
    "fashionmnist": "fashion_mnist",
    "fmnist": "fashion_mnist",
    "cifar_10": "cifar10",
    "cifar_100": "cifar100",
    "mnistsubset": "mnist_subset",
    "imagefolder": "imagefolder",
    "texttiny": "text_tiny",
}

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_MNIST_MEAN = (0.1307,)
_MNIST_STD = (0.3081,)


# Values follow the paper's reference code. Fashion-MNIST deliberately reuses the MNIST
# statistics because the reference code does so; its true statistics (~0.286/0.353) would
# only shift the input affinely, which BatchNorm networks absorb.
_INFOS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo("mnist", 10, 1, 32, _MNIST_MEAN, _MNIST_STD, False),
    "fashion_mnist": DatasetInfo("fashion_mnist", 10, 1, 32, _MNIST_MEAN, _MNIST_STD, False),
    "mnist_subset": DatasetInfo("mnist_subset", 10, 1, 32, _MNIST_MEAN, _MNIST_STD, False),
    "cifar10": DatasetInfo("cifar10", 10, 3, 32, _IMAGENET_MEAN, _IMAGENET_STD, True),
    "cifar100": DatasetInfo("cifar100", 100, 3, 32, (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761), True),
    "imagenet": DatasetInfo("imagenet", 1000, 3, 224, _IMAGENET_MEAN, _IMAGENET_STD, True),
}


def canonical_name(name: str) -> str:
    """Return the canonical dataset name for ``name`` (case-insensitive, '-' == '_').

    Raises:
        DataError: if the name is not a known dataset.
    """
    key = str(name).strip().lower().replace("-", "_")
    key = _ALIASES.get(key, _ALIASES.get(key.replace("_", ""), key))
    if key not in _INFOS and key != "imagefolder" and key not in TEXT_DATASETS:
        raise DataError(f"Unknown dataset {name!r}. Choose one of: {', '.join(DATASETS)}.")
    return key


def dataset_info(name: str, data_dir: str | os.PathLike[str] | None = None, image_options: Any = None) -> DatasetInfo:
    """Return the :class:`DatasetInfo` of a dataset (aliases such as 'fashion-mnist' accepted).

    ``imagefolder`` takes its classes from ``data_dir`` (required) and its input format from
    ``image_options`` (:class:`tpp.data.imagefolder.ImageFolderOptions`); the other datasets
    ignore both. ``text``/``text_tiny`` read no files here: their info is that of the default
    byte tokenizer (256 classes) and sequence length (256); :func:`tpp.data.build_loaders`
    returns the info of the tokenizer and ``seq_len`` actually used.

    Raises:
        DataError: if the name is not a known dataset; the message lists the valid names.
    """
    key = canonical_name(name)
    if key == "imagefolder":
        from tpp.data.imagefolder import imagefolder_info

        return imagefolder_info(data_dir, image_options)
    if key in TEXT_DATASETS:
        from tpp.data.text import ByteTokenizer, text_info

        return text_info(key, ByteTokenizer(), 256, 1.0)
    return _INFOS[key]


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the dataset root: ``data_dir`` if given, else ``$TPP_DATA``, else ``~/.cache/tpp/data``.

    The folder is not created here; only an explicit download creates it.
    """
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    env = os.environ.get("TPP_DATA", "")
    if env.strip():
        return Path(env).expanduser()
    return Path.home() / ".cache" / "tpp" / "data"
