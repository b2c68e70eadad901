"""Which filters to prune: ratio specifications and the L1-norm criterion.

TPP fixes the pruned set once, from the pretrained weights, by filter L1 norm (docs/method.md#selection):
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
        return _check_ratio(text)
    text = str(text).strip()
    try:
        return _check_ratio(float(text))
    except ValueError:
        pass
    patterns: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")) if text else ():
        if not part:  # "a:0.5,,b:0.3" or a trailing comma: most likely a pair was lost
            raise ConfigError(
                f"empty entry in ratio {text!r}: remove the extra comma, or add the missing 'pattern:ratio'"
            )
        pattern, sep, value = part.rpartition(":")
        if not sep or not pattern:
            raise ConfigError(
                f"malformed ratio {part!r}: write a number such as 0.5, or 'pattern:ratio' pairs "
                "such as '*layer*.conv1:0.9,*features*:0.5'"
            )
        if pattern in patterns:
            raise ConfigError(f"pattern {pattern!r} appears twice in ratio {text!r}; give each pattern once")
        try:
            patterns[pattern] = _check_ratio(float(value), pattern)
        except ValueError:
            raise ConfigError(f"malformed ratio {value!r} for pattern {pattern!r}: use a number in [0, 1)") from None
    if not patterns:
        raise ConfigError("empty ratio: give a number such as 0.5 or 'pattern:ratio' pairs")
    return patterns


def _check_ratio(value: float, pattern: str | None = None) -> float:
    value = float(value)
    if not (0.0 <= value < 1.0) or math.isnan(value):
        where = f" for {pattern}" if pattern else ""
        raise ConfigError(f"impossible pruning ratio {value}{where}: use a number in [0, 1)")
    return value


def num_to_prune(ratio: float, channels: int) -> int:
    """``ceil(ratio * channels)``, capped so that at least one channel stays (docs/method.md#selection)."""
    if ratio <= 0 or channels <= 1:
        return 0
    return min(math.ceil(ratio * channels - _CEIL_EPSILON), channels - 1)


def layer_ratios(names: Sequence[Sequence[str]], ratio: RatioSpec) -> list[float]:
    """Resolve a ratio spec to one ratio per unit.

    ``names[i]`` lists the module names whose output channels unit ``i`` removes. With a mapping,
    a unit takes the ratio of the *last* pattern that matches any of its names (as the paper's
    ``--stage_pr`` does); units matched by no pattern get 0. A pattern that matches nothing is an
    error, because the official code's silent "ratio 0 everywhere" is a classic pitfall (docs/method.md#official-code).
    """
    if not isinstance(ratio, Mapping):
        return [float(ratio)] * len(names)
    resolved = [0.0] * len(names)
    for pattern, value in ratio.items():
        hits = [i for i, unit_names in enumerate(names) if any(matches(n, pattern) for n in unit_names)]
        if not hits:
            sample = ", ".join(n for unit_names in names[:6] for n in unit_names[:1])
            raise PruningError(
                f"ratio pattern {pattern!r} matches no prunable layer (prunable layers include: {sample}, ...); "
                "fix the pattern"
            )
        for i in hits:
            resolved[i] = value
    return resolved


def matches(name: str, pattern: str) -> bool:
    """Whether module ``name`` matches a ratio pattern (``fnmatch``, case-sensitive)."""
    return fnmatch.fnmatchcase(name, pattern)


def filter_scores(members: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], channels: int) -> torch.Tensor:
    """Per-channel L1 score of a unit: mean ``|w|`` of each filter, summed over the unit's layers.

    ``members`` holds ``(weight, roots, local)``: filter ``local[i]`` of ``weight`` removes the unit's
    channel ``roots[i]``. For one layer this is the official criterion (L1 norm divided by the filter
    size, the same ranking as the L1 norm); in coupled units every layer that loses the channel votes.
    """
    score = torch.zeros(channels)
    for weight, roots, local in members:
        rows = weight.detach().abs().flatten(1).mean(dim=1).float().cpu()
        score.index_add_(0, roots, rows[local])
    return score


class KeepOneGuard:
    """Refuses a removal that would leave any member layer of a unit with no channel.

    In a coupled unit (e.g. a concat of two convs feeding a residual add) one layer may own only a
    few of the unit's channels; removing all of them would empty that layer.
    """

    def __init__(self, member_roots: Sequence[torch.Tensor] = ()):
        self._left = [len(roots) for roots in member_roots]
        self._owners: dict[int, list[int]] = {}
        for member, roots in enumerate(member_roots):
            for root in roots.tolist():
                self._owners.setdefault(root, []).append(member)

    def take(self, root: int) -> bool:
        """Remove ``root`` if every layer owning it keeps another channel; report success."""
        owners = self._owners.get(root, [])
        if any(self._left[m] <= 1 for m in owners):
            return False
        for m in owners:
            self._left[m] -= 1
        return True


def smallest(
    scores: torch.Tensor, count: int, candidates: torch.Tensor | None = None, member_roots: Sequence[torch.Tensor] = ()
) -> torch.Tensor:
    """Indices of the ``count`` smallest scores (returned in ascending index order).

    Only ``candidates`` are eligible (all if None), and every member layer keeps a channel.
    """
    if count <= 0:
        return torch.empty(0, dtype=torch.long)
    scores = scores.detach().cpu()
    allowed = torch.ones(len(scores), dtype=torch.bool)
    if candidates is not None:
        allowed[:] = False
        allowed[candidates] = True
    guard = KeepOneGuard(member_roots)
    chosen = []
    # stable sort: ties broken by index, so every process picks the same filters
    for index in torch.sort(scores, stable=True).indices.tolist():
        if len(chosen) == count:
            break
        if allowed[index] and guard.take(index):
            chosen.append(index)
    return torch.tensor(sorted(chosen), dtype=torch.long)


def global_selection(
    scores: Sequence[torch.Tensor],
    ratio: float,
    candidates: Sequence[torch.Tensor | None],
    member_roots: Sequence[Sequence[torch.Tensor]],
) -> list[torch.Tensor]:
    """Network-wide ranking: prune ``ratio`` of all candidate channels by one threshold.

    Scores are divided by their unit's mean first, because raw mean-|w| differs across layers by
    orders of magnitude (Torch-Pruning's ``normalizer="mean"``). Every layer keeps a channel.
    """
    entries = []
    for unit, (score, allowed) in enumerate(zip(scores, candidates)):
        idx = torch.arange(len(score)) if allowed is None else allowed
        if len(idx) == 0:
            continue
        normalised = score[idx] / score[idx].mean().clamp_min(1e-12)
        entries.extend((float(v), unit, int(i)) for v, i in zip(normalised, idx))
    total = math.ceil(ratio * len(entries) - _CEIL_EPSILON)
    entries.sort()
    guards = [KeepOneGuard(list(roots) + [torch.arange(len(score))]) for roots, score in zip(member_roots, scores)]
    chosen: list[list[int]] = [[] for _ in scores]
    for _, unit, index in entries:
        if total == 0:
            break
        if guards[unit].take(index):
            chosen[unit].append(index)
            total -= 1
    return [torch.tensor(sorted(c), dtype=torch.long) for c in chosen]
