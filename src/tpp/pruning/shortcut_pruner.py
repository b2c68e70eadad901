"""Torch-Pruning handler for the option-A (zero-padding) shortcut.

Torch-Pruning traces ``F.pad`` on the channel axis as an element-wise op and then returns models that
crash (anchors §1.5). Our ``ChannelPadShortcut`` instead copies channels through an index map, and
this handler edits that map, so residual-coupled channels of option-A ResNets can be removed too.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch_pruning.pruner.function import BasePruningFunc

from tpp.models.layers import ChannelPadShortcut


class ChannelPadShortcutPruner(BasePruningFunc):
    """Removes input or output channels of a :class:`ChannelPadShortcut` by editing its index map."""

    TARGET_MODULES = ChannelPadShortcut

    def prune_out_channels(self, layer: ChannelPadShortcut, idxs: Sequence[int]) -> ChannelPadShortcut:
        layer.keep_out_channels(_complement(layer.out_channels, idxs))
        return layer

    def prune_in_channels(self, layer: ChannelPadShortcut, idxs: Sequence[int]) -> ChannelPadShortcut:
        # A removed input channel was zero (its producers were zeroed), so outputs that copied it
        # become zero channels: the function is unchanged.
        layer.keep_in_channels(_complement(layer.in_channels, idxs))
        return layer

    def get_out_channels(self, layer: ChannelPadShortcut) -> int:
        return len(layer.source_index)

    def get_in_channels(self, layer: ChannelPadShortcut) -> int:
        return layer.in_channels


def _complement(size: int, removed: Sequence[int]) -> torch.Tensor:
    keep = torch.ones(size, dtype=torch.bool)
    keep[list(removed)] = False
    return keep.nonzero().flatten()
