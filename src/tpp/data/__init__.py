"""Datasets for tpp: metadata, readers for the official files, and fast loaders.

MNIST, Fashion-MNIST and CIFAR are read from the official files into memory and served by
:class:`TensorLoader`; ``mnist_subset`` (7000 real MNIST digits) ships inside the package;
ImageNet goes through torchvision (optional dependency). Nothing downloads unless asked
with ``download=True``.
"""

from tpp.data.arrays import load_arrays
from tpp.data.builders import build_loaders
from tpp.data.info import DATASETS, DatasetInfo, dataset_info, resolve_data_dir
from tpp.data.loader import TensorLoader

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "TensorLoader",
    "build_loaders",
    "dataset_info",
    "load_arrays",
    "resolve_data_dir",
]
