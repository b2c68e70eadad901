"""``imagefolder``: your own images, one sub-folder per class, under ``DIR/train`` and ``DIR/val``.

Layout (the ImageFolder convention; class index = position of the folder name in sorted order)::

    DIR/train/<class>/<image>.png|jpg|...      DIR/val/<class>/<image>...

Images are decoded with PIL (no torchvision needed), converted to RGB or grayscale, resized so
the shorter side is ``resize`` (bilinear) and centre-cropped to ``image_size`` x ``image_size``,
by the rules of torchvision's ``Resize(resize)`` + ``CenterCrop(image_size)`` on PIL images, then
normalised like every tpp dataset. Small folders are decoded once into memory
(:class:`~tpp.data.loader.TensorLoader`); large ones are decoded batch by batch by DataLoader
workers (:class:`ImageFileLoader`). Both give the same batches for the same seed and epoch.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tpp.data.description import DatasetInfo
from tpp.data.folders import class_files
from tpp.data.imagenet import check_imagefolder_classes
from tpp.data.loader import BatchLoader, TensorLoader
from tpp.errors import DataError

NAME = "imagefolder"
# suffixes torchvision's ImageFolder accepts (compared in lower case)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
# (mean, std) per channel of each --normalize preset; one value = the same for every channel
NORMALIZE_PRESETS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "mnist": ((0.1307,), (0.3081,)),
    "half": ((0.5,), (0.5,)),
    "none": ((0.0,), (1.0,)),
}
IN_MEMORY_BYTES = 2 * 2**30  # decoded uint8 size up to which a folder is held in memory
LAYOUT = "DIR/train/<class>/<image> and DIR/val/<class>/<image> (one sub-folder per class, same classes in both)"


@dataclass(frozen=True)
class ImageFolderOptions:
    """How images become network inputs.

    Attributes:
        image_size: side of the square network input (centre crop).
        resize: shorter side after resizing, before the crop (None: ``image_size``; ImageNet
            practice is 256 for 224).
        channels: 3 (RGB) or 1 (grayscale).
        normalize: preset of :data:`NORMALIZE_PRESETS` (``imagenet`` on grayscale images uses
            the mean of its three values).
        mean: per-channel mean (1 or ``channels`` values); overrides the preset.
        std: per-channel standard deviation; overrides the preset.
        augment: training batches get random 4-pixel shifts and horizontal flips.
        in_memory: True: decode everything once; False: decode per batch; None: in memory when
            the decoded images take at most :data:`IN_MEMORY_BYTES`.
    """

    image_size: int = 224
    resize: int | None = None
    channels: int = 3
    normalize: str = "imagenet"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    augment: bool = False
    in_memory: bool | None = None

    def __post_init__(self) -> None:
        if int(self.image_size) < 1:
            raise DataError(f"image size must be >= 1, got {self.image_size}; pass e.g. --image-size 224")
        if self.resize is not None and int(self.resize) < int(self.image_size):
            raise DataError(
                f"--resize {self.resize} is smaller than --image-size {self.image_size}; "
                "the centre crop needs resize >= image size"
            )
        if self.channels not in (1, 3):
            raise DataError(f"channels must be 1 (grayscale) or 3 (RGB), got {self.channels}")
        if self.normalize not in NORMALIZE_PRESETS:
            raise DataError(
                f"unknown normalisation preset {self.normalize!r}; use one of {', '.join(NORMALIZE_PRESETS)}"
            )
        mean, std = self.mean_std()
        if any(s <= 0 for s in std):
            raise DataError(f"std values must be positive, got {std}; fix --std")

    def mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel (mean, std), ``channels`` values each."""
        preset_mean, preset_std = NORMALIZE_PRESETS[self.normalize]
        return (self._per_channel(self.mean, preset_mean, "--mean"), self._per_channel(self.std, preset_std, "--std"))

    def _per_channel(self, given: Sequence[float] | None, preset: Sequence[float], flag: str) -> tuple[float, ...]:
        values = tuple(float(v) for v in (given if given else preset))
        if len(values) == self.channels:
            return values
        if len(values) == 1:
            return values * self.channels
        if not given and self.channels == 1:
            return (sum(values) / len(values),)  # a 3-channel preset on grayscale images
        raise DataError(
            f"{flag} needs 1 or {self.channels} values for {self.channels}-channel images, got {len(values)}"
        )

    @property
    def resize_to(self) -> int:
        """The shorter side after resizing."""
        return int(self.resize if self.resize is not None else self.image_size)


def split_dirs(root: str | os.PathLike[str] | None) -> tuple[Path, Path]:
    """``(DIR/train, DIR/val)`` of an image folder.

    Raises:
        DataError: no directory given, or one without both sub-folders (says the layout).
    """
    if root is None or str(root) == "":
        raise DataError(f"--dataset imagefolder needs --data-dir DIR with {LAYOUT}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist; --data-dir must point at {LAYOUT}")
    missing = [name for name in ("train", "val") if not (root / name).is_dir()]
    if missing:
        raise DataError(f"{root} has no {' or '.join(missing)}/ sub-folder; an image folder is {LAYOUT}")
    return root / "train", root / "val"


def imagefolder_info(root: str | os.PathLike[str] | None, options: ImageFolderOptions | None = None) -> DatasetInfo:
    """The :class:`DatasetInfo` of an image folder: its classes and the options' input format.

    Raises:
        DataError: bad layout (see :func:`split_dirs`) or train/val class folders that differ.
    """
    options = options or ImageFolderOptions()
    classes = check_imagefolder_classes(*split_dirs(root))
    mean, std = options.mean_std()
    return DatasetInfo(
        NAME,
        len(classes),
        options.channels,
        int(options.image_size),
        mean,
        std,
        bool(options.augment),
        classes=tuple(classes),
    )


def list_images(split_dir: Path, classes: Sequence[str]) -> tuple[list[Path], torch.Tensor]:
    """Every image file under ``split_dir/<class>/`` (sub-folders and links to folders included),
    sorted, and its label (see :func:`tpp.data.folders.class_files`).

    Raises:
        DataError: a class folder with no image files, a link that loops or leads into another
            class folder, or an image name that is not a regular file.
    """
    files: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        found = class_files(split_dir, classes, name, IMAGE_SUFFIXES)
        if not found:
            raise DataError(
                f"{split_dir / name} holds no images ({', '.join(IMAGE_SUFFIXES)}); "
                "put at least one image in every class folder"
            )
        files += found
        labels += [label] * len(found)
    return files, torch.tensor(labels, dtype=torch.int64)


def decode_image(path: str | os.PathLike[str], options: ImageFolderOptions) -> np.ndarray:
    """One image as uint8 ``[C, S, S]``: converted, resized (shorter side), centre-cropped.

    Raises:
        DataError: the file is not a readable image.
    """
    from PIL import Image, UnidentifiedImageError

    size, short = int(options.image_size), options.resize_to
    try:
        with Image.open(path) as image:
            image = image.convert("RGB" if options.channels == 3 else "L")
            width, height = image.size
            # torchvision's Resize(int): the shorter side becomes `short`, the longer is truncated
            if width <= height:
                new = (short, int(short * height / width))
            else:
                new = (int(short * width / height), short)
            if new != (width, height):
                image = image.resize(new, Image.Resampling.BILINEAR)
            # torchvision's CenterCrop: offsets rounded half to even
            top, left = int(round((new[1] - size) / 2.0)), int(round((new[0] - size) / 2.0))
            image = image.crop((left, top, left + size, top + size))
            array = np.array(image, dtype=np.uint8)  # a writable copy (torch.from_numpy warns otherwise)
    except Image.DecompressionBombError as error:
        # PIL refuses, from the header alone, images of more than 2 * MAX_IMAGE_PIXELS pixels
        why = str(error).split(",")[0].strip() or "too many pixels"
        raise DataError(
            f"image {path} is too large to decode safely ({why}; a decompression bomb?); shrink it or remove it"
        ) from None
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise DataError(f"cannot read image {path} ({type(error).__name__}); remove or replace the file") from None
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def decode_all(files: Sequence[Path], options: ImageFolderOptions, workers: int = 4) -> torch.Tensor:
    """All ``files`` decoded into one uint8 ``[N, C, S, S]`` tensor (threads; order kept)."""
    out = np.empty((len(files), options.channels, options.image_size, options.image_size), dtype=np.uint8)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:  # PIL decodes without holding the GIL
        for i, array in enumerate(pool.map(lambda f: decode_image(f, options), files)):
            out[i] = array
    return torch.from_numpy(out)


class _Files(torch.utils.data.Dataset):
    def __init__(self, files: Sequence[Path], options: ImageFolderOptions) -> None:
        self.files, self.options = list(files), options

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor | str:
        # a failure travels back as its one-line message: DataLoader would re-raise the exception
        # with the worker's traceback folded into its text
        try:
            return torch.from_numpy(decode_image(self.files[index], self.options))
        except DataError as error:
            return str(error)


def _collate(items: list[torch.Tensor | str]) -> torch.Tensor | str:
    """The batch of images, or the message of its first image that could not be read."""
    failed = next((item for item in items if isinstance(item, str)), None)
    return failed if failed is not None else torch.utils.data.default_collate(items)


class ImageFileLoader(BatchLoader):
    """Like :class:`~tpp.data.loader.TensorLoader` (same order, augmentation and normalisation
    for the same seed and epoch) but decoding each batch's image files on the fly, in
    ``num_workers`` DataLoader processes: for folders too large to hold in memory."""

    def __init__(
        self,
        files: Sequence[Path],
        labels: torch.Tensor,
        options: ImageFolderOptions,
        num_workers: int = 4,
        **loader_options: Any,
    ) -> None:
        super().__init__(labels, channels=options.channels, **loader_options)
        self.files, self.options, self.num_workers = list(files), options, int(num_workers)

    def _uint8_batches(self, batches: list[torch.Tensor]) -> Iterator[torch.Tensor]:
        loader = torch.utils.data.DataLoader(
            _Files(self.files, self.options),
            batch_sampler=[b.tolist() for b in batches],
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
            collate_fn=_collate,
        )
        for batch in loader:
            if isinstance(batch, str):
                raise DataError(batch)
            yield batch


def build_imagefolder_loaders(
    root: str | os.PathLike[str] | None,
    options: ImageFolderOptions | None = None,
    *,
    batch_size: int = 128,
    test_batch_size: int = 256,
    device: str | torch.device = "cpu",
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 4,
    subset: Any = None,
) -> tuple[BatchLoader, BatchLoader, DatasetInfo]:
    """``(train, val, info)`` loaders of an image folder (see the module docstring).

    ``subset(labels) -> indices`` (optional) keeps part of the training images.
    """
    options = options or ImageFolderOptions()
    info = imagefolder_info(root, options)
    train_dir, val_dir = split_dirs(root)
    train_files, train_labels = list_images(train_dir, info.classes)
    val_files, val_labels = list_images(val_dir, info.classes)
    if subset is not None:
        keep = subset(train_labels).tolist()
        train_files, train_labels = [train_files[i] for i in keep], train_labels[keep]
    common = dict(mean=info.mean, std=info.std, device=device)
    train_options = dict(
        batch_size=batch_size, shuffle=True, augment=info.augment, seed=seed, rank=rank, world_size=world_size, **common
    )
    in_memory = options.in_memory
    if in_memory is None:
        pixels = (len(train_files) + len(val_files)) * options.channels * options.image_size**2
        in_memory = pixels <= IN_MEMORY_BYTES
    if in_memory:
        workers = max(1, num_workers)
        train: BatchLoader = TensorLoader(decode_all(train_files, options, workers), train_labels, **train_options)
        val: BatchLoader = TensorLoader(
            decode_all(val_files, options, workers), val_labels, batch_size=test_batch_size, **common
        )
    else:
        train = ImageFileLoader(train_files, train_labels, options, num_workers, **train_options)
        val = ImageFileLoader(val_files, val_labels, options, num_workers, batch_size=test_batch_size, **common)
    return train, val, info
