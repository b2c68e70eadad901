"""The ``prune`` section of a recipe: which methods (or named variants of one) run at which ratios,
with which options, each checked against the method's declared options before anything runs.

A variant runs a registered method under a name of its own with other options, so that one grid can
hold ablations of one method (``tpp-nogram: {method: tpp, options: {gram_weight: 0}}``); its jobs,
folders and report rows carry its name.
"""

from __future__ import annotations

import re
from typing import Any

from tpp.errors import ConfigError
from tpp.recipes import checks

PRUNE_KEYS = {"methods", "variants", "ratios", "ratio_pattern", "scope", "ignore", "prune_lr"}
# a variant's name is a folder-name part: no "__", which separates the parts of a job's folder name
_VARIANT_NAME = re.compile(r"[A-Za-z0-9]+([._+-][A-Za-z0-9]+)*")


def prune_section(data: Any, where: str) -> dict[str, Any]:
    """The ``prune`` section of a recipe, checked: methods (and named variants), ratios, scope, options."""
    from tpp.pruning import parse_ratio

    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, not {type(data).__name__}")
    methods = [
        checks.text(m, f"{where}: methods") for m in checks.non_empty_list(data.get("methods"), f"{where}: methods")
    ]
    from tpp.pruning.registry import list_methods

    variants = _variants(data.get("variants") or {}, methods, f"{where}: variants")
    unknown = [m for m in methods if m not in list_methods() and m not in variants]
    if unknown:  # named before any option block of the methods
        raise ConfigError(
            f"{where}: unknown pruning method {unknown[0]!r}; choose from {', '.join(list_methods())}"
            " or name a variant of one under 'variants'"
        )
    if len(set(methods)) != len(methods):
        raise ConfigError(f"{where}: methods contain a duplicate")
    pattern = checks.opt_text(data.get("ratio_pattern"), f"{where}: ratio_pattern")
    if pattern is not None and "{ratio}" not in pattern:
        raise ConfigError(
            f"{where}: ratio_pattern {pattern!r} must contain '{{ratio}}', e.g. '*layer*.conv1:{{ratio}}'"
        )
    ratios: list[float | str] = []
    for entry in checks.non_empty_list(data.get("ratios"), f"{where}: ratios"):
        if isinstance(entry, (int, float)) and not isinstance(entry, bool):
            parse_ratio(float(entry))  # range check
            ratios.append(float(entry))
            if pattern is not None:
                parse_ratio(pattern.replace("{ratio}", f"{entry:g}"))
        elif isinstance(entry, str):
            parse_ratio(entry)
            ratios.append(entry)
        else:
            raise ConfigError(f"{where}: ratio {entry!r} must be a number in [0, 1) or a 'pattern:ratio,...' string")
    if len(set(map(str, ratios))) != len(ratios):
        raise ConfigError(f"{where}: ratios contain a duplicate")
    scope = data.get("scope", "internal")
    if scope not in ("internal", "all"):
        raise ConfigError(f"{where}: scope must be 'internal' or 'all', got {scope!r}")
    ignore = data.get("ignore") or []
    if not isinstance(ignore, list) or not all(isinstance(i, str) for i in ignore):
        raise ConfigError(f"{where}: ignore must be a list of module names or patterns, got {ignore!r}")
    running = methods + [v["method"] for v in variants.values()]  # a method's block also serves its variants
    options = {
        name: _method_options(name, data[name], running, f"{where}: {name}") for name in data if name not in PRUNE_KEYS
    }
    return {
        "methods": methods,
        "variants": variants,
        "ratios": ratios,
        "ratio_pattern": pattern,
        "scope": scope,
        "ignore": list(ignore),
        "options": options,
        "prune_lr": checks.number(data.get("prune_lr", 1e-3), f"{where}: prune_lr"),
    }


def _method_options(name: str, block: Any, methods: list[str], where: str) -> dict[str, Any]:
    """A method's options block, checked against the method's option dataclass."""
    from tpp.pruning.options import check_options
    from tpp.pruning.registry import get_method, list_methods

    if name not in list_methods():
        raise ConfigError(
            f"{where}: unknown key {name!r}; allowed keys: {', '.join(sorted(PRUNE_KEYS))} "
            f"or a method's name with its options"
        )
    method = get_method(name)
    if not isinstance(block, dict):
        raise ConfigError(f"{where} must be a mapping of {name}'s options, got {block!r}")
    checks.keys(block, {o.name for o in method.options}, where)
    if name not in methods:
        raise ConfigError(f"{where}: options for {name}, which 'methods' does not run")
    if method.config is not None:
        check_options(method.config(**block))
    return dict(block)


def _variants(data: Any, methods: list[str], where: str) -> dict[str, dict[str, Any]]:
    """``{name: {"method", "options"}}``: each variant names a registered method and options of it."""
    from tpp.pruning.registry import list_methods

    if not isinstance(data, dict):
        raise ConfigError(f"{where} must map a variant's name to {{method: NAME, options: {{...}}}}, got {data!r}")
    variants = {}
    for name, entry in data.items():
        if not isinstance(name, str) or not _VARIANT_NAME.fullmatch(name) or name in list_methods():
            raise ConfigError(
                f"{where}: {name!r} must be a new plain name (letters, digits and single '.', '_', "
                "'+', '-' between them), not a registered method's"
            )
        if not isinstance(entry, dict) or entry.get("method") not in list_methods():
            raise ConfigError(f"{where}: {name} needs 'method', one of {', '.join(list_methods())}")
        checks.keys(entry, {"method", "options"}, f"{where}: {name}")
        if name not in methods:
            raise ConfigError(f"{where}: {name}, which 'methods' does not run")
        method = entry["method"]
        options = _method_options(method, entry.get("options") or {}, [method], f"{where}: {name}: options")
        variants[name] = {"method": method, "options": options}
    return variants
