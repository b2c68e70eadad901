"""``--config FILE``: option values from YAML, overridden by the command line.

Keys are long option names with dashes or underscores (``batch-size`` or ``batch_size``). The file
is applied as parser defaults before parsing, so anything given on the command line wins.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

from tpp.errors import ConfigError, TPPError

# a file of option values is a few hundred bytes; anything near this is the wrong file (or
# /dev/zero), refused before it fills memory
MAX_CONFIG_BYTES = 2**20


def find_config_path(args_list: Sequence[str]) -> str | None:
    """The value of ``--config`` in ``args_list`` (last one wins, as argparse does), or None."""
    return _option_value(args_list, "--config")


def load_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; an empty file is ``{}``.

    Raises:
        ConfigError: unreadable file, not a regular file (a FIFO or device is refused before it
            is read), larger than :data:`MAX_CONFIG_BYTES`, malformed YAML, or a top level that
            is not a mapping.
    """
    import yaml

    from tpp.util.files import FileTooLarge, read_bounded
    from tpp.util.yamlfile import load_yaml

    try:
        text = read_bounded(path, MAX_CONFIG_BYTES).decode("utf-8")
    except FileTooLarge:
        raise ConfigError(
            f"config file {path} is larger than {MAX_CONFIG_BYTES // 2**20} MiB, far more than a file "
            "of option values holds; pass the right YAML file to --config"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise ConfigError(f"cannot read config file {path}: {reason}; pass a YAML file to --config") from None
    try:
        data = load_yaml(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or "syntax error"
        raise ConfigError(f"config file {path} is not valid YAML ({problem}{where})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must be a mapping of option: value, not a {type(data).__name__}")
    return data


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    table = {}
    for action in parser._actions:
        if action.dest in ("help", "config") or isinstance(action, argparse._VersionAction):
            continue
        for flag in action.option_strings:
            if flag.startswith("--"):
                table[flag[2:].replace("-", "_")] = action
    return table


def _convert(action: argparse.Action, key: str, value: Any, path: str) -> Any:
    def bad(why: str) -> ConfigError:
        return ConfigError(f"config file {path}: invalid value {value!r} for {key!r} ({why})")

    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, bool):
            raise bad("expected true or false")
        return value
    if value is None:
        return None
    many = action.nargs in ("+", "*") or isinstance(action.nargs, int) or isinstance(action, argparse._AppendAction)
    if isinstance(value, list) and not many and value and all(isinstance(v, (int, float)) for v in value):
        value = ",".join(str(v) for v in value)  # a list option such as --mean, as a run's config.json holds it
    items = value if many and isinstance(value, list) else [value]
    if isinstance(value, (list, dict)) and not many:
        raise bad("expected a single value")
    converted = []
    for item in items:
        if isinstance(item, (list, dict)):
            raise bad("expected a single value")
        text = item if isinstance(item, str) else str(item)
        try:
            item = action.type(text) if callable(action.type) else text
        except (argparse.ArgumentTypeError, ValueError, TypeError, TPPError) as error:
            raise bad(str(error) or "wrong type") from None
        if action.choices is not None and item not in action.choices:
            raise bad("choose from " + ", ".join(map(str, action.choices)))
        converted.append(item)
    return converted if many else converted[0]


def apply_config_file(parser: argparse.ArgumentParser, args_list: Sequence[str]) -> dict[str, Any]:
    """If ``args_list`` has ``--config FILE``, set ``parser``'s defaults from it.

    ``FILE`` may also be the ``config.json`` a tpp run wrote: its entries that are not options of
    this command (``command``, ``world_size``, ...) and its unset (null) ones are skipped, as are the
    per-invocation ones (:data:`NOT_CARRIED`).

    Returns the applied ``{dest: value}`` (empty without ``--config``).

    Raises:
        ConfigError: unreadable/malformed YAML, an unknown key (the message lists the valid
            ones), or a value of the wrong type.
    """
    path = find_config_path(args_list)
    if path is None:
        return {}
    return _apply(parser, load_yaml_mapping(path), path)


# what a run's config.json records but a later invocation decides for itself
NOT_CARRIED = frozenset({"command", "config", "resume", "overwrite", "dry_run", "device", "world_size"})


def apply_saved_run(parser: argparse.ArgumentParser, args_list: Sequence[str]) -> dict[str, Any]:
    """``--resume --out DIR``: set ``parser``'s defaults from ``DIR/config.json`` (the options the run
    started with), so that resuming needs no other flag; the command line still wins, and the
    command's own checks refuse a value that would change the job. Returns the applied values."""
    if "--resume" not in args_list:
        return {}
    out = _option_value(args_list, "--out")
    saved = Path(out) / "config.json" if out else None
    if saved is None or not saved.is_file():
        return {}
    data = load_yaml_mapping(saved)
    if data.get("command") != parser.prog.rsplit(" ", 1)[-1]:
        return {}  # another command's run: the command itself says so
    return _apply(parser, data, str(saved))


def _option_value(args_list: Sequence[str], flag: str) -> str | None:
    found = None
    for i, token in enumerate(args_list):
        if token == "--":
            break
        if token == flag and i + 1 < len(args_list):
            found = args_list[i + 1]
        elif token.startswith(flag + "="):
            found = token.split("=", 1)[1]
    return found


def _apply(parser: argparse.ArgumentParser, data: dict[str, Any], path: str) -> dict[str, Any]:
    options = _options(parser)
    run_record = "command" in data  # a tpp run's config.json: it records more than this command's options
    defaults: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).strip().lstrip("-").replace("-", "_")
        if run_record and (name in NOT_CARRIED or name not in options or value is None):
            continue
        action = options.get(name)
        if action is None:
            valid = ", ".join(sorted(name.replace("_", "-") for name in options))
            raise ConfigError(f"unknown key {key!r} in config file {path}; valid keys: {valid}")
        defaults[action.dest] = _convert(action, str(key), value, path)
    parser.set_defaults(**defaults)
    return defaults
