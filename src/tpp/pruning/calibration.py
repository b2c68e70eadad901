"""Data-driven importance criteria: channel scores measured on calibration batches.

* :class:`ActivationImportance` (Wanda-sp; Sun et al. 2023, "Wanda", structured form as in An et al.
  2024, "FLAP"): channel ``j`` scores ``sum_c ||X_c[:, j]||_2 * sum_i |W_c[i, j]|`` over the unit's
  *consumers* ``c``, the layers that read the channels as their input (an MLP's down projection, the
  next convolution), with ``X_c`` the consumer's input over every calibration token/position.
* :class:`TaylorImportance` (first order, element-wise, as LLM-Pruner's vector form; Ma et al. 2023):
  channel ``j`` scores ``sum |w * dL/dw|`` over every weight that goes with it: its filters in the
  producing layers (and their biases, BatchNorm gamma/beta, per-channel parameters) and its input
  columns in the consumers, with ``dL/dw`` accumulated over the calibration batches.

Both measure the whole model once, on the first unit scored, and measure again only if a parameter
has changed since (an optimiser step, a removal), so a pruner that chooses at ``prune()`` time scores
the weights it then has. Whole attention heads (:mod:`tpp.pruning.heads`) are scored through
``o_proj``'s input columns of each key/value group. The model is run in eval mode through
:func:`tpp.util.inputs.call_without_cache` (no key/value cache), its train/eval flags, ``.grad``
and ``requires_grad`` flags are left as they were.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from tpp.errors import ConfigError
from tpp.pruning.importance import Importance, L1Importance
from tpp.pruning.layers import filter_dim, is_weight_layer
from tpp.pruning.units import PruningUnit
from tpp.util.inputs import call_without_cache, logits_of, move_inputs
from tpp.util.modules import device_of, warn_caller

LossFn = Callable[[Any, torch.Tensor], torch.Tensor]
# (layer, the unit's channel per index, the layer's input channel per index)
Consumer = tuple[nn.Module, torch.Tensor, torch.Tensor]


def consumers(unit: PruningUnit) -> list[Consumer]:
    """The layers that take ``unit``'s channels as input, with the map from their input channels to the
    unit's channels. For a Torch-Pruning group, the members pruned along their input channels (a
    flatten maps one channel to many inputs); for whole heads, ``o_proj``'s columns of each group."""
    if unit.heads is not None:
        lay = unit.heads
        width = lay.group_size * lay.head_dim
        return [(lay.o, torch.arange(lay.kv_heads).repeat_interleave(width), torch.arange(lay.kv_heads * width))]
    rows = {id(m.module) for m in unit.rows}
    found = []
    for item in unit.group or ():
        module, handler = item.dep.target.module, item.dep.handler
        # every Torch-Pruning pruner (and tpp's Conv1D one) names its input-channel handler so;
        # depthwise convolutions only carry the channels on and are among the rows
        if (
            getattr(handler, "__name__", "") != "prune_in_channels"
            or not is_weight_layer(module)
            or id(module) in rows
            or any(i is None or i < 0 for i in item.idxs)
            or any(i is None for i in item.root_idxs)
        ):
            continue
        found.append(
            (module, torch.as_tensor(item.root_idxs, dtype=torch.long), torch.as_tensor(item.idxs, dtype=torch.long))
        )
    return found


def input_columns(module: nn.Module, tensor: torch.Tensor) -> torch.Tensor:
    """Per input channel of weight layer ``module``, the sum of ``tensor`` (shaped like its weight) over
    everything else: output channels and kernel. A grouped convolution's input channel ``j`` meets only
    its group's filters."""
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        groups = module.groups
        per_group = tensor.reshape(groups, tensor.shape[0] // groups, tensor.shape[1], -1)
        return per_group.sum(dim=(1, 3)).flatten()
    in_dim = 1 - filter_dim(module)  # Linear: [out, in]; transformers' Conv1D: [in, out]
    return tensor.movedim(in_dim, 0).flatten(1).sum(dim=1)


def _fingerprint(model: nn.Module) -> tuple:
    """Changes when a parameter is replaced or modified in place (its version counter moves)."""
    return tuple((id(p), p._version) for p in model.parameters())


def _batches(calibration: Iterable[Any] | None, what: str) -> list:
    if calibration is None:
        raise ConfigError(f"{what} importance needs calibration batches: pass calibration=[batch, ...]")
    batches = list(calibration)  # kept: measured again if the weights change
    if not batches:
        raise ConfigError(f"{what} importance needs calibration batches, got none; pass at least one batch")
    return batches


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in flags:
            module.training = training


class _Calibrated:
    """Measures the model once per state of its parameters; falls back to L1 (one warning per unit)
    for a unit it cannot score."""

    what = ""

    def __init__(self, model: nn.Module, calibration: Iterable[Any] | None) -> None:
        self.model = model
        self.batches = _batches(calibration, self.what)
        self._measured_at: tuple | None = None
        self._warned: set[str] = set()

    def refresh(self) -> None:
        """Measure again on the next call (for weights changed behind autograd's back, via ``.data``)."""
        self._measured_at = None

    def _ensure_measured(self) -> None:
        now = _fingerprint(self.model)
        if now != self._measured_at:
            self._measure()
            self._measured_at = _fingerprint(self.model)  # measuring may itself move version counters

    def _measure(self) -> None:
        raise NotImplementedError

    def _fallback(self, unit: PruningUnit, why: str) -> torch.Tensor:
        if unit.name not in self._warned:
            self._warned.add(unit.name)
            warn_caller(f"tpp: {self.what} importance cannot score {unit.name} ({why}); its channels are chosen by L1")
        return L1Importance()(unit)


class ActivationImportance(_Calibrated):
    """Wanda-sp: ``||X_j||_2 * sum_i |W[i, j]|`` summed over the unit's consumers (module docstring).

    Args:
        model: the model the pruner is built on (the same object).
        calibration: model inputs (tensor, tuple or dict each, as ``example_inputs``), run once in eval
            mode without gradients; the squared activations are summed per input channel in float64.
    """

    what = "activation"

    def __init__(self, model: nn.Module, calibration: Iterable[Any] | None) -> None:
        super().__init__(model, calibration)
        self.sq_norms: dict[nn.Module, torch.Tensor] = {}

    def _measure(self) -> None:
        sums: dict[nn.Module, torch.Tensor] = {}

        def record(module, args, kwargs, output):
            x = args[0] if args else kwargs.get("input")
            if not torch.is_tensor(x):
                return
            if isinstance(module, (nn.Conv1d, nn.Conv2d)):
                channel = 1 if x.dim() == module.weight.dim() else 0  # batched or not
                x = x.movedim(channel, -1)
            x = x.detach().reshape(-1, x.shape[-1]).to(torch.float64)
            sq = x.square().sum(dim=0)
            sums[module] = sums[module] + sq if module in sums else sq

        hooks = [m.register_forward_hook(record, with_kwargs=True) for m in self.model.modules() if is_weight_layer(m)]
        device = device_of(self.model)
        try:
            with _eval_mode(self.model), torch.no_grad():
                for batch in self.batches:
                    call_without_cache(self.model, move_inputs(batch, device))
        finally:
            for hook in hooks:
                hook.remove()
        self.sq_norms = sums

    def __call__(self, unit: PruningUnit) -> torch.Tensor:
        self._ensure_measured()
        users = consumers(unit)
        if not users:
            return self._fallback(unit, "no layer found that takes its channels as input")
        score = torch.zeros(unit.channels, dtype=torch.float64)
        for module, roots, local in users:
            sq = self.sq_norms.get(module)
            weight = module.weight.detach().abs().to(torch.float64)
            columns = input_columns(module, weight)
            if sq is None or sq.shape != columns.shape:
                return self._fallback(
                    unit,
                    f"its consumer {type(module).__name__} did not run on calibration batches of its current width",
                )
            per_input = sq.to(weight.device).sqrt() * columns
            score.index_add_(0, roots, per_input[local.to(per_input.device)].cpu())
        return score.float()

    def __repr__(self) -> str:
        return f"ActivationImportance(batches={len(self.batches)})"


def cross_entropy(output: Any, targets: torch.Tensor) -> torch.Tensor:
    """Cross entropy on the output's logits; ``[B, T, V]`` logits with ``[B, T]`` targets (a language
    model's next tokens, shifted by the caller) are flattened to tokens."""
    logits = logits_of(output)
    if logits.dim() == 3 and targets.shape == logits.shape[:2]:
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
    return F.cross_entropy(logits, targets)


class TaylorImportance(_Calibrated):
    """First-order Taylor, element-wise: ``sum |w * dL/dw|`` over the weights of each channel.

    Written here rather than through ``tp.importance.TaylorImportance``: that one reads ``.grad`` when
    a unit is scored (the calibration gradients would have to stay in the user's ``.grad`` while the
    plan is made), skips ``transformers``' ``Conv1D`` and has no attention-head units.

    Args:
        model: the model the pruner is built on (the same object).
        calibration: ``(inputs, targets)`` pairs; the gradients of ``loss_fn`` are summed over them.
        loss_fn: ``loss_fn(model_output, targets) -> scalar``; default :func:`cross_entropy`. For a causal
            language model pass ``(ids[:, :-1], ids[:, 1:])`` pairs.
    """

    what = "taylor"

    def __init__(self, model: nn.Module, calibration: Iterable[Any] | None, loss_fn: LossFn | None = None) -> None:
        super().__init__(model, calibration)
        for batch in self.batches:
            if not isinstance(batch, (tuple, list)) or len(batch) != 2:
                raise ConfigError("taylor importance needs (inputs, targets) pairs as calibration batches")
        self.loss_fn = loss_fn or cross_entropy
        self.saliency: dict[torch.Tensor, torch.Tensor] = {}  # keyed by parameter identity

    def _measure(self) -> None:
        params = list(self.model.parameters())
        saved = [(p, p.grad, p.requires_grad) for p in params]
        device = device_of(self.model)
        saliency: dict[torch.Tensor, torch.Tensor] = {}
        try:
            for p in params:
                p.grad = None
                if p.is_floating_point():  # frozen layers are scored too
                    p.requires_grad_(True)
            with _eval_mode(self.model), torch.enable_grad():
                for inputs, targets in self.batches:
                    output = call_without_cache(self.model, move_inputs(inputs, device))
                    self.loss_fn(output, move_inputs(targets, device)).backward()
            for p in params:
                if p.grad is not None:
                    saliency[p] = (p.detach() * p.grad).abs().float()
        finally:
            for p, grad, flag in saved:
                p.grad = grad
                p.requires_grad_(flag)
        self.saliency = saliency

    def __call__(self, unit: PruningUnit) -> torch.Tensor:
        self._ensure_measured()
        score = torch.zeros(unit.channels, dtype=torch.float64)
        rows = [
            (getattr(m.module, attr, None), dim, m) for m in unit.rows for attr, dim in (("weight", m.dim), ("bias", 0))
        ]
        others = [(getattr(m.module, attr, None), 0, m) for m in unit.norms for attr in ("weight", "bias")]
        others += [(m.module, m.dim, m) for m in unit.params]
        found = any(t is not None and t in self.saliency for t, _, _ in rows)
        for tensor, dim, member in rows + others:
            if tensor is not None and tensor in self.saliency:
                per_channel = self.saliency[tensor].movedim(dim, 0).reshape(tensor.shape[dim], -1).sum(dim=1)
                score.index_add_(0, member.roots, per_channel[member.local.to(per_channel.device)].double().cpu())
        for module, roots, local in consumers(unit):
            if module.weight in self.saliency:
                per_input = input_columns(module, self.saliency[module.weight])
                score.index_add_(0, roots, per_input[local.to(per_input.device)].double().cpu())
        if not found:
            return self._fallback(unit, "the loss has no gradient with respect to its filters")
        return score.float()

    def __repr__(self) -> str:
        loss = getattr(self.loss_fn, "__name__", repr(self.loss_fn))
        return f"TaylorImportance(batches={len(self.batches)}, loss_fn={loss})"


IMPORTANCES = ("l1", "activation", "taylor")


def make_importance(
    name: str,
    model: Any,
    calibration: Iterable[Any] | None = None,
    *,
    loss_fn: Callable[[Any, torch.Tensor], torch.Tensor] | None = None,
) -> Importance:
    """The importance called ``name`` (one of :data:`IMPORTANCES`) for ``model``.

    ``calibration``: for ``"activation"`` model inputs, for ``"taylor"`` ``(inputs, targets)`` pairs with
    ``loss_fn`` (default: cross entropy on the logits); ``"l1"`` needs none.

    Raises:
        ConfigError: an unknown name, or a data-driven criterion without calibration batches.
    """
    if name == "l1":
        return L1Importance()
    if name == "activation":
        return ActivationImportance(model, calibration)
    if name == "taylor":
        return TaylorImportance(model, calibration, loss_fn=loss_fn)
    raise ConfigError(f"unknown importance {name!r}: choose one of {', '.join(IMPORTANCES)}")
