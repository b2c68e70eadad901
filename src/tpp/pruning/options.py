"""Method options declared once: a dataclass per method, from which the CLI, recipes and jobs derive theirs.

Each field of a method's config dataclass is an option: its name is the keyword argument of the
pruner and the recipe key, ``--name-with-dashes`` is the command-line flag (``--no-name`` for a
boolean that defaults to True), and ``help`` / ``choices`` in the field's metadata describe it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from tpp.errors import ConfigError


def option(
    default: Any, help: str, choices: Sequence[Any] | None = None, minimum: float | None = None, above: bool = False
) -> Any:
    """A config field with its command-line help, and its allowed values: ``choices``, or numbers
    ``>= minimum`` (``> minimum`` with ``above``)."""
    return dataclasses.field(
        default=default,
        metadata={"help": help, "choices": tuple(choices) if choices else None, "minimum": minimum, "above": above},
    )


def build_options(config: type | None, options: Mapping[str, Any], owner: str) -> Any:
    """The config dataclass ``config`` built from the keyword ``options`` and checked (``None`` for a
    method without options, which then takes none), as ``torch.optim`` builds its ``defaults``.

    Raises:
        ConfigError: an option ``config`` does not declare (naming ``owner`` and listing its options),
            or a value outside its bounds or choices.
    """
    names = [field.name for field in dataclasses.fields(config)] if config is not None else []
    unknown = sorted(set(options) - set(names))
    if unknown:
        raise ConfigError(
            f"{owner} has no option {unknown[0]!r}"
            + (f"; its options are {', '.join(names)}" if names else "; it takes none")
        )
    if config is None:
        return None
    built = config(**options)
    check_options(built)
    return built


def check_options(config: Any) -> None:
    """Check every field of a config dataclass against its declared bounds and choices.

    Raises:
        ConfigError: naming the option, what it must be and what it was.
    """
    for opt in options_of(type(config)):
        value = getattr(config, opt.name)
        if opt.type is bool and not isinstance(value, bool):
            raise ConfigError(f"{opt.name} must be true or false, got {value!r}")
        if opt.type is str and not isinstance(value, str):
            raise ConfigError(f"{opt.name} must be a string, got {value!r}")
        if (
            opt.type in (int, float)
            and value is not None
            and (isinstance(value, bool) or not isinstance(value, (int, float)))
        ):
            raise ConfigError(f"{opt.name} must be a number, got {value!r}")
        if opt.choices is not None and value not in opt.choices:
            raise ConfigError(f"{opt.name} must be one of {', '.join(map(str, opt.choices))}, got {value!r}")
        if opt.minimum is not None and value is not None:
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or (value <= opt.minimum if opt.above else value < opt.minimum)
            ):
                raise ConfigError(f"{opt.name} must be a number {opt.bound}, got {value!r}")
            if opt.type is int and int(value) != value:
                raise ConfigError(f"{opt.name} must be a whole number, got {value!r}")


@dataclass(frozen=True)
class Option:
    """One option of a method, as the CLI and recipes see it."""

    name: str
    type: type
    default: Any
    help: str
    choices: tuple | None
    minimum: float | None = None
    above: bool = False

    @property
    def bound(self) -> str:
        """``">= 0"``, ``"> 0"`` ... (empty when unbounded)."""
        return "" if self.minimum is None else f"{'>' if self.above else '>='} {self.minimum:g}"

    @property
    def flag(self) -> str:
        """The command-line flag: ``--reg-step``, or ``--no-bn-reg`` for a boolean that defaults to True."""
        dashed = self.name.replace("_", "-")
        return f"--no-{dashed}" if self.type is bool and self.default is True else f"--{dashed}"


_TYPES = {"float": float, "int": int, "str": str, "bool": bool}


def options_of(config: type | None) -> list[Option]:
    """The options of a method's config dataclass (none for ``None``)."""
    if config is None:
        return []
    result = []
    for field in dataclasses.fields(config):
        kind = field.type if isinstance(field.type, type) else _TYPES.get(str(field.type).split(" |")[0])
        if kind not in _TYPES.values():
            # the CLI and recipes can only parse these four; anything else would silently become a string
            raise ConfigError(
                f"option {field.name!r} of {config.__name__} has type {field.type}; "
                "method options must be float, int, str or bool"
            )
        meta = field.metadata
        result.append(
            Option(
                field.name,
                kind,
                field.default,
                meta.get("help", ""),
                meta.get("choices"),
                meta.get("minimum"),
                bool(meta.get("above")),
            )
        )
    return result
