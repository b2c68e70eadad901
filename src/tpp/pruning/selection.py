"""Which filters to prune: ratio specifications and the L1-norm criterion.

TPP fixes the pruned set once, from the pretrained weights, by filter L1 norm (method digest §2.2):
in each prunable layer the ``ceil(ratio * N)`` filters with the smallest mean ``|w|`` go, with at
least one filter kept.
"""

from __future__ import annotations

import fnmatch
import math
from typing import Mapping, Sequence, Union

import torch

from tpp.errors import ConfigError, PruningError

RatioSpec = Union[float, Mapping[str, float]]

# Guards `ceil` against float noise such as 0.7 * 10 = 7.000000000000001.
_CEIL_EPSILON = 1e-9


def parse_ratio(text: str | float | Mapping[str, float]) -> RatioSpec:
    """Parse a ratio given as a number, a mapping, or the paper's ``'pattern:ratio,...'`` text.

    >>> parse_ratio("0.5")
    0.5
    >>> parse_ratio("*layer*.conv1:0.9")
    {'*layer*.conv1': 0.9}
    """
    if isinstance(text, Mapping):
        return {str(k): _check_ratio(v, str(k)) for k, v in text.items()}
    if isinstance(text, (int, float)):
        return _check_ratio(text, "ratio")
    text = str(text).strip()
    try:
        return _check_ratio(float(text), "ratio")
    except ValueError:
        pass
    patterns: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        pattern, sep, value = part.rpartition(":")
        if not sep or not pattern:
            raise ConfigError(
                f"malformed ratio {part!r}: write a number such as 0.5, or 'pattern:ratio' pairs "
                "such as '*layer*.conv1:0.9,*features*:0.5'"
            )
        try:
            patterns[pattern] = _check_ratio(float(value), pattern)
        except ValueError:
            raise ConfigError(f"malformed ratio {value!r} for pattern {pattern!r}: use a number in [0, 1)") from None
    if not patterns:
        raise ConfigError("empty ratio: give a number such as 0.5 or 'pattern:ratio' pairs")
    return patterns


def _check_ratio(value: float, what: str) -> float:
    value = float(value)
    if not (0.0 <= value < 1.0) or math.isnan(value):
        raise ConfigError(f"impossible pruning ratio {value} for {what}: use a number in [0, 1)")
    return value


def num_to_prune(ratio: float, channels: int) -> int:
    """``ceil(ratio * channels)``, capped so that at least one channel stays (digest §2.2)."""
    if ratio <= 0 or channels <= 1:
        return 0
    return min(math.ceil(ratio * channels - _CEIL_EPSILON), channels - 1)


def layer_ratios(names: Sequence[Sequence[str]], ratio: RatioSpec) -> list[float]:
    """Resolve a ratio spec to one ratio per unit.

    ``names[i]`` lists the module names whose output channels unit ``i`` removes. With a mapping,
    a unit takes the ratio of the *last* pattern that matches any of its names (as the paper's
    ``--stage_pr`` does); units matched by no pattern get 0. A pattern that matches nothing is an
    error, because the official code's silent "ratio 0 everywhere" is a classic pitfall (digest §8 W2).
    """
    if not isinstance(ratio, Mapping):
        return [float(ratio)] * len(names)
    resolved = [0.0] * len(names)
    for pattern, value in ratio.items():
        hits = [i for i, unit_names in enumerate(names) if any(fnmatch.fnmatchcase(n, pattern) for n in unit_names)]
        if not hits:
            sample = ", ".join(n for unit_names in names[:6] for n in unit_names[:1])
            raise PruningError(
                f"ratio pattern {pattern!r} matches no prunable layer (prunable layers include: {sample}, ...); "
                "fix the pattern, or use scope='all' for residual-coupled layers"
            )
        for i in hits:
            resolved[i] = value
    return resolved


def filter_scores(weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per-output-channel L1 score: mean ``|w|`` of each filter, summed over the unit's layers.

    For one layer this is the official criterion (L1 norm divided by the filter size, the same
    ranking as the L1 norm). For residual-coupled units every layer that loses the channel votes.
    """
    score = None
    for weight in weights:
        rows = weight.detach().abs().flatten(1).mean(dim=1).float()
        score = rows if score is None else score + rows
    assert score is not None
    return score


def smallest(scores: torch.Tensor, count: int, candidates: torch.Tensor | None = None) -> torch.Tensor:
    """Indices of the ``count`` smallest scores (sorted ascending by index), among ``candidates``."""
    if count <= 0:
        return torch.empty(0, dtype=torch.long)
    scores = scores.detach().cpu()
    if candidates is not None:
        masked = torch.full_like(scores, float("inf"))
        masked[candidates] = scores[candidates]
        scores = masked
    # stable sort: ties broken by index, so every process picks the same filters
    order = torch.sort(scores, stable=True).indices[:count]
    return torch.sort(order).values


def global_selection(
    scores: Sequence[torch.Tensor], ratio: float, candidates: Sequence[torch.Tensor | None]
) -> list[torch.Tensor]:
    """Network-wide ranking: prune ``ratio`` of all candidate channels by one threshold.

    Scores are divided by their unit's mean first, because raw mean-|w| differs across layers by
    orders of magnitude (this is Torch-Pruning's ``normalizer="mean"``). Each unit keeps at least one
    channel.
    """
    entries = []
    for unit, (score, allowed) in enumerate(zip(scores, candidates)):
        idx = torch.arange(len(score)) if allowed is None else allowed
        if len(idx) == 0:
            continue
        normalised = score[idx] / score[idx].mean().clamp_min(1e-12)
        entries.extend((float(v), unit, int(i)) for v, i in zip(normalised, idx))
    total = num_to_prune(ratio, len(entries) + 1) if entries else 0
    entries.sort()
    chosen: list[list[int]] = [[] for _ in scores]
    for _, unit, index in entries:
        if total == 0:
            break
        if len(chosen[unit]) + 1 < len(scores[unit]):  # keep at least one channel per unit
            chosen[unit].append(index)
            total -= 1
    return [torch.tensor(sorted(c), dtype=torch.long) for c in chosen]
