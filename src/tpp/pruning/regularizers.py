"""Regularisers: each adds a loss term (:meth:`~Regularizer.loss`) and/or a gradient term
(:meth:`~Regularizer.add_gradient`) at the strength the schedule gives.

A pruner calls ``loss(lambda)`` in ``penalty()`` and ``add_gradient(lambda)`` in ``regularize()``, in
the order the regularisers were given. :meth:`~Regularizer.bind` is called once the pruned channels
are known, and again whenever they change (``load_state_dict``, selection at prune time).

========================  =======================================================================
:class:`GramDecorrelation`  TPP's Eq. (3): the gram entries that tie pruned filters to kept ones -> 0
:class:`GrowingL2`          Eq. (5) / GReg: ``grad += lambda * w`` on the pruned filters, their
                            biases, or their BatchNorm gamma/beta (and per-channel parameters)
:class:`Orthogonality`      KernOrth or OrthConv over the whole network (the orthogonality baselines)
========================  =======================================================================
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn as nn

from tpp.errors import ConfigError
from tpp.pruning.orthogonality import ORTH_KINDS, conv_orthogonality, kernel_orthogonality, orth_layers
from tpp.pruning.penalties import GRAM_TARGETS, GramPenalty, SelectedParameters
from tpp.pruning.units import PruningUnit


class Regularizer:
    """Base class. Subclasses override :meth:`loss` and/or :meth:`add_gradient`."""

    def bind(self, module: nn.Module, units: Sequence[PruningUnit], pruned_roots: dict[str, torch.Tensor]) -> None:
        """Learn which tensors to act on: ``pruned_roots[unit.name]`` are the unit's channels that go."""

    def loss(self, strength: float) -> torch.Tensor | None:
        """A term to add to the training loss (None: nothing to add)."""
        return None

    def add_gradient(self, strength: float) -> None:
        """Add a term to ``.grad`` after ``backward()``."""


class GramDecorrelation(Regularizer):
    """Eq. (3) times ``weight * lambda`` (``weight`` is the official ``lw_opp``, 1000).

    ``target="decorrelate"`` pushes only the gram entries that involve a pruned filter to 0 (TPP);
    ``"kernorth"`` pushes ``W W^T`` to ``diag(kept)`` on every entry (the paper's ablation)."""

    def __init__(
        self,
        weight: float = 1000.0,
        target: str = "decorrelate",
        every: int = 1,
        iteration: Callable[[], int] | None = None,
    ) -> None:
        if weight < 0:
            raise ConfigError(f"gram_weight must be >= 0, got {weight}")
        if target not in GRAM_TARGETS:
            raise ConfigError(f"unknown gram target {target!r}; choose from {GRAM_TARGETS}")
        if int(every) != every or every < 1 or (every > 1 and iteration is None):
            raise ConfigError(f"gram_every must be a whole number >= 1 (with the schedule's iteration), got {every!r}")
        self.weight, self.target, self.every, self.iteration = weight, target, int(every), iteration
        self._gram = GramPenalty([], target)

    def bind(self, module, units, pruned_roots) -> None:
        layers = [
            (member.module, member.local_indices(pruned_roots[unit.name]), member.dim)
            for unit in units
            for member in unit.rows
        ]
        self._gram = GramPenalty(layers, target=self.target)

    def loss(self, strength: float) -> torch.Tensor | None:
        strength = self.weight * strength
        if self.every > 1:
            # every k-th iteration, k times as strong: the same total push over k iterations for 1/k of
            # the gram's cost, which does not shrink with the batch (a large share of a step on small batches)
            if self.iteration() % self.every:
                return None
            strength *= self.every
        return None if strength == 0 else strength * self._gram()


class GrowingL2(Regularizer):
    """``grad += lambda * p`` on the pruned slices: the gradient of ``lambda / 2 * ||p||^2``.

    ``on`` says which tensors: ``"filters"`` (weights and biases of the layers producing the channels,
    TPP), ``"filter_weights"`` (weights only, GReg-1) or ``"norms"`` (BatchNorm gamma/beta and bare
    per-channel parameters such as layer scales, TPP's BN term)."""

    TARGETS = ("filters", "filter_weights", "norms")

    def __init__(self, on: str = "filters") -> None:
        if on not in self.TARGETS:
            raise ConfigError(f"unknown growing-L2 target {on!r}; choose from {self.TARGETS}")
        self.on = on
        self._selected = SelectedParameters([])

    def bind(self, module, units, pruned_roots) -> None:
        selections: list[tuple] = []
        for unit in units:
            roots = pruned_roots[unit.name]
            if self.on == "norms":
                for member in unit.norms:
                    rows = member.local_indices(roots)
                    selections += [
                        (getattr(member.module, "weight", None), rows),
                        (getattr(member.module, "bias", None), rows),
                    ]
                selections += [(m.module, m.local_indices(roots), m.dim) for m in unit.params]
            else:
                for member in unit.rows:
                    rows = member.local_indices(roots)
                    selections.append((member.module.weight, rows, member.dim))
                    if self.on == "filters":
                        selections.append((getattr(member.module, "bias", None), rows))
        self._selected = SelectedParameters(selections)

    def add_gradient(self, strength: float) -> None:
        self._selected.add_l2_gradient(strength)


class Orthogonality(Regularizer):
    """KernOrth (``kind="kernorth"``, Xie et al., 2017) or OrthConv (``"orthconv"``, Wang et al., 2020)
    over every Conv2d/Linear of the network, times ``lambda``; pruned channels play no part."""

    def __init__(self, kind: str = "kernorth", official_stride2: bool = False) -> None:
        if kind not in ORTH_KINDS:
            raise ConfigError(f"unknown orthogonality loss {kind!r}; choose from {ORTH_KINDS}")
        self.kind, self.official_stride2 = kind, official_stride2
        self._layers: list[nn.Module] = []

    def bind(self, module, units, pruned_roots) -> None:
        self._layers = orth_layers(module)

    def loss(self, strength: float) -> torch.Tensor | None:
        if self.kind == "kernorth":
            return strength * kernel_orthogonality(self._layers)
        return strength * conv_orthogonality(self._layers, official_stride2=self.official_stride2)
