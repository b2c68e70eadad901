"""The paper's baseline pruning methods (digest §4), registered at import time.

=============  ================================================================================
name           recipe
=============  ================================================================================
l1+orthp       L1 one-shot, then OrthP: every Conv2d/Linear set to its orthogonal QR factor x gain
l1+kernorth    L1 one-shot; fine-tuning adds ``0.1 x`` KernOrth loss
l1+orthconv    L1 one-shot; fine-tuning adds ``0.1 x`` OrthConv loss
kernorth+l1    ``orth_iters`` steps of ``0.1 x`` KernOrth on the unpruned model, then L1 on those weights
orthconv+l1    same with OrthConv
greg1          GReg-1: growing L2 on the pruned filters only (TPP without gram, BN and bias terms)
scratch        the L1-pruned architecture, re-initialised at random
=============  ================================================================================

TPP's ablations are options of ``tpp`` itself (``bn_reg=False``, ``gram_target="kernorth"``,
``gram_weight=0``).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

import torch
import torch.nn as nn

from tpp.errors import ConfigError, PruningError
from tpp.pruning.l1 import L1Pruner
from tpp.pruning.methods import Method, register_method
from tpp.pruning.orthogonality import (
    activation_gain,
    conv_orthogonality,
    kernel_orthogonality,
    orth_layers,
    orthogonalize_,
)
from tpp.pruning.penalties import SelectedParameters
from tpp.pruning.tpp_pruner import TPPPruner
from tpp.util.modules import unwrap

# ``--lw_orth_reg 0.1``, the official weight of the KernOrth/OrthConv losses (digest §4).
ORTH_REG_WEIGHT = 0.1
# Length of the orth-regularised phase of "KernOrth/OrthConv + L1" when neither ``orth_iters`` nor
# ``stabilize_iters`` is given: the paper's count is UNCONFIRMED (digest §4), so we reuse TPP's
# stabilisation length (CIFAR, digest §2.10).
DEFAULT_ORTH_ITERS = 10_000
ORTH_KINDS = ("kernorth", "orthconv")


def orthogonality_penalty(
    model: nn.Module, kind: str = "kernorth", weight: float = ORTH_REG_WEIGHT, official_stride2: bool = False
) -> Callable[[], torch.Tensor]:
    """A zero-argument callable returning ``weight x`` the KernOrth or OrthConv loss of ``model``.

    The layer list is collected once, so call this again if the model's modules are replaced.
    """
    if kind not in ORTH_KINDS:
        raise ConfigError(f"unknown orthogonality loss {kind!r}; choose from {ORTH_KINDS}")
    layers = orth_layers(model)
    if kind == "kernorth":
        return lambda: weight * kernel_orthogonality(layers)
    return lambda: weight * conv_orthogonality(layers, official_stride2=official_stride2)


def kernorth_finetune_penalty(model: nn.Module) -> Callable[[], torch.Tensor]:
    """``L1 + KernOrth``: ``0.1 x sum orth_dist`` over every layer during fine-tuning (digest §4)."""
    return orthogonality_penalty(model, "kernorth")


def orthconv_finetune_penalty(model: nn.Module) -> Callable[[], torch.Tensor]:
    """``L1 + OrthConv``: ``0.1 x`` OrthConv loss during fine-tuning (digest §4)."""
    return orthogonality_penalty(model, "orthconv")


def orthp_reinit(model: nn.Module) -> None:
    """OrthP after removal (``--reinit exact_isometry_based_on_existing``, digest §4)."""
    orthogonalize_(model, activation_gain(model))


@torch.no_grad()
def reinitialize_(model: nn.Module) -> None:
    """Scratch: re-draw every parameter with each module's ``reset_parameters()`` (global torch RNG).

    This is the official ``--reinit pth_reset`` option (digest §4); BatchNorm's reset gives weight 1,
    bias 0 and fresh running statistics.
    """
    for module in unwrap(model).modules():
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()
        if isinstance(module, nn.modules.batchnorm._NormBase) and module.affine:
            nn.init.ones_(module.weight)  # explicit, in case a subclass resets differently
            nn.init.zeros_(module.bias)


class OrthRegThenL1Pruner:
    """The "KernOrth + L1" / "OrthConv + L1" baselines: orth-regularised training of the unpruned model, then L1.

    For ``orth_iters`` iterations :meth:`penalty` returns ``orth_weight x`` the orthogonality loss of
    the whole (unpruned) model; the L1 selection is made at :meth:`prune` time on the weights as they
    are then (digest §4, [Smile] l1_pruner.py). ``orth_iters`` defaults to ``stabilize_iters`` when
    given (the only schedule length the prune job forwards), else :data:`DEFAULT_ORTH_ITERS`.

    The ratio, scope and ignored layers are checked at construction (by building a throwaway
    :class:`L1Pruner`), so a bad configuration fails before the training phase, not after it.
    """

    def __init__(
        self,
        model: nn.Module,
        example_inputs: Any,
        ratio: float | Mapping[str, float] | str | None = 0.5,
        scope: str = "internal",
        ignored_layers: Iterable[nn.Module | str] | None = None,
        global_ratio: float | None = None,
        orth: str = "kernorth",
        orth_iters: int | None = None,
        stabilize_iters: int | None = None,
        orth_weight: float = ORTH_REG_WEIGHT,
        official_stride2: bool = False,
        **_ignored: Any,
    ) -> None:
        if orth_iters is None:
            orth_iters = DEFAULT_ORTH_ITERS if stabilize_iters is None else stabilize_iters
        if int(orth_iters) < 0:
            raise ConfigError(f"orth_iters must be >= 0, got {orth_iters}")
        if orth_weight < 0:
            raise ConfigError(f"orth_weight must be >= 0, got {orth_weight}")
        self.model = model
        self.module = unwrap(model)
        self.example_inputs = example_inputs
        self._l1_args = dict(ratio=ratio, scope=scope, ignored_layers=ignored_layers, global_ratio=global_ratio)
        L1Pruner(model, example_inputs, **self._l1_args)  # validate now (raises ConfigError/PruningError)
        self._loss = orthogonality_penalty(self.module, orth, orth_weight, official_stride2)
        self.iteration = 0
        self._l1: L1Pruner | None = None
        # reg_* / stabilize_iters describe the phase to the prune job (no ramp, orth_iters steps at a
        # constant weight), whose iteration count reads ceil(ceiling/step) * interval + stabilize_iters
        self.config = dict(
            ratio=ratio if not isinstance(ratio, Mapping) else dict(ratio), scope=scope, global_ratio=global_ratio,
            orth=orth, orth_iters=int(orth_iters), orth_weight=orth_weight, official_stride2=official_stride2,
            reg_step=1.0, reg_ceiling=1.0, reg_interval=0, stabilize_iters=int(orth_iters),
        )

    @property
    def phase(self) -> str:
        """``"regularize"`` during the orth-regularised phase, then ``"done"``."""
        return "done" if self._l1 is not None or self.iteration >= self.config["orth_iters"] else "regularize"

    @property
    def done(self) -> bool:
        """True once the orth-regularised phase is over: call :meth:`prune`."""
        return self.phase == "done"

    @property
    def reg_value(self) -> float:
        """The (constant) weight of the orthogonality loss, reported as the phase's lambda."""
        return float(self.config["orth_weight"])

    @property
    def total_iterations(self) -> int:
        """Length of the regularisation phase."""
        return self.config["orth_iters"]

    def penalty(self) -> torch.Tensor:
        """``orth_weight x`` the orthogonality loss while regularising; add it to the loss."""
        if self.done:
            return torch.zeros((), device=_device_of(self.module))
        return self._loss()

    def regularize(self) -> None:
        """No gradient surgery: the whole regulariser is the loss term."""
        return None

    def step(self) -> None:
        """Advance one iteration."""
        if not self.done:
            self.iteration += 1

    @property
    def pruned_indices(self) -> dict[str, list[int]]:
        """The L1 selection: final after :meth:`prune`; before it, what the current weights would give
        (re-traced on every call, so query it sparingly)."""
        if self._l1 is not None:
            return self._l1.pruned_indices
        return L1Pruner(self.model, self.example_inputs, **self._l1_args).pruned_indices

    def prune(self, optimizer: torch.optim.Optimizer | None = None) -> nn.Module:
        """Select by L1 on the current (orth-regularised) weights and remove; returns the smaller model."""
        if self._l1 is None:
            self._l1 = L1Pruner(self.model, self.example_inputs, **self._l1_args)
        return self._l1.prune(optimizer)

    def state_dict(self) -> dict:
        """Plain-data state: the iteration count (the selection is made at prune time)."""
        return {"version": 1, "iteration": self.iteration, "pruned": self._l1 is not None,
                "config": dict(self.config)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue a killed regularisation phase at the saved iteration."""
        if state.get("pruned"):
            raise PruningError("this pruner state is from after prune(); load the pruned model with tpp.load_pruned")
        self.iteration = int(state["iteration"])

    def __repr__(self) -> str:
        return (f"OrthRegThenL1Pruner(orth={self.config['orth']!r}, iteration={self.iteration}/"
                f"{self.config['orth_iters']}, phase={self.phase!r})")


def kernorth_then_l1(model: nn.Module, example_inputs: Any, **options: Any) -> OrthRegThenL1Pruner:
    """Factory of ``kernorth+l1``."""
    return OrthRegThenL1Pruner(model, example_inputs, orth="kernorth", **options)


def orthconv_then_l1(model: nn.Module, example_inputs: Any, **options: Any) -> OrthRegThenL1Pruner:
    """Factory of ``orthconv+l1``."""
    return OrthRegThenL1Pruner(model, example_inputs, orth="orthconv", **options)


class GReg1Pruner(TPPPruner):
    """GReg-1 (Wang et al., 2021b; digest §4): L1-picked filters get ``W.grad += lambda * W`` with
    TPP's growing-lambda schedule, then a stabilisation phase, then removal.

    Unlike TPP: no gram term, no BatchNorm term, no bias term and no layer-wise zero-out (the
    pruned filters are only zeroed at removal). GReg's early stop on a kept/pruned magnitude ratio of
    1000 is not implemented: the phase always runs to the lambda ceiling plus ``stabilize_iters``.
    Options that would change these (``gram_weight``, ``bn_reg``, ``weight_reg``, ``gram_target``,
    ``zero_out_interval``) are ignored.
    """

    def __init__(
        self,
        model: nn.Module,
        example_inputs: Any,
        ratio: float | Mapping[str, float] | str | None = 0.5,
        scope: str = "internal",
        ignored_layers: Iterable[nn.Module | str] | None = None,
        reg_step: float = 1e-4,
        reg_interval: int = 10,
        reg_ceiling: float = 1.0,
        stabilize_iters: int = 10_000,
        global_ratio: float | None = None,
        **_ignored: Any,
    ) -> None:
        super().__init__(model, example_inputs, ratio=ratio, scope=scope, ignored_layers=ignored_layers,
                         reg_step=reg_step, reg_interval=reg_interval, reg_ceiling=reg_ceiling,
                         stabilize_iters=stabilize_iters, zero_out_interval=0, gram_weight=0.0, bn_reg=False,
                         weight_reg=True, global_ratio=global_ratio)

    def _build_regularisers(self) -> None:
        super()._build_regularisers()
        # filter weights only: GReg-1 regularises no biases (digest §4, [GReg] reg_pruner.py L352-365)
        self._weights = SelectedParameters([
            (member.module.weight, member.local_indices(self._pruned_roots[unit.name]))
            for unit in self.units for member in unit.rows
        ])

    def _zero_due_units(self) -> None:
        return None  # GReg-1 has no layer-wise zero-out; prune() zeroes everything once


def _device_of(module: nn.Module) -> torch.device:
    for p in module.parameters():
        return p.device
    return torch.device("cpu")


for _method in (
    Method("l1+orthp", L1Pruner, False, "L1 pruning, then OrthP exact-isometry re-initialisation (Wang et al., 2021a)",
           after_prune=orthp_reinit),
    Method("l1+kernorth", L1Pruner, False, "L1 pruning, fine-tuning with KernOrth (Xie et al., 2017)",
           finetune_penalty=kernorth_finetune_penalty),
    Method("l1+orthconv", L1Pruner, False, "L1 pruning, fine-tuning with OrthConv (Wang et al., 2020)",
           finetune_penalty=orthconv_finetune_penalty),
    Method("kernorth+l1", kernorth_then_l1, True, "KernOrth-regularised training, then L1 pruning"),
    Method("orthconv+l1", orthconv_then_l1, True, "OrthConv-regularised training, then L1 pruning"),
    Method("greg1", GReg1Pruner, True, "GReg-1: growing L2 on the pruned filters (Wang et al., 2021b)"),
    Method("scratch", L1Pruner, False, "the L1-pruned architecture trained from random initialisation",
           after_prune=reinitialize_),
):
    register_method(_method)
