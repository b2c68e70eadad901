"""Learning-rate schedules in the paper's notation, set once at the start of every epoch.

The official TPP code uses a ``PresetLRScheduler`` fed with strings such as
``"0:0.01,60:0.001,90:0.0001"`` (epoch:lr pairs, 0-based epochs). Because the learning rate is a
pure function of the epoch index, a resumed run gets exactly the learning rates an
uninterrupted run would have used.

Accepted forms (see :func:`parse_lr_schedule`):

* ``"0:0.01,60:0.001,90:0.0001"`` piecewise constant, must start at epoch 0;
* ``"0.01"`` a constant learning rate;
* ``"step:0.01"`` the paper's fine-tuning shape scaled to the run length: ``base`` until 50% of
  the epochs, then ``base/10`` until 75%, then ``base/100`` (milestones rounded up; for 120
  epochs this is exactly ``0:0.01,60:0.001,90:0.0001``);
* ``"cosine:0.1"`` cosine annealing from ``base`` towards 0 over the run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tpp.errors import ConfigError

_EXAMPLE = "expected e.g. '0:0.01,60:0.001,90:0.0001', '0.01', 'step:0.01' or 'cosine:0.1'"


@dataclass(frozen=True)
class LRSchedule:
    """A learning-rate schedule; ``lr_at(epoch, total_epochs)`` gives the LR of a 0-based epoch.

    Attributes:
        kind: ``"piecewise"``, ``"step"`` or ``"cosine"``.
        milestones: ``((epoch, lr), ...)`` for ``"piecewise"`` (first epoch is 0), else empty.
        base_lr: learning rate at epoch 0.
        text: the canonical text form, accepted again by :func:`parse_lr_schedule`.
    """

    kind: str
    milestones: tuple[tuple[int, float], ...]
    base_lr: float
    text: str

    @classmethod
    def constant(cls, lr: float) -> LRSchedule:
        """A schedule that keeps ``lr`` for every epoch."""
        return parse_lr_schedule(repr(float(lr)))

    def lr_at(self, epoch: int, total_epochs: int) -> float:
        """Learning rate for 0-based ``epoch`` of a run of ``total_epochs`` epochs."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        if self.kind == "piecewise":
            lr = self.milestones[0][1]
            for start, value in self.milestones:
                if epoch >= start:
                    lr = value
            return lr
        total = max(int(total_epochs), 1)
        if self.kind == "step":
            # ceil: 120 epochs -> decays at 60 and 90 as in the paper; short runs start at base_lr
            if epoch >= math.ceil(0.75 * total):
                return self.base_lr * 0.01
            if epoch >= math.ceil(0.5 * total):
                return self.base_lr * 0.1
            return self.base_lr
        # cosine: epoch 0 -> base_lr, approaches 0 at the end of the run
        progress = min(epoch, total) / total
        return 0.5 * self.base_lr * (1.0 + math.cos(math.pi * progress))

    def __str__(self) -> str:
        return self.text


def _fail(text: str, why: str) -> ConfigError:
    return ConfigError(f"invalid LR schedule {text!r}: {why}; {_EXAMPLE}")


def _positive_float(text: str, token: str, what: str) -> float:
    try:
        value = float(token)
    except ValueError:
        raise _fail(text, f"{what} {token.strip()!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise _fail(text, f"{what} must be a positive finite number, got {token.strip()!r}")
    return value


def parse_lr_schedule(text: str) -> LRSchedule:
    """Parse a learning-rate schedule string (forms listed in the module docstring).

    Raises:
        ConfigError: one line naming the problem and showing a valid example.
    """
    if not isinstance(text, str):
        text = str(text)
    raw = text.strip()
    if not raw:
        raise _fail(text, "it is empty")
    head, sep, tail = raw.partition(":")
    if sep and head.strip().lower() in ("cosine", "step"):
        kind = head.strip().lower()
        base = _positive_float(text, tail, f"the {kind} base learning rate")
        return LRSchedule(kind, (), base, f"{kind}:{base!r}")
    if sep and head.strip().isalpha():
        raise _fail(text, f"unknown schedule kind {head.strip()!r} (use 'step' or 'cosine')")
    if not sep:
        if "," in raw:
            raise _fail(text, "entries must be EPOCH:LR pairs")
        lr = _positive_float(text, raw, "the learning rate")
        return LRSchedule("piecewise", ((0, lr),), lr, repr(lr))
    milestones: list[tuple[int, float]] = []
    for entry in raw.split(","):
        epoch_text, colon, lr_text = entry.partition(":")
        if not colon or not epoch_text.strip() or not lr_text.strip():
            raise _fail(text, f"entry {entry.strip()!r} is not of the form EPOCH:LR")
        try:
            epoch = int(epoch_text.strip())
        except ValueError:
            raise _fail(text, f"epoch {epoch_text.strip()!r} is not a whole number") from None
        if epoch < 0:
            raise _fail(text, f"epoch {epoch} is negative")
        if milestones and epoch <= milestones[-1][0]:
            raise _fail(text, f"epochs must be strictly increasing ({milestones[-1][0]} then {epoch})")
        milestones.append((epoch, _positive_float(text, lr_text, f"learning rate for epoch {epoch}")))
    if milestones[0][0] != 0:
        raise _fail(text, f"the first entry must be for epoch 0, not {milestones[0][0]}")
    canonical = ",".join(f"{e}:{lr!r}" for e, lr in milestones)
    return LRSchedule("piecewise", tuple(milestones), milestones[0][1], canonical)
