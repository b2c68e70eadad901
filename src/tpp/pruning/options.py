"""Method options declared once: a dataclass per method, from which the CLI, recipes and jobs derive theirs.

Each field of a method's config dataclass is an option: its name is the keyword argument of the
pruner and the recipe key, ``--name-with-dashes`` is the command-line flag (``--no-name`` for a
boolean that defaults to True), and ``help`` / ``choices`` in the field's metadata describe it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence


def option(default: Any, help: str, choices: Sequence[Any] | None = None) -> Any:
    """A config field with its command-line help (and allowed values)."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": tuple(choices) if choices else None})


@dataclass(frozen=True)
class Option:
    """One option of a method, as the CLI and recipes see it."""

    name: str
    type: type
    default: Any
    help: str
    choices: tuple | None

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
        kind = field.type if isinstance(field.type, type) else _TYPES.get(str(field.type).split(" |")[0], str)
        result.append(Option(field.name, kind, field.default, field.metadata.get("help", ""), field.metadata.get("choices")))
    return result
