"""Trainability of a language model: the JSV of its logits with respect to its input embeddings.

A causal language model takes token ids, which have no gradient, so the Jacobian is taken at the
first differentiable point: the embeddings of the tokens. For a window of ``T`` tokens, ``J`` is the
derivative of the ``V`` logits that predict the token after the window with respect to the window's
``T x d`` input embeddings. ``V`` (the vocabulary) is large, so :func:`~tpp.metrics.jacobian.jacobian_singular_values`
estimates the mean JSV with its default number of directions (``estimated`` is then set); the
``V`` values include the zeros past ``J``'s rank (at most the hidden size), the same count for every
model of one vocabulary, so means compare across pruned versions of one model.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterable, Iterator

import torch
from torch import nn

from tpp.metrics.jacobian import JSVResult, jacobian_singular_values
from tpp.util.inputs import logits_of

WINDOWS, TOKENS, DIRECTIONS = 2, 64, 20  # the default bounds of the estimate's cost (language_model_jsv)


class _EmbeddingsToNextToken(nn.Module):
    """``inputs_embeds [B, T, d] -> logits of the token after the window [B, V]``."""

    def __init__(self, language_model: nn.Module) -> None:
        super().__init__()
        self.language_model = language_model

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        output = self.language_model(inputs_embeds=embeddings, use_cache=False)
        return logits_of(output)[:, -1]


def takes_token_ids(batch: Any) -> bool:
    """Whether a loader's batch (``(inputs, targets)`` or bare inputs) holds integer token ids."""
    inputs = batch[0] if isinstance(batch, (tuple, list)) else batch
    return torch.is_tensor(inputs) and not inputs.is_floating_point() and inputs.dim() == 2


def language_model_jsv(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    max_batches: int = 1,
    windows: int | None = WINDOWS,
    tokens: int | None = TOKENS,
    num_directions: int | None = DIRECTIONS,
) -> JSVResult:
    """Mean JSV etc. of ``model`` (a ``transformers`` language model) on the first ``max_batches``
    batches of token ids from ``loader`` (see the module docstring).

    The estimate's cost grows with every token of the window and every direction: ``windows``,
    ``tokens`` and ``num_directions`` bound it (None: the whole batch, the whole window, the
    estimator's default). The defaults, 2 windows of their first 64 tokens and 20 directions, take
    ~20 s for SmolLM2-135M on 2 CPU cores, where whole batches of 4 x 256 tokens with 100 directions
    would take ~15 minutes. It is measured in eval mode: a language model has no BatchNorm, whose
    batch statistics are the reason for the paper's train-mode protocol, and an exact train-mode
    Jacobian would need one backward pass per vocabulary entry.

    Raises:
        ValueError: the model has no input embeddings (``get_input_embeddings``) or the loader no batch.
    """
    embed = getattr(model, "get_input_embeddings", lambda: None)()
    if embed is None:
        raise ValueError(f"{type(model).__name__} has no input embeddings (get_input_embeddings) to differentiate")
    device = next(model.parameters()).device
    embeddings = []
    with torch.no_grad():
        for i, batch in enumerate(loader):
            ids = batch[0] if isinstance(batch, (tuple, list)) else batch
            embeddings.append(embed(ids[:windows, :tokens].to(device)).detach())
            if i + 1 >= max_batches:
                break  # the rest of the loader is never read
    if not embeddings:
        raise ValueError("the loader yielded no batch")
    with _eager_attention(model):
        return jacobian_singular_values(
            _EmbeddingsToNextToken(model), embeddings, max_batches=len(embeddings), num_directions=num_directions
        )


@contextlib.contextmanager
def _eager_attention(model: nn.Module) -> Iterator[None]:
    """``transformers``' plain-PyTorch attention for the duration: the estimator's forward-mode
    products have no rule for the fused CPU/GPU attention kernels (``scaled_dot_product_attention``
    raises NotImplementedError), and eager attention computes the same function."""
    config = getattr(model, "config", None)
    previous = getattr(config, "_attn_implementation", None)
    if previous in (None, "eager"):
        yield
        return
    config._attn_implementation = "eager"  # every layer reads the model's one config at each forward
    try:
        yield
    finally:
        config._attn_implementation = previous
