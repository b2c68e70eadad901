"""``TensorLoader``: an in-memory, device-resident batch iterator with vectorised augmentation.

For datasets that fit in memory (MNIST, CIFAR) a worker-based ``DataLoader`` spends most of
its time in per-image Python transforms; here the whole split is one uint8 tensor and each
batch is gathered, augmented and normalised with a handful of tensor ops.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from tpp.errors import DataError

CROP_PADDING = 4  # RandomCrop(32, padding=4) as in the reference CIFAR recipes


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """CPU generator whose stream is a pure function of (seed, epoch).

    Mixing through SeedSequence (rather than ``seed + epoch``) keeps (seed=0, epoch=1) and
    (seed=1, epoch=0) apart.
    """
    entropy = [int(seed) % 2**64, int(epoch) % 2**64]  # SeedSequence rejects negatives
    state = np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator(device="cpu").manual_seed(int(state) & 0x7FFF_FFFF_FFFF_FFFF)


class EpochBatches:
    """The epoch contract every tpp loader keeps: ``set_epoch(epoch)`` selects the epoch whose order
    (and augmentation) the next iteration produces, and ``len()`` counts this rank's batches of
    ``num_samples`` examples (the last partial batch dropped with ``drop_last``)."""

    epoch: int
    num_samples: int
    batch_size: int
    drop_last: bool

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order and augmentation the next iteration produces."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)


class BatchLoader(EpochBatches):
    """Epoch-seeded batches ``(x float32 [B,C,H,W], y int64 [B])`` of a dataset of uint8 images.

    The common part of :class:`TensorLoader` (images in one tensor) and
    :class:`tpp.data.imagefolder.ImageFileLoader` (images decoded from files): the per-epoch
    order, the augmentation draws, sharding and normalisation. A subclass supplies the uint8
    images of each batch through :meth:`_uint8_batches`. Arguments: see :class:`TensorLoader`.
    """

    def __init__(
        self,
        labels: torch.Tensor,
        *,
        batch_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        channels: int,
        shuffle: bool = False,
        augment: bool = False,
        drop_last: bool = False,
        device: str | torch.device = "cpu",
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        _validate_options(labels, batch_size, channels, mean, std, rank, world_size)
        self.device = torch.device(device)
        self.labels = labels.to(self.device, torch.int64)
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.augment = bool(augment)
        self.drop_last = bool(drop_last)
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.epoch = 0
        self.dataset_size = int(labels.shape[0])
        # per-rank example count after DistributedSampler-style padding
        self.num_samples = math.ceil(self.dataset_size / self.world_size)
        shape = (1, len(mean), 1, 1)
        self._mean = torch.tensor(list(mean), dtype=torch.float32, device=self.device).view(shape)
        self._std = torch.tensor(list(std), dtype=torch.float32, device=self.device).view(shape)

    def indices(self) -> torch.Tensor:
        """This rank's example indices for the current epoch, in batch order (CPU int64)."""
        return self._plan()[0]

    def _plan(self) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Draw (indices, crop offsets [n,2], flip flags [n]) for this rank and epoch."""
        gen = epoch_generator(self.seed, self.epoch)
        n = self.dataset_size
        order = torch.randperm(n, generator=gen) if self.shuffle else torch.arange(n)
        total = self.num_samples * self.world_size
        if total > n:  # repeat leading indices so every rank gets the same count
            order = order.repeat(math.ceil(total / n))[:total]
        offsets = flips = None
        if self.augment:
            # drawn for the global padded order so a position's augmentation is rank-independent
            offsets = torch.randint(0, 2 * CROP_PADDING + 1, (total, 2), generator=gen)
            flips = torch.rand(total, generator=gen) < 0.5
            offsets, flips = offsets[self.rank :: self.world_size], flips[self.rank :: self.world_size]
        return order[self.rank :: self.world_size], offsets, flips

    def _uint8_batches(self, batches: list[torch.Tensor]) -> Iterator[torch.Tensor]:
        """The uint8 images ``[B,C,H,W]`` of each index batch, in order (on any device)."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        idx, offsets, flips = self._plan()
        slices = [slice(b * self.batch_size, (b + 1) * self.batch_size) for b in range(len(self))]
        for sl, x in zip(slices, self._uint8_batches([idx[sl] for sl in slices])):
            x = x.to(self.device, non_blocking=True)
            if self.augment:
                assert offsets is not None and flips is not None
                x = random_crop(x, offsets[sl].to(self.device), CROP_PADDING)
                x = hflip_where(x, flips[sl].to(self.device))
            x = x.float().div_(255.0).sub_(self._mean).div_(self._std)
            yield x, self.labels[idx[sl].to(self.device)]


class TensorLoader(BatchLoader):
    """Iterate ``(x float32 [B,C,H,W], y int64 [B])`` batches over an in-memory uint8 dataset.

    The data is moved to ``device`` once. Each epoch's order and augmentation are drawn from
    a generator seeded with ``(seed, epoch)``, so batches are reproducible for exact resume.
    Like ``DistributedSampler``, the epoch only changes through :meth:`set_epoch`: iterating
    twice without calling it yields the same batches again. Iteration is lazy, so taking
    only the first K batches (``break`` or ``itertools.islice``) costs only K batches.

    With ``world_size > 1`` every rank draws the same global permutation, pads it by
    repeating leading indices to a multiple of ``world_size``, and keeps
    ``indices[rank::world_size]``; all ranks therefore see the same number of batches.

    Args:
        images: uint8 ``[N, C, H, W]``.
        labels: integer ``[N]``.
        batch_size: examples per batch.
        mean: per-channel mean (after scaling to [0, 1]).
        std: per-channel standard deviation.
        shuffle: draw a new permutation each epoch.
        augment: random crop (zero padding 4) and random horizontal flip.
        drop_last: drop this rank's final incomplete batch.
        device: where data lives and batches are produced.
        seed: base seed for order and augmentation.
        rank: this process's rank.
        world_size: number of processes sharing an epoch.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, **options: Any) -> None:
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
            got = f"{images.dtype} {list(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
            raise DataError(f"TensorLoader images must be a uint8 tensor [N, C, H, W], got {got}; convert them first.")
        if isinstance(labels, torch.Tensor) and labels.shape != (images.shape[0],):
            raise DataError(
                f"TensorLoader labels must be a tensor [N] with N={images.shape[0]}, "
                f"got {list(labels.shape)}; pass one label per image."
            )
        super().__init__(labels, channels=int(images.shape[1]), **options)
        self.images = images.to(self.device)

    def _uint8_batches(self, batches: list[torch.Tensor]) -> Iterator[torch.Tensor]:
        for batch in batches:
            yield self.images[batch.to(self.device)]


def random_crop(x: torch.Tensor, offsets: torch.Tensor, padding: int) -> torch.Tensor:
    """Crop each image of ``x`` [B,C,H,W] at its own offset from a zero-padded copy.

    ``offsets[i] = (dy, dx)`` in ``[0, 2*padding]``; (padding, padding) is the identity.
    One pad per batch plus one advanced-indexing gather, no per-image loop.
    """
    b, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    rows = offsets[:, 0:1] + torch.arange(h, device=x.device)  # [B, H]
    cols = offsets[:, 1:2] + torch.arange(w, device=x.device)  # [B, W]
    bi = torch.arange(b, device=x.device).view(b, 1, 1, 1)
    ci = torch.arange(c, device=x.device).view(1, c, 1, 1)
    return padded[bi, ci, rows.view(b, 1, h, 1), cols.view(b, 1, 1, w)]


def hflip_where(x: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """Mirror the images of ``x`` [B,C,H,W] whose ``flips`` flag is True."""
    return torch.where(flips.view(-1, 1, 1, 1), x.flip(3), x)


def _validate_options(
    labels: torch.Tensor,
    batch_size: int,
    channels: int,
    mean: Sequence[float],
    std: Sequence[float],
    rank: int,
    world_size: int,
) -> None:
    if not isinstance(labels, torch.Tensor) or labels.dim() != 1:
        got = list(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise DataError(f"loader labels must be a tensor [N], got {got}; pass one label per image.")
    if labels.shape[0] == 0:
        raise DataError("TensorLoader got an empty dataset; pass at least one image.")
    if int(batch_size) < 1:
        raise DataError(f"batch_size must be >= 1, got {batch_size}; pass a positive batch size.")
    if len(mean) != channels or len(std) != channels:
        raise DataError(
            f"mean/std need {channels} values (one per channel), got {len(mean)}/{len(std)}; "
            "use the dataset's DatasetInfo."
        )
    if any(s <= 0 for s in std):
        raise DataError(f"std values must be positive, got {tuple(std)}; use the dataset's DatasetInfo.")
    if int(world_size) < 1 or not 0 <= int(rank) < int(world_size):
        raise DataError(
            f"Need 0 <= rank < world_size, got rank={rank}, world_size={world_size}; check the launcher's environment."
        )
