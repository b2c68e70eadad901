"""Layers shared by the model families."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class ChannelPadShortcut(nn.Module):
    """Parameter-free shortcut: spatial subsampling + channel gather with zero channels.

    With the default layout this is He et al.'s CIFAR "option A" shortcut:
    ``F.pad(x[:, :, ::stride, ::stride], (0, 0, 0, 0, p, p))`` with ``p = (out - in) // 2``.

    The layout is the non-persistent long buffer ``source_index`` (length ``out_channels``):
    entry ``k`` is the input channel copied to output channel ``k``, or ``-1`` for a zero channel.
    Storing it as data (rather than a fixed pad width) lets a pruner drop input or output
    channels by editing ``source_index`` / ``in_channels`` (see :meth:`keep_in_channels`,
    :meth:`keep_out_channels`).

    Attributes:
        in_channels: number of channels of the input tensor (a plain int, editable).
        out_channels: ``len(source_index)`` (read-only property).
        stride: spatial subsampling step.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 2,
        source_index: Sequence[int] | torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if source_index is None:
            pad = out_channels - in_channels
            if pad < 0 or pad % 2:
                raise ValueError(
                    f"option-A padding needs out_channels - in_channels even and >= 0, "
                    f"got {in_channels} -> {out_channels}"
                )
            source_index = [-1] * (pad // 2) + list(range(in_channels)) + [-1] * (pad // 2)
        index = torch.as_tensor(source_index, dtype=torch.long).flatten()
        if index.numel() != out_channels:
            raise ValueError(f"source_index has {index.numel()} entries, expected {out_channels}")
        self.in_channels = int(in_channels)
        self.stride = int(stride)
        # non-persistent: the layout is architecture, not weights, and must not break strict loads
        self.register_buffer("source_index", index, persistent=False)
        self._check()

    @property
    def out_channels(self) -> int:
        """Number of output channels (= ``len(source_index)``)."""
        return int(self.source_index.numel())

    def _check(self) -> None:
        idx = self.source_index
        if idx.is_meta:  # built on the meta device to count the weights: there are no values to check
            return
        if idx.numel() and (int(idx.min()) < -1 or int(idx.max()) >= self.in_channels):
            raise ValueError(f"source_index entries must lie in [-1, {self.in_channels})")

    def keep_out_channels(self, keep: Sequence[int] | torch.Tensor) -> None:
        """Keep only output channels ``keep`` (in that order)."""
        keep_t = torch.as_tensor(keep, dtype=torch.long, device=self.source_index.device)
        self.source_index = self.source_index[keep_t].clone()

    def keep_in_channels(self, keep: Sequence[int] | torch.Tensor) -> None:
        """Keep only input channels ``keep``; outputs that copied a dropped input become zero."""
        idx = self.source_index
        keep_t = torch.as_tensor(keep, dtype=torch.long, device=idx.device)
        remap = torch.full((self.in_channels + 1,), -1, dtype=torch.long, device=idx.device)
        remap[keep_t] = torch.arange(keep_t.numel(), device=idx.device)
        # position in_channels of remap stays -1, so existing -1 entries (mapped there) stay -1
        self.source_index = remap[torch.where(idx < 0, self.in_channels, idx)]
        self.in_channels = int(keep_t.numel())

    # The channel-layer protocol of tpp.pruning (graph.ChannelLayer): Torch-Pruning would trace F.pad
    # on the channel axis as element-wise and return a model that crashes; editing the map instead
    # lets residual-coupled channels of option-A ResNets be removed too.
    def tpp_channels(self, out: bool) -> int:
        """Output (``out=True``) or input channels."""
        return self.out_channels if out else self.in_channels

    def tpp_remove_channels(self, indices: Sequence[int], out: bool) -> None:
        """Remove output or input channels ``indices``. A removed input channel was zero (its producers
        were zeroed), so outputs that copied it become zero channels: the function is unchanged."""
        size = self.out_channels if out else self.in_channels
        keep = torch.ones(size, dtype=torch.bool)
        keep[list(indices)] = False
        (self.keep_out_channels if out else self.keep_in_channels)(keep.nonzero().flatten())

    def tpp_fixed_channels(self, local: torch.Tensor) -> torch.Tensor:
        """Which of the output channels ``local`` copy an input (only the zero ones can be pruned)."""
        return self.source_index[local.to(self.source_index.device)].cpu() >= 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        b, _, h, w = x.shape
        # an appended zero channel at position in_channels serves every -1 entry
        x = torch.cat([x, x.new_zeros(b, 1, h, w)], dim=1)
        index = torch.where(self.source_index < 0, self.in_channels, self.source_index)
        return x.index_select(1, index)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"
