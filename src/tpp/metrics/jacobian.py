"""Jacobian singular values (JSV): the trainability diagnostic of the TPP paper (docs/method.md#jsv).

For each example ``x_b``, ``J_b = d logits / d x_b`` (``K`` logits, no softmax; input flattened to
``D = C*H*W``) is ``K x D``; the paper reports the mean of its ``K`` singular values ("mean JSV").

Exact and cheap, unlike the official code (docs/method.md#official-code): one forward pass per chunk of examples,
then one vector-Jacobian product (VJP) per class reusing the graph. The VJP of
``sum_b logits[b, k]`` w.r.t. the inputs gives row ``k`` of every ``J_b`` at once, which is exact
in eval mode because each example's logits depend only on its own input. The singular values are
square roots of the eigenvalues of the ``K x K`` Gram ``J_b J_b^T`` (``eigvalsh`` in float64,
rounding negatives clamped to 0), much cheaper than an SVD of the wide ``K x D`` matrix.

Train mode (``train_mode=True``) is the paper's setting (docs/method.md#jsv: BatchNorm uses batch
statistics). BatchNorm then couples the examples, and the same batch-sum VJP yields
``J_b = d(sum_b' logits[b']) / d x_b``, cross-example terms included. That is exactly what the
official code computes (one backward pass per class with a one-hot ``grad_output`` over the whole
batch), so we keep that definition; a batch is never split in train mode since its statistics are
part of the metric, and BatchNorm running statistics are restored afterwards.

Many classes (e.g. ImageNet's 1000): ``num_directions=R < K`` switches to an estimate, see
:func:`_slq_chunk`. Default: exact if ``K <= 100``, else ``R = 100`` (eval mode only).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Iterable

import torch
import torch.autograd.forward_ad as fwAD
from torch import nn

from tpp.util.inputs import logits_of

__all__ = ["JSVResult", "jacobian_singular_values"]

_BUDGET_BYTES = 256 * 2**20  # per chunk: its R x D float64 Jacobians stay under ~256 MB
_MAX_EXACT_CLASSES = 100  # default: exact up to this many classes, else this many directions
_STEPS_PER_PROBE = 20  # Lanczos steps per probe: enough for the quadrature of sqrt (few % bias)


@dataclass(frozen=True, eq=False)  # eq would compare tensors elementwise
class JSVResult:
    """Jacobian singular values of ``N`` examples and summary statistics (plain floats).

    ``singular_values``: ``[N, K]`` float64 CPU tensor, descending per example. ``mean``: the
    paper's mean JSV (over all examples and values); ``std``: their population std (numpy's
    default, as the official code). ``condition_number``: mean over examples of ``s_max / s_min``
    without the ``num_condition_ignored`` inf/NaN ones (``s_min == 0``); NaN if none is left.

    When ``estimated`` (``num_directions < K``), ``mean`` and ``std`` are stochastic Lanczos
    quadrature estimates, and ``singular_values`` ``[N, m]`` holds Ritz values (Lanczos estimates of
    individual singular values, the extreme ones first to converge) of one probe per example, so
    ``max`` and ``min`` are inner bounds and ``condition_number`` a lower bound of the true ones.
    """

    singular_values: torch.Tensor
    mean: float
    std: float
    min: float
    max: float
    condition_number: float
    num_condition_ignored: int
    estimated: bool = False

    @property
    def num_examples(self) -> int:
        return int(self.singular_values.shape[0])

    def as_dict(self) -> dict[str, Any]:
        """Plain Python numbers (no tensors), e.g. for logging or JSON."""
        keys = ("mean", "std", "min", "max", "condition_number", "num_condition_ignored", "estimated")
        return {**{key: getattr(self, key) for key in keys}, "num_examples": self.num_examples}


def jacobian_singular_values(
    model: nn.Module,
    inputs: torch.Tensor | Iterable[Any],
    *,
    train_mode: bool = False,
    chunk_size: int | None = None,
    num_directions: int | None = None,
    generator: torch.Generator | None = None,
    max_batches: int = 1,
) -> JSVResult:
    """Singular values of the logits-input Jacobian of every example (docs/method.md#jsv).

    Args:
        model: maps ``[B, ...]`` inputs to ``[B, K]`` logits.
        inputs: a batch ``[B, ...]``, or an iterable (e.g. a DataLoader) yielding ``(x, y, ...)``
            or bare ``x``, of which only the first ``max_batches`` items are read.
        train_mode: measure in train mode (BatchNorm batch statistics, as the paper); see the
            module docstring for this batch-coupled definition. Always exact, whatever ``K``.
        chunk_size: examples per forward pass in eval mode (default: as many as keep the chunk's
            Jacobians under ~256 MB). Not allowed in train mode, where a batch is one pass.
        num_directions: ``R`` output directions per example; ``R < K`` estimates the mean JSV
            (eval mode only), ``R >= K`` is exact. Default: exact if ``K <= 100``, else ``R = 100``.
        generator: random source of the estimator's probes.
        max_batches: batches to read when ``inputs`` is an iterable.

    No side effects: module mode flags and buffers are restored, parameter ``.grad`` is never
    touched, and inputs are copied to the model's device (and floating dtype).
    """
    if train_mode and (chunk_size is not None or num_directions is not None):
        # BatchNorm batch statistics couple a batch: it must be one forward pass, and probes
        # cannot be folded into it.
        raise ValueError("chunk_size and num_directions need eval mode (train mode: whole batches, exact)")
    checks = {"chunk_size": chunk_size, "num_directions": num_directions, "max_batches": max_batches}
    for name, value in checks.items():
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")

    ref = next(iter(model.parameters()), next(iter(model.buffers()), None))
    modes = {m: m.training for m in model.modules()}
    saved = [b.detach().clone() for b in model.buffers()] if train_mode else []
    parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    estimated = False
    # train mode runs dropout: its random draws must not shift the caller's random stream
    devices = [ref.device] if ref is not None and ref.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, enabled=train_mode):
        try:
            model.train(train_mode)
            with torch.enable_grad():
                for x in _batches(inputs, max_batches):
                    if ref is not None:
                        x = x.to(device=ref.device, dtype=ref.dtype if x.is_floating_point() else x.dtype)
                    *part, est = _batch_jsv(model, x, train_mode, chunk_size, num_directions, generator)
                    parts.append(tuple(part))
                    estimated = estimated or est
        finally:
            with torch.no_grad():
                for buf, old in zip(model.buffers(), saved):
                    buf.copy_(old)
            for m, flag in modes.items():
                m.training = flag
    if not parts:
        raise ValueError("inputs yielded no batch")
    vals, means, mean_sqs = (torch.cat(t) for t in zip(*parts))
    return _summarise(vals, means, mean_sqs, estimated)


def _batches(inputs: torch.Tensor | Iterable[Any], max_batches: int) -> Iterable[torch.Tensor]:
    """Yield input tensors, reading at most ``max_batches`` items (never one more)."""
    if isinstance(inputs, torch.Tensor):
        yield inputs
        return
    for i, item in enumerate(inputs):
        x = item[0] if isinstance(item, (tuple, list)) else item
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"expected a tensor or an (x, y) pair from inputs, got {type(x).__name__}")
        yield x
        if i + 1 >= max_batches:
            return  # stop before asking for another: the rest of the loader is never read


def _use_batched_vjp(model: nn.Module) -> bool:
    """Whether to batch the K VJPs with ``autograd.grad(is_grads_batched=True)``.

    ``autograd.grad``'s batched mode rather than ``torch.func.vjp`` + ``vmap``: the latter rejects
    BatchNorm in train mode (in-place running-stat update of a captured tensor). Batching pays
    off for Linear/elementwise networks (~1.4x over a loop on mlp7_linear, CPU), but the batching
    rules of convolution and batch-norm backward are slower than a plain loop (1.2-2x, CPU), so
    such models loop over directions, still after a single forward pass. Results are identical.
    """
    slow = (nn.modules.conv._ConvNd, nn.modules.batchnorm._NormBase)
    return not any(isinstance(m, slow) for m in model.modules())


def _batch_jsv(
    model: nn.Module,
    x: torch.Tensor,
    train_mode: bool,
    chunk_size: int | None,
    num_directions: int | None,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]:
    """Per-example values ``[B, R]``, mean ``[B]``, mean square ``[B]``; whether estimated."""
    n, d = x.shape[0], x[0].numel()
    if n == 0:
        raise ValueError("empty input batch")
    batched = _use_batched_vjp(model)
    if train_mode:  # whole batch, exact: its BatchNorm statistics define the metric
        vals, _ = _exact_chunk(model, x, batched, None)
        assert vals is not None
        return vals, vals.mean(1), vals.pow(2).mean(1), False
    # R <= r_max; K is only known after a forward pass, so the first chunk is sized for r_max.
    r_max = num_directions or _MAX_EXACT_CLASSES
    r, k, start, parts = r_max, None, 0, []
    while start < n:
        xc = x[start : start + (chunk_size or max(1, _BUDGET_BYTES // (r * d * 8)))]
        start += xc.shape[0]
        vals = None
        if k is None or r == k:  # exact, or first chunk: its forward pass tells K
            vals, k = _exact_chunk(model, xc, batched, r_max)
            r = min(r_max, k)
        if vals is None:  # R < K: estimate
            parts.append(_slq_chunk(model, xc, k, r, generator))
        else:
            parts.append((vals, vals.mean(1), vals.pow(2).mean(1)))
    vals, means, mean_sqs = (torch.cat(t) for t in zip(*parts))
    return vals, means, mean_sqs, r < k


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = logits_of(model(x))
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"model must return [B, K] logits, got {shape}")
    return out


def _exact_chunk(
    model: nn.Module, x: torch.Tensor, batched: bool, max_classes: int | None
) -> tuple[torch.Tensor | None, int]:
    """Exact descending singular values ``[b, K]`` (one forward, K batch-sum VJPs, Gram eigvalsh),
    or None if ``K > max_classes``; and ``K``."""
    x = x.detach().clone().requires_grad_(True)  # fresh leaf: the caller's tensor is untouched
    logits = _logits(model, x)
    b, k = logits.shape
    if max_classes is not None and k > max_classes:
        return None, k
    dirs = torch.eye(k, dtype=logits.dtype, device=logits.device).unsqueeze(1).expand(k, b, k)
    jac = torch.zeros(b, k, x[0].numel(), dtype=torch.float64, device=x.device)  # float64 Gram
    if logits.requires_grad:  # else the logits are constant and J = 0
        # Batched calls hold intermediates for all their directions: bound them like the chunk.
        per_call = max(1, min(k, _BUDGET_BYTES // (b * x[0].numel() * 4))) if batched else 1
        for i in range(0, k, per_call):
            v = dirs[i : i + per_call] if batched else dirs[i]
            (g,) = torch.autograd.grad(logits, x, v, retain_graph=True, is_grads_batched=batched, allow_unused=True)
            if g is not None:  # [per_call, b, ...] batched, else [b, ...]
                jac[:, i : i + per_call] = g.flatten(2).transpose(0, 1) if batched else g.flatten(1)[:, None]
    eig = torch.linalg.eigvalsh(jac @ jac.mT)
    return eig.clamp_min(0).sqrt().flip(-1).cpu(), k


def _slq_chunk(
    model: nn.Module, x: torch.Tensor, k: int, r: int, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stochastic Lanczos quadrature (SLQ) estimates of ``tr(G^(1/2))/K``, ``tr(G)/K``; ``G = J J^T``.

    A sketch ``Q J`` with ``R < K`` rows cannot recover J's spectrum (its singular values only
    interlace the true ones; on random-init 100-class nets it overestimated the mean JSV by 30%
    at R = 50), so we estimate the spectral sum instead. Per example, ``p = max(1, R // 20)``
    orthonormal random probes ``q`` (Haar) each start ``m = R // p`` Lanczos steps on ``G``; Gauss
    quadrature gives ``q^T f(G) q ~ sum_j tau_j^2 f(theta_j)`` (Ritz values ``theta_j``, weights
    ``tau_j^2``) and ``tr f(G) ~ K * mean over probes``. For ``f = sqrt`` the Gauss rule
    overestimates and the Gauss-Radau rule with a node at 0 underestimates (signs of the even/odd
    derivatives of sqrt), so we take their midpoint: on 100-class random-init MLPs (condition
    numbers ~1e7) its bias was < 1% at 20 steps, versus +2-8% for Gauss alone, and the spread
    between repeated estimates (Hutchinson noise) ~1.5-2% at B = 64, R = 80 (shrinks as 1/sqrt(B)).
    Each step is one VJP (``J^T v``, batch-sum trick) and one forward-mode JVP (``J u``), all
    probes folded into the batch (valid in eval mode, where examples are independent), so the
    cost is about ``R * (VJP + JVP)`` instead of ``K`` VJPs: worthwhile when ``R << K``.
    """
    b, p = x.shape[0], max(1, r // _STEPS_PER_PROBE)
    m, n = min(k, max(1, r // p)), p * b
    xr = x.detach().repeat(p, *([1] * (x.dim() - 1))).requires_grad_(True)  # probe-major rows
    logits = _logits(model, xr)

    def gram_mv(v: torch.Tensor) -> torch.Tensor:  # [n, k] -> G v, per example
        (u,) = torch.autograd.grad(logits, xr, v.to(logits.dtype), retain_graph=True, allow_unused=True)
        if u is None:
            return torch.zeros_like(v)
        with warnings.catch_warnings(), torch.no_grad(), fwAD.dual_level():
            # torch's first dual_level() scripts its JVP decompositions: a torch-internal warning
            warnings.filterwarnings("ignore", "`torch.jit.script` is deprecated", DeprecationWarning)
            tangent = fwAD.unpack_dual(logits_of(model(fwAD.make_dual(xr.detach(), u)))).tangent
        return torch.zeros_like(v) if tangent is None else tangent.to(v.dtype)

    def orthogonalise(w: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
        for _ in range(2):  # full reorthogonalisation, twice: float64 Lanczos loses orthogonality
            w = w - torch.einsum("njk,nj->nk", basis, torch.einsum("njk,nk->nj", basis, w))
        return w

    def randn(*shape: int) -> torch.Tensor:  # on the generator's device, then the model's
        gdev = generator.device if generator is not None else torch.device("cpu")
        return torch.randn(*shape, generator=generator, device=gdev, dtype=torch.float64).to(x.device)

    v = torch.linalg.qr(randn(b, k, p)).Q.permute(2, 0, 1).reshape(n, k)
    basis = torch.zeros(n, m, k, dtype=torch.float64, device=x.device)
    alpha = torch.zeros(n, m, dtype=torch.float64, device=x.device)
    beta = torch.zeros(n, m, dtype=torch.float64, device=x.device)
    for j in range(m):
        basis[:, j] = v
        w = gram_mv(v)
        alpha[:, j] = (w * v).sum(1)
        scale = w.norm(dim=1)
        w = orthogonalise(w, basis[:, : j + 1])
        beta[:, j] = w.norm(dim=1)
        if j + 1 < m:
            # Breakdown (invariant subspace found): restart from a fresh orthogonal vector with
            # beta = 0, which leaves the quadrature of the start vector unchanged.
            stuck = beta[:, j] <= 1e-10 * scale
            beta[:, j] = torch.where(stuck, torch.zeros_like(beta[:, j]), beta[:, j])
            fresh = orthogonalise(randn(n, k), basis[:, : j + 1])
            w = torch.where(stuck[:, None], fresh, w)
            v = w / w.norm(dim=1, keepdim=True)
    gauss, theta = _quadrature_sqrt(alpha, beta[:, :-1])
    # Gauss-Radau rule with a node fixed at 0: T extended by one row whose diagonal entry makes 0
    # an eigenvalue (Golub & Meurant), i.e. alpha' = beta_m^2 [T^-1]_mm.
    last = torch.zeros(n, m, 1, dtype=torch.float64, device=x.device)
    last[:, -1] = 1
    sol, info = torch.linalg.solve_ex(_tridiag(alpha, beta[:, :-1]), last)
    t_inv_mm = torch.where(info == 0, sol[:, -1, 0], torch.nan)  # singular T: fall back to Gauss
    radau, _ = _quadrature_sqrt(torch.cat([alpha, (beta[:, -1] ** 2 * t_inv_mm)[:, None]], 1), beta)
    radau = torch.where(torch.isfinite(radau), radau.clamp(0), gauss).minimum(gauss)
    mean = ((gauss + radau) / 2).view(p, b).mean(0)  # mean over probes
    mean_sq = alpha[:, 0].view(p, b).mean(0)  # q^T G q: the quadrature is exact for f(x) = x
    return theta[:b].sqrt().flip(-1).cpu(), mean.cpu(), mean_sq.cpu()  # first probe's Ritz values


def _tridiag(diag: torch.Tensor, off: torch.Tensor) -> torch.Tensor:
    return torch.diag_embed(diag) + torch.diag_embed(off, 1) + torch.diag_embed(off, -1)


def _quadrature_sqrt(diag: torch.Tensor, off: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gauss quadrature ``sum_j tau_j^2 sqrt(theta_j)`` of a Lanczos matrix; and its nodes ``theta``."""
    theta, vecs = torch.linalg.eigh(_tridiag(diag, off))
    theta = theta.clamp_min(0)
    return (vecs[:, 0, :] ** 2 * theta.sqrt()).sum(1), theta


def _summarise(vals: torch.Tensor, means: torch.Tensor, mean_sqs: torch.Tensor, estimated: bool) -> JSVResult:
    cond = vals[:, 0] / vals[:, -1]
    finite = torch.isfinite(cond)
    mean = float(means.mean())  # equal example weights: the mean over all N*K values
    # exact: direct (no cancellation); estimate: from the estimated first two moments
    std = math.sqrt(max(float(mean_sqs.mean()) - mean**2, 0.0)) if estimated else float(vals.std(correction=0))
    return JSVResult(
        singular_values=vals,
        mean=mean,
        std=std,
        min=float(vals.min()),
        max=float(vals.max()),
        condition_number=float(cond[finite].mean()) if bool(finite.any()) else math.nan,
        num_condition_ignored=int((~finite).sum()),
        estimated=estimated,
    )
