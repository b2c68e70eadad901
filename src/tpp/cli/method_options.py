"""Command-line flags of the pruning methods, derived from their option dataclasses.

Every option declared by a registered method (:mod:`tpp.pruning.options`) becomes one flag, shared by
the methods that declare it. Flags keep no default on the command line: an option given for a method
that does not use it is an error that names the methods it belongs to, and the method's own default
applies otherwise.
"""

from __future__ import annotations

import argparse
from typing import Any

from tpp.errors import ConfigError


def _option_table() -> dict[str, tuple[Any, list[str]]]:
    from tpp.pruning.registry import all_methods

    table: dict[str, tuple[Any, list[str]]] = {}
    for method in all_methods():
        for opt in method.options:
            table.setdefault(opt.name, (opt, []))[1].append(method.name)
    return table


def option_names() -> list[str]:
    """The names of every registered method's options."""
    return list(_option_table())


def _number(kind: type, opt: Any):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'a whole number' if kind is int else 'a number'}, got {text!r}"
            ) from None
        if opt.minimum is not None and (value <= opt.minimum if opt.above else value < opt.minimum) or value != value:
            raise argparse.ArgumentTypeError(f"expected a number {opt.bound}, got {text}")
        return value

    return parse


def add_method_options(parser: argparse.ArgumentParser) -> None:
    """One flag per method option (``--reg-step``, ``--no-bn-reg``, ``--orth-iters`` ...)."""
    group = parser.add_argument_group(
        "method options", "each belongs to the methods in brackets; giving it to another method is an error"
    )
    for name, (opt, methods) in _option_table().items():
        where = f" [{', '.join(methods)}]"
        if opt.type is bool:
            group.add_argument(
                opt.flag,
                dest=name,
                action="store_const",
                const=not opt.default,
                default=argparse.SUPPRESS,
                help=("turn off the " if opt.default else "turn on the ") + opt.help + where,
            )
        else:
            kind = opt.type if opt.type in (int, float) else str
            group.add_argument(
                opt.flag,
                dest=name,
                default=argparse.SUPPRESS,
                metavar=name.upper(),
                type=_number(kind, opt) if kind in (int, float) else str,
                choices=opt.choices,
                help=f"{opt.help} (default: {opt.default}){where}",
            )


def method_options(args: argparse.Namespace, method_name: str) -> dict[str, Any]:
    """The method options given in ``args`` for ``method_name``.

    Raises:
        ConfigError: an option given that the method does not use (naming the methods that do).
    """
    from tpp.pruning.registry import get_method

    own = {o.name for o in get_method(method_name).options}
    given = {name: getattr(args, name) for name in _option_table() if hasattr(args, name)}
    for name in given:
        if name not in own:
            opt, methods = _option_table()[name]
            raise ConfigError(
                f"{opt.flag} is an option of {', '.join(methods)}; --method {method_name} does not use it"
            )
    return given
