"""ImageNet loaders: torchvision ImageFolder + DataLoader, with an epoch-seeded wrapper.

torchvision is imported only inside :func:`build_imagenet_loaders`, so the rest of the
library works without it.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from tpp.data.description import DatasetInfo
from tpp.data.folders import class_files
from tpp.data.loader import epoch_generator
from tpp.errors import DataError

_SHOW = 5  # class folders named in an error before summarising the rest


def find_imagenet_dirs(root: Path) -> tuple[Path, Path]:
    """Return (train_dir, val_dir): ``<root>/imagenet/{train,val}``, else ``<root>/{train,val}``.

    Raises:
        DataError: if neither layout exists.
    """
    for base in (root / "imagenet", root):
        if (base / "train").is_dir() and (base / "val").is_dir():
            return base / "train", base / "val"
    raise DataError(
        f"ImageNet not found: expected {root / 'imagenet' / 'train'} and {root / 'imagenet' / 'val'} "
        "(one folder per class, val sorted into class folders too); put them there, pass --data-dir, or set TPP_DATA."
    )


def _class_dirs(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")}


def _name_some(names: set[str]) -> str:
    shown = sorted(names)[:_SHOW]
    more = len(names) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more else "")


def check_imagefolder_classes(train_dir: str | Path, val_dir: str | Path) -> list[str]:
    """Check that train and val hold the same class folders and return them sorted.

    ImageFolder numbers classes by sorted folder name, so a class missing from one split
    would silently shift every label after it.

    Raises:
        DataError: if a folder is missing or empty, or the class sets differ (names them).
    """
    train_dir, val_dir = Path(train_dir), Path(val_dir)
    for d in (train_dir, val_dir):
        if not d.is_dir():
            raise DataError(
                f"Image folder not found: {d}. Create it with one sub-folder per class, or pass the right --data-dir."
            )
    train, val = _class_dirs(train_dir), _class_dirs(val_dir)
    if not train:
        raise DataError(f"No class folders in {train_dir}; it must hold one sub-folder of images per class.")
    if train != val:
        parts = []
        if train - val:
            parts.append(
                f"{val_dir} lacks {len(train - val)} class folder(s) present in {train_dir}: {_name_some(train - val)}"
            )
        if val - train:
            parts.append(
                f"{train_dir} lacks {len(val - train)} class folder(s) present in {val_dir}: {_name_some(val - train)}"
            )
        raise DataError(
            "; ".join(parts) + ". Both splits need the same class folders (sort val images into class folders)."
        )
    return sorted(train)


def _import_torchvision() -> Any:
    try:
        return importlib.import_module("torchvision")
    except ImportError as exc:
        raise DataError(
            "ImageNet needs torchvision, which is not installed. Run: pip install tpp-pruning[vision]"
        ) from exc


class EpochDataLoader:
    """Wrap a ``DataLoader`` so ``set_epoch`` fixes its order and worker seeds.

    Before each iteration the loader's generator is reseeded from (seed, epoch) and a
    ``DistributedSampler`` (if any) gets the epoch, so the epoch's order is a pure function
    of (seed, epoch), as with :class:`~tpp.data.TensorLoader`.
    """

    def __init__(self, loader: torch.utils.data.DataLoader, seed: int = 0) -> None:
        self.loader = loader
        self.seed = int(seed)
        self.epoch = 0
        self.dataset_size = len(loader.dataset)  # type: ignore[arg-type]
        self.batch_size = loader.batch_size

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch the next iteration produces."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        if self.loader.generator is not None:
            self.loader.generator.manual_seed(epoch_generator(self.seed, self.epoch).initial_seed())
        sampler = self.loader.sampler
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self.epoch)
        return iter(self.loader)


def build_imagenet_loaders(
    root: Path,
    info: DatasetInfo,
    *,
    batch_size: int,
    test_batch_size: int,
    num_workers: int,
    seed: int,
    rank: int,
    world_size: int,
) -> tuple[EpochDataLoader, EpochDataLoader]:
    """Build ImageNet train/val loaders with the standard ResNet transforms.

    Train: RandomResizedCrop(224) + horizontal flip; val: Resize(256) + CenterCrop(224).
    Train is sharded with ``DistributedSampler`` when ``world_size > 1``; val is not.
    """
    _import_torchvision()  # one clear error instead of a bare ImportError below
    transforms = importlib.import_module("torchvision.transforms")
    datasets = importlib.import_module("torchvision.datasets")
    train_dir, val_dir = find_imagenet_dirs(root)
    classes = check_imagefolder_classes(train_dir, val_dir)
    for split in (train_dir, val_dir):  # torchvision's walk follows folder links blindly, into loops
        for name in classes:
            class_files(split, classes, name, None)
    normalize = transforms.Normalize(info.mean, info.std)
    train_tf = transforms.Compose(
        [
            transforms.RandomResizedCrop(info.image_size),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            normalize,
        ]
    )
    val_tf = transforms.Compose(
        [transforms.Resize(256), transforms.CenterCrop(info.image_size), transforms.ToTensor(), normalize]
    )
    train_set = datasets.ImageFolder(str(train_dir), train_tf)
    val_set = datasets.ImageFolder(str(val_dir), val_tf)
    sampler = None
    if world_size > 1:
        sampler = torch.utils.data.DistributedSampler(
            train_set, num_replicas=world_size, rank=rank, shuffle=True, seed=seed
        )
    common = {"num_workers": num_workers, "pin_memory": torch.cuda.is_available(), "persistent_workers": False}
    train = torch.utils.data.DataLoader(
        train_set,
        batch_size=batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        generator=torch.Generator(),
        **common,
    )
    val = torch.utils.data.DataLoader(
        val_set, batch_size=test_batch_size, shuffle=False, generator=torch.Generator(), **common
    )
    return EpochDataLoader(train, seed), EpochDataLoader(val, seed)
