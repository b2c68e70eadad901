"""L1 pruning followed by a trainability-recovery step: the paper's other baselines.

=============  ================================================================================
l1+orthp       L1, then OrthP (Wang et al., 2021a): every Conv2d/Linear set to its orthogonal QR
               factor times the activation gain (an exact isometry for linear networks)
l1+kernorth    L1; fine-tuning adds ``0.1 x`` the KernOrth loss (Xie et al., 2017)
l1+orthconv    L1; fine-tuning adds ``0.1 x`` the OrthConv loss (Wang et al., 2020)
scratch        the L1-pruned architecture, re-initialised at random
=============  ================================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn

from tpp.pruning.methods.l1 import L1Pruner
from tpp.pruning.methods.orth_then_l1 import ORTH_REG_WEIGHT, orthconv_geometry_option
from tpp.pruning.orthogonality import activation_gain, orthogonalize_
from tpp.pruning.registry import Method, register_method
from tpp.pruning.regularizers import Orthogonality
from tpp.util.modules import unwrap


def orthogonality_penalty(
    model: nn.Module, kind: str = "kernorth", weight: float = ORTH_REG_WEIGHT, official_stride2: bool = False
) -> Callable[[], torch.Tensor]:
    """A zero-argument callable returning ``weight x`` the KernOrth or OrthConv loss of ``model``.

    The layer list is collected once, so call this again if the model's modules are replaced.
    """
    loss = Orthogonality(kind, official_stride2)
    loss.bind(unwrap(model), [], {})
    return lambda: loss.loss(weight)


def kernorth_finetune_penalty(model: nn.Module) -> Callable[[], torch.Tensor]:
    """``L1 + KernOrth``: ``0.1 x`` the KernOrth loss over every layer during fine-tuning."""
    return orthogonality_penalty(model, "kernorth")


def orthconv_finetune_penalty(model: nn.Module, orthconv_geometry: str = "textbook") -> Callable[[], torch.Tensor]:
    """``L1 + OrthConv``: ``0.1 x`` the OrthConv loss during fine-tuning, in the official or textbook geometry."""
    return orthogonality_penalty(model, "orthconv", official_stride2=orthconv_geometry == "official")


@dataclass
class L1OrthConvConfig:
    """Options of L1 + OrthConv."""

    orthconv_geometry: str = orthconv_geometry_option()


def orthp_reinit(model: nn.Module) -> None:
    """OrthP after removal (the official ``--reinit exact_isometry_based_on_existing``)."""
    orthogonalize_(model, activation_gain(model))


@torch.no_grad()
def reinitialize_(model: nn.Module) -> None:
    """Scratch: re-draw every parameter with each module's ``reset_parameters()`` (global torch RNG).

    This is the official ``--reinit pth_reset``; BatchNorm's reset gives weight 1, bias 0 and fresh
    running statistics.
    """
    for module in unwrap(model).modules():
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()
        if isinstance(module, nn.modules.batchnorm._NormBase) and module.affine:
            nn.init.ones_(module.weight)  # explicit, in case a subclass resets differently
            nn.init.zeros_(module.bias)


# L1Pruner itself is registered as "l1" by its @pruning_method; these names reuse it with other hooks, so they
# are registered here, after the hooks they name are defined.
register_method(
    Method(
        "l1+orthp",
        L1Pruner,
        regularized=False,
        description="L1 pruning, then OrthP exact-isometry re-initialisation (Wang et al., 2021a)",
        after_prune=orthp_reinit,
    )
)
register_method(
    Method(
        "l1+kernorth",
        L1Pruner,
        regularized=False,
        description="L1 pruning, fine-tuning with KernOrth (Xie et al., 2017)",
        finetune_penalty=kernorth_finetune_penalty,
    )
)
register_method(
    Method(
        "l1+orthconv",
        L1Pruner,
        regularized=False,
        description="L1 pruning, fine-tuning with OrthConv (Wang et al., 2020)",
        config=L1OrthConvConfig,
        finetune_penalty=orthconv_finetune_penalty,
        hook_options=("orthconv_geometry",),
    )
)
register_method(
    Method(
        "scratch",
        L1Pruner,
        regularized=False,
        description="the L1-pruned architecture trained from random initialisation",
        after_prune=reinitialize_,
    )
)
