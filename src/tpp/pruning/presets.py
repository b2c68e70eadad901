"""Named schedule presets: how long a method's regularisation runs, declared once for the library, CLI and recipes.

* ``"paper"``: the method's options as given (the official defaults: TPP's 110,000 iterations).
* ``"fast"``: the regularisation shortened tenfold for users who cannot afford the paper's length
  (it deviates from the paper): lambda grows ``FAST_REG_STEP_FACTOR`` times faster (``reg_step``), and
  the fixed-length phases (``stabilize_iters``, ``orth_iters``) are ``FAST_LENGTH_DIVISOR`` times
  shorter. The adaptive schedule only grows faster: its ``max_iterations`` stays an upper bound.

``TPPPruner(model, inputs, ratio=0.5, schedule="fast")`` (and GReg-1 and the orthogonality + L1
baselines) applies a preset to the pruner's own options; :func:`fast_options` applies it to a
method's options by name (recipes' and the CLI's ``--fast``); :func:`schedule_length` and
:func:`describe_schedule` tell how long the regularisation of a method with given options is, without
building a model.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from tpp.errors import ConfigError
from tpp.pruning.adaptive_schedule import AdaptiveSchedule
from tpp.pruning.options import check_options
from tpp.pruning.schedules import ConstantSchedule, GrowingSchedule, Schedule

SCHEDULE_PRESETS = ("paper", "fast")
# "fast": lambda grows this many times faster ...
FAST_REG_STEP_FACTOR = 10.0
# ... and the stabilisation and orthogonality phases are this many times shorter
FAST_LENGTH_DIVISOR = 10
# the options a preset scales (a method has those of them it declares)
_GROWTH_OPTIONS = ("reg_step",)
_LENGTH_OPTIONS = ("stabilize_iters", "orth_iters")


def check_preset(preset: str) -> str:
    """``preset`` if it is one of :data:`SCHEDULE_PRESETS`, else a one-line :class:`ConfigError`."""
    if not isinstance(preset, str) or preset not in SCHEDULE_PRESETS:
        raise ConfigError(
            f"unknown schedule preset {preset!r}; choose from {', '.join(SCHEDULE_PRESETS)} (or pass a Schedule object)"
        )
    return preset


def apply_preset(preset: str, options: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` with the schedule preset ``preset`` applied.

    ``defaults`` are the method's declared options with their defaults: an option is scaled only if
    the method declares it, from its value in ``options`` or else its default. Other keys are kept
    as they are. ``"paper"`` returns a copy of ``options``.

    Raises:
        ConfigError: ``preset`` is not one of :data:`SCHEDULE_PRESETS`.
    """
    check_preset(preset)
    result = dict(options)
    if preset == "paper":
        return result
    for name in _GROWTH_OPTIONS:
        if name in defaults:
            result[name] = result.get(name, defaults[name]) * FAST_REG_STEP_FACTOR
    for name in _LENGTH_OPTIONS:
        if name in defaults:
            result[name] = int(result.get(name, defaults[name])) // FAST_LENGTH_DIVISOR
    return result


def preset_config(config: Any, preset: str) -> Any:
    """A method's config dataclass with the preset applied (a new instance; ``config`` is unchanged)."""
    values = dataclasses.asdict(config)
    return dataclasses.replace(config, **apply_preset(preset, values, values))


def fast_options(method: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The options of the registered method ``method`` with the ``"fast"`` preset applied.

    ``reg_step`` is multiplied by :data:`FAST_REG_STEP_FACTOR`; ``stabilize_iters`` and
    ``orth_iters`` are divided (whole) by :data:`FAST_LENGTH_DIVISOR`, each taken from ``options``
    or else from the method's declared default, and only if the method has it. A one-shot method's
    options come back unchanged. E.g. ``fast_options("tpp", {})`` is ``{"reg_step": 0.001,
    "stabilize_iters": 1000}``.

    Raises:
        ConfigError: an unknown method.
    """
    from tpp.pruning.registry import get_method  # the registry imports every method module: only when asked

    defaults = {o.name: o.default for o in get_method(method).options}
    return apply_preset("fast", options, defaults)


def method_schedule(method: str, options: Mapping[str, Any]) -> Schedule | None:
    """The schedule that the registered method ``method`` would run with ``options`` (not bound to a
    model), or None for a method without a regularisation phase, or whose config does not declare how
    its schedule is built (``make_schedule()``, as the built-in methods' configs do).

    ``options`` may hold the common pruner options (ratio, scope, ...); they are ignored here.

    Raises:
        ConfigError: an unknown method, an option it does not declare, or a bad value.
    """
    from tpp.pruning.registry import get_method

    spec = get_method(method)
    spec.check_options(dict(options))
    if not spec.regularized or spec.config is None or not hasattr(spec.config, "make_schedule"):
        return None
    fields = {f.name for f in dataclasses.fields(spec.config)}
    config = spec.config(**{k: v for k, v in options.items() if k in fields})
    check_options(config)
    return config.make_schedule()


def schedule_length(method: str, options: Mapping[str, Any]) -> int | None:
    """Regularisation iterations of the registered method ``method`` with ``options``, before the model
    is ready to prune; built without a model.

    For TPP and GReg-1: ``ceil(reg_ceiling / reg_step) * reg_interval + stabilize_iters`` (110,000 at
    the defaults); for the orthogonality + L1 baselines, ``orth_iters``; for ``tpp-adaptive``,
    ``max_iterations``, an upper bound (see :func:`describe_schedule`; ``pruner.done`` decides).
    None for a one-shot method (``get_method(method).regularized`` is False) and for a plug-in method
    whose config does not declare ``make_schedule()``.

    Raises:
        ConfigError: an unknown method, an option it does not declare, or a bad value.
    """
    schedule = method_schedule(method, options)
    return None if schedule is None else int(schedule.total_iterations)


def describe_schedule(method: str, options: Mapping[str, Any]) -> str:
    """One line for a dry run: how long the regularisation of ``method`` with ``options`` is, e.g.
    ``"110,000 iterations (lambda +0.0001 every 10 up to 1: 100,000, then 10,000 at the ceiling)"``.

    Raises:
        ConfigError: an unknown method, an option it does not declare, or a bad value.
    """
    schedule = method_schedule(method, options)
    if schedule is None:
        from tpp.pruning.registry import get_method

        return "regularisation of unknown length" if get_method(method).regularized else "none (one-shot)"
    total = int(schedule.total_iterations)
    if isinstance(schedule, GrowingSchedule):
        growing = total - schedule.stabilize_iters
        return (
            f"{total:,} iterations (lambda +{schedule.reg_step:g} every {schedule.reg_interval} up to "
            f"{schedule.reg_ceiling:g}: {growing:,}, then {schedule.stabilize_iters:,} at the ceiling)"
        )
    if isinstance(schedule, AdaptiveSchedule):
        return (
            f"at most {total:,} iterations (adaptive: ends when the pruned channels are gone; lambda starts "
            f"growing by {schedule.reg_step:g} every {schedule.reg_interval})"
        )
    if isinstance(schedule, ConstantSchedule):
        return f"{total:,} iterations at strength {schedule.strength:g}"
    return f"{'at most ' if not schedule.fixed_length else ''}{total:,} iterations"


# the start of the UserWarning of a prune() before ``pruner.done``, as a ``warnings.filterwarnings``
# message pattern: for callers that remove the selection at once on purpose (previews, structure-only uses)
UNFINISHED_PRUNE_WARNING = r"tpp: prune\(\) before pruner\.done"


def unfinished_message(pruner: Any, total: int | None) -> str:
    """What an early ``pruner.prune()`` is told: where its schedule is (``total`` iterations, None if it does
    not say), what remains, what removing now costs and how to finish sooner (a preset it accepts)."""
    bound = "at most " if not pruner.schedule.fixed_length else ""  # the adaptive schedule: done decides
    of = "" if total is None else f" of {bound}{total:,}"
    ceiling = getattr(pruner.schedule, "reg_ceiling", None)
    strength = f"lambda {pruner.reg_value:.4g}" + ("" if ceiling is None else f" of ceiling {ceiling:g}")
    cost = (
        "the pruned channels are not yet near zero, so removing them will cost accuracy"
        if pruner.select_at == "start"
        else "the channels are chosen on weights the regularisation has not finished shaping"
    )
    if pruner.iteration == 0:
        cost += " (at iteration 0 this is plain L1 pruning: tpp.pruning.L1Pruner)"
    remedy = "loop until pruner.done" + (
        ", or build the pruner with schedule='fast' (10x shorter)" if "fast" in pruner.schedule_presets else ""
    )
    return (
        f"tpp: prune() before pruner.done, at iteration {pruner.iteration:,}{of}: the regularisation has "
        f"not finished ({strength}, phase {pruner.phase!r}); {cost}; {remedy}"
    )
