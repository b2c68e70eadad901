"""``build_loaders``: train/test loaders plus :class:`DatasetInfo` for any supported dataset."""

from __future__ import annotations

import os
from typing import Any

import torch

from tpp.data.arrays import load_arrays
from tpp.data.info import TEXT_DATASETS, DatasetInfo, canonical_name, dataset_info, resolve_data_dir
from tpp.data.loader import TensorLoader
from tpp.errors import DataError


def stratified_first(labels: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of ``n`` examples taken round-robin over classes, earliest examples first.

    Deterministic and class-balanced (up to one example), so quick runs on a subset see
    every class. Returned indices are sorted.
    """
    labels = labels.cpu()
    order = torch.argsort(labels, stable=True)
    sorted_labels = labels[order]
    starts = torch.searchsorted(sorted_labels, sorted_labels, right=False)
    rank_in_class = torch.empty_like(order)
    rank_in_class[order] = torch.arange(len(order)) - starts
    # sort by (rank within class, original index): class-interleaved, earliest first
    key = rank_in_class * len(labels) + torch.arange(len(labels))
    return torch.sort(torch.argsort(key)[:n]).values


def subset_indices(labels: torch.Tensor, train_subset: int, name: str, num_classes: int | None = None) -> torch.Tensor:
    """:func:`stratified_first` indices of ``train_subset`` examples; DataError when out of range.

    A class-balanced subset needs one image of every class at least (``num_classes``, default:
    the classes present in ``labels``): with fewer, some classes would never be trained on.
    """
    n = int(train_subset)
    classes = int(num_classes) if num_classes is not None else int(torch.unique(labels).numel())
    if not 0 < n <= len(labels):
        raise DataError(
            f"train_subset={train_subset} is outside 1..{len(labels)} (the {name} training set size); "
            "pass a value in that range or omit it."
        )
    if n < classes:
        raise DataError(
            f"train_subset={train_subset} (--train-subset) is fewer images than the {classes} classes of {name}, so some "
            f"classes would never be trained on; pass at least {classes} (one image per class) or omit it."
        )
    return stratified_first(labels, n)


# the validation carve is the same for every seed and method of a comparison: its own fixed seed
VALIDATION_SEED = 20230101


def validation_indices(labels: torch.Tensor, fraction: float, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(train, validation)`` indices: ``fraction`` of every class, drawn with a fixed generator
    (:data:`VALIDATION_SEED`, the same on every machine and for every run), carved from the training set.

    Raises:
        DataError: ``fraction`` outside (0, 0.5], or a class too small to give both sides an example.
    """
    if not 0 < float(fraction) <= 0.5:
        raise DataError(
            f"val_split={fraction} is outside (0, 0.5]; pass e.g. --val-split 0.1 (10% of the training set)"
        )
    generator = torch.Generator().manual_seed(VALIDATION_SEED)
    labels = labels.cpu()
    held: list[torch.Tensor] = []
    for label in torch.unique(labels):
        members = torch.nonzero(labels == label).flatten()
        count = round(len(members) * float(fraction))
        if not 0 < count < len(members):
            raise DataError(
                f"class {int(label)} of {name} has {len(members)} training images: too few to carve "
                f"--val-split {fraction} from; pass a larger fraction or omit it"
            )
        held.append(members[torch.randperm(len(members), generator=generator)[:count]])
    validation = torch.sort(torch.cat(held)).values
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[validation] = False
    return torch.nonzero(keep).flatten(), validation


def build_loaders(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    batch_size: int = 128,
    test_batch_size: int = 256,
    device: str | torch.device = "cpu",
    download: bool = False,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 4,
    train_subset: int | None = None,
    image_options: Any = None,
    seq_len: int = 256,
    tokenizer: Any = None,
    eval_split: str = "test",
    windows_per_epoch: int | None = None,
    val_split: float | None = None,
) -> tuple[Any, Any, DatasetInfo]:
    """Build ``(train_loader, test_loader, info)`` for a dataset.

    Small datasets use :class:`TensorLoader` (data resident on ``device``; ``num_workers``
    is unused). Training batches are shuffled and augmented per ``info.augment`` and sharded
    over ``world_size`` ranks; the test loader is never sharded, so evaluation runs the whole
    test set on every rank. ImageNet uses torchvision ``ImageFolder`` loaders (needs the
    ``vision`` extra) with the same ``set_epoch`` contract. ``imagefolder`` (your own images
    under ``data_dir/train/<class>`` and ``data_dir/val/<class>``) needs only PIL; see
    :mod:`tpp.data.imagefolder`. ``text`` (``data_dir/{train,valid,test}.txt``) and ``text_tiny``
    (a corpus shipped in the package) give :class:`tpp.data.text.TextLoader` batches of token
    windows ``(inputs [B, seq_len], targets [B, seq_len])`` (``text`` with no ``data_dir`` is
    ``text_tiny``); see :mod:`tpp.data.text`.

    Args:
        name: dataset name (see :data:`DATASETS`).
        data_dir: dataset root; see :func:`resolve_data_dir`.
        batch_size: training batch size per rank.
        test_batch_size: evaluation batch size.
        device: where in-memory datasets live and batches are produced.
        download: fetch missing files from official URLs (never implicit).
        seed: base seed of the per-epoch order/augmentation.
        rank: this process's rank.
        world_size: number of data-parallel processes.
        num_workers: DataLoader workers (ImageNet; decoding threads/workers for imagefolder).
        train_subset: keep only this many training images, class-balanced, for quick runs.
        image_options: :class:`tpp.data.imagefolder.ImageFolderOptions` (imagefolder only).
        seq_len: text only: tokens per window.
        tokenizer: text only: a tokenizer or its source (``bytes``, ``hf:DIR``, ``hf:FILE.gguf``);
            None: bytes.
        eval_split: ``test`` or ``valid``, the split of the evaluation loader: for text, ``valid.txt``;
            for the built-in image datasets, the ``val_split`` carve (so that settings are chosen on
            data the reported test numbers never saw).
        windows_per_epoch: text only: windows drawn at random per training epoch (None: all).
        val_split: built-in image datasets: carve this fraction of every class from the training set
            (:func:`validation_indices`, the same for every seed); training never sees it, whichever
            split is evaluated, so a run evaluated on ``valid`` and one on ``test`` train alike.

    Raises:
        DataError: unknown dataset, missing/corrupt data, or a bad ``train_subset``.
    """
    key = canonical_name(name)
    if val_split is not None and (key in TEXT_DATASETS or key in ("imagefolder", "imagenet")):
        where = "valid.txt" if key in TEXT_DATASETS else "a folder of its own"
        raise DataError(f"--val-split carves validation images from a built-in dataset; {key} has {where}: drop it")
    if eval_split not in ("valid", "test"):
        raise DataError(f"eval_split must be valid or test, got {eval_split!r}")
    if key not in TEXT_DATASETS and eval_split == "valid" and val_split is None:
        raise DataError(
            "--eval-split valid needs --val-split F for image data (the validation carve of the training "
            "set), e.g. --val-split 0.1"
        )
    if key in TEXT_DATASETS:
        from tpp.data.text import build_text_loaders

        if train_subset is not None:
            raise DataError("train_subset is not supported for text; use windows_per_epoch (or omit it).")
        # text_tiny is always the embedded corpus; text without a folder falls back to it too
        return _labelled(
            build_text_loaders(
                data_dir if key == "text" else None,
                tokenizer,
                seq_len=seq_len,
                batch_size=batch_size,
                test_batch_size=test_batch_size,
                eval_split=eval_split,
                device=device,
                seed=seed,
                rank=rank,
                world_size=world_size,
                windows_per_epoch=windows_per_epoch,
            ),
            eval_split,
        )
    if key == "imagefolder":
        from tpp.data.imagefolder import build_imagefolder_loaders

        subset = (
            None
            if train_subset is None
            else (lambda labels: subset_indices(labels, train_subset, "imagefolder", int(labels.max()) + 1))
        )
        return _labelled(
            build_imagefolder_loaders(
                data_dir,
                image_options,
                batch_size=batch_size,
                test_batch_size=test_batch_size,
                device=device,
                seed=seed,
                rank=rank,
                world_size=world_size,
                num_workers=num_workers,
                subset=subset,
            ),
            eval_split,
        )
    info = dataset_info(name)
    if info.name == "imagenet":
        if train_subset is not None:
            raise DataError("train_subset is not supported for imagenet; omit it or use a smaller dataset.")
        from tpp.data.imagenet import build_imagenet_loaders

        train, test = build_imagenet_loaders(
            resolve_data_dir(data_dir),
            info,
            batch_size=batch_size,
            test_batch_size=test_batch_size,
            num_workers=num_workers,
            seed=seed,
            rank=rank,
            world_size=world_size,
        )
        return _labelled((train, test, info), eval_split)

    x_train, y_train = load_arrays(info.name, "train", data_dir, download)
    x_test, y_test = load_arrays(info.name, "test", data_dir, download)
    if val_split is not None:
        kept, held = validation_indices(y_train, val_split, info.name)
        if eval_split == "valid":
            x_test, y_test = x_train[held], y_train[held]
        x_train, y_train = x_train[kept], y_train[kept]
    if train_subset is not None:
        keep = subset_indices(y_train, train_subset, info.name, info.num_classes)
        x_train, y_train = x_train[keep], y_train[keep]
    train = TensorLoader(
        x_train,
        y_train,
        batch_size=batch_size,
        mean=info.mean,
        std=info.std,
        shuffle=True,
        augment=info.augment,
        device=device,
        seed=seed,
        rank=rank,
        world_size=world_size,
    )
    test = TensorLoader(x_test, y_test, batch_size=test_batch_size, mean=info.mean, std=info.std, device=device)
    return _labelled((train, test, info), eval_split)


def _labelled(loaders: tuple[Any, Any, DatasetInfo], eval_split: str) -> tuple[Any, Any, DatasetInfo]:
    """``loaders`` with the evaluation loader's ``split`` set: what the evaluation numbers are on
    (``valid`` or ``test``), for the lines that print them."""
    loaders[1].split = eval_split
    return loaders
