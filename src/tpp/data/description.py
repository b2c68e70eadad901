"""What the training code needs to know about a dataset."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetInfo:
    """Static description of a dataset as the training code consumes it.

    Attributes:
        name: canonical dataset name (one of :data:`DATASETS`).
        num_classes: number of target classes.
        in_channels: image channels fed to the network (1 or 3).
        image_size: spatial side of the network input (32 or 224).
        mean: per-channel mean subtracted after scaling pixels to [0, 1].
        std: per-channel standard deviation divided after subtracting ``mean``.
        augment: whether training uses random crop (padding 4) and horizontal flip
            (for ImageNet: RandomResizedCrop + flip).
        classes: class names where the data has them (``imagefolder``: its folder names).
        kind: ``"image"`` or ``"text"``. For text, ``num_classes`` is the tokenizer's vocabulary,
            ``image_size`` the sequence length (tokens per window), ``in_channels`` 1 and
            ``mean``/``std`` empty.
        tokenizer: text only: the tokenizer's name (``bytes``, ``hf:...``).
        bytes_per_token: text only: UTF-8 bytes per token of the evaluation split (0 when unknown),
            to turn a loss per token into bits per byte.
    """

    name: str
    num_classes: int
    in_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: bool
    classes: tuple[str, ...] = ()
    kind: str = "image"
    tokenizer: str = ""
    bytes_per_token: float = 0.0
