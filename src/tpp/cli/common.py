"""Shared pieces of the command modules: parser class, help formatting, resolving options.

The option groups that several commands add: :mod:`tpp.cli.arguments`.

Heavy libraries (torch, models, data) are imported inside functions so that ``tpp --help``
stays fast.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from tpp.cli.config_file import apply_config_file
from tpp.cli.option_types import (
    MAX_EPOCHS,
    MAX_SEED,
    epoch_count,
    float_list,
    fraction,
    non_negative_float,
    non_negative_int,
    output_path,
    positive_float,
    positive_int,
    seed_int,
)
from tpp.cli.text_options import text_dataset
from tpp.errors import ConfigError

__all__ = [
    "MAX_EPOCHS",
    "MAX_SEED",
    "ArgumentParser",
    "HelpFormatter",
    "UsageError",
    "add_command",
    "apply_config_file",
    "dataset_from_args",
    "epoch_count",
    "float_list",
    "image_options",
    "fraction",
    "non_negative_float",
    "non_negative_int",
    "output_path",
    "per_rank_batch_size",
    "positive_float",
    "positive_int",
    "require",
    "resolved_config",
    "run_label",
    "seed_int",
    "speed_options",
]


class UsageError(ConfigError):
    """Bad command-line usage (argparse's complaint, as a one-line TPPError)."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps description line breaks and appends ``(default: X)`` where a default is meaningful."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" not in text
            and action.option_strings
            and default is not None
            and default is not False
            and default is not argparse.SUPPRESS
            and not isinstance(action, argparse._VersionAction)
        ):
            text += " (default: %(default)s)"
        return text


class ArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors become :class:`UsageError` (one line, exit code 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")


def add_command(subparsers: Any, name: str, *, help: str, description: str | None = None) -> ArgumentParser:
    """Create the sub-parser of a command with tpp's parser class and help formatter."""
    return subparsers.add_parser(
        name,
        help=help,
        description=description or help,
        formatter_class=HelpFormatter,
        allow_abbrev=False,  # abbreviations would also bypass --config detection
    )


def per_rank_batch_size(batch_size: int, world_size: int) -> int:
    """The batch of one rank when the global ``batch_size`` is split over ``world_size`` ranks.

    Raises:
        ConfigError: ``batch_size`` is not a multiple of ``world_size``.
    """
    if batch_size % world_size:
        raise ConfigError(
            f"--batch-size {batch_size} cannot be split evenly over {world_size} processes; "
            f"use a multiple of {world_size} (it is the global batch)"
        )
    return batch_size // world_size


def speed_options(args: argparse.Namespace) -> Any:
    """The :class:`tpp.training.amp.SpeedOptions` of ``args`` (absent options: off)."""
    from tpp.training.amp import SpeedOptions

    return SpeedOptions(
        amp=getattr(args, "amp", None),
        channels_last=bool(getattr(args, "channels_last", False)),
        compile=bool(getattr(args, "compile", False)),
    )


_IMAGE_OPTIONS = ("image_size", "resize", "channels", "normalize", "mean", "std", "augment", "stream")


def image_options(args: argparse.Namespace, config: dict[str, Any] | None = None) -> Any:
    """The :class:`tpp.data.imagefolder.ImageFolderOptions` of the image-folder options; unset ones
    come from ``config`` (a checkpoint's recorded options), then from the defaults."""
    from tpp.data.imagefolder import ImageFolderOptions

    values = {}
    for name in _IMAGE_OPTIONS:
        value = getattr(args, name, None)
        if value is None and config:
            value = config.get(name)
        if value is not None:
            values[name] = value
    stream = values.pop("stream", None)
    if stream:
        values["in_memory"] = False
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}  # from JSON/YAML
    return ImageFolderOptions(**values)


def dataset_from_args(
    args: argparse.Namespace, dataset: str | None = None, config: dict[str, Any] | None = None
) -> tuple[Any, dict[str, Any]]:
    """``(info, data)``: the :class:`tpp.data.DatasetInfo` of ``dataset`` (default ``--dataset``) and
    the ``data_dir``/``image_options`` arguments of :func:`tpp.data.build_loaders` for it.

    For ``imagefolder`` the classes come from the folder and unset options (including
    ``--data-dir``) from ``config``, the options a checkpoint was trained with.

    Raises:
        ConfigError: image-folder options given with another dataset.
    """
    from tpp.data import dataset_info
    from tpp.data.info import canonical_name

    name = canonical_name(dataset or args.dataset)
    given_text = [n for n in _TEXT_OPTIONS if getattr(args, n, None) is not None]
    if name in TEXT_DATASETS:
        given = [n for n in _IMAGE_OPTIONS if getattr(args, n, None) is not None]
        if given:
            raise ConfigError(f"--{given[0].replace('_', '-')} applies to images; drop it for --dataset {name}")
        return text_dataset(args, name, config)
    if given_text:
        raise ConfigError(
            f"--{given_text[0].replace('_', '-')} applies to --dataset text or text_tiny only; drop it for {name}"
        )
    if name != "imagefolder":
        given = [n for n in _IMAGE_OPTIONS if getattr(args, n, None) is not None]
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise ConfigError(f"{flag} applies to --dataset imagefolder only; drop it for {name}")
        split = {k: v for k in ("val_split", "eval_split") if (v := _given(args, config, k)) is not None}
        return dataset_info(name), {"data_dir": getattr(args, "data_dir", None), "image_options": None, **split}
    if getattr(args, "val_split", None) is not None or getattr(args, "eval_split", None) == "valid":
        raise ConfigError(
            "--val-split/--eval-split valid carve validation images from a built-in dataset; an image "
            "folder's own DIR/val is its evaluation split: drop them"
        )
    config = config if config and config.get("dataset") == "imagefolder" else None
    data_dir = getattr(args, "data_dir", None) or (config or {}).get("data_dir")
    options = image_options(args, config)
    return dataset_info(name, data_dir, options), {"data_dir": data_dir, "image_options": options}


# tpp.data.info.TEXT_DATASETS, restated: importing tpp.data would load torch before `tpp --help` prints
TEXT_DATASETS = ("text", "text_tiny")
_TEXT_OPTIONS = ("seq_len", "tokenizer", "windows_per_epoch")


def _given(args: argparse.Namespace, config: dict[str, Any] | None, key: str) -> Any:
    """``args.key``, else (``val_split`` only: the carve is part of the data) what ``config`` recorded."""
    value = getattr(args, key, None)
    return value if value is not None or key != "val_split" else (config or {}).get(key)


def run_label(spec: str) -> str:
    """A file-name-safe short form of a model spec, for default run-directory names."""
    label = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(spec).rstrip("/")).strip("_.")
    return label[-40:] or "model"


def require(args: argparse.Namespace, *names: str) -> None:
    """Raise :class:`ConfigError` if an option needed by the command was given neither on the
    command line nor in ``--config``."""
    for name in names:
        if getattr(args, name, None) in (None, ""):
            flag = "--" + name.replace("_", "-")
            raise ConfigError(f"{flag} is required (give it on the command line or in the --config file)")


def resolved_config(args: argparse.Namespace, **overrides: Any) -> dict[str, Any]:
    """All options of ``args`` (internal ``_`` entries dropped) updated with resolved values."""
    config = {k: v for k, v in vars(args).items() if not k.startswith("_")}
    config.update(overrides)
    return config


def launch(args: argparse.Namespace, body: Any) -> int:
    """Common start of multi-process-capable commands: device, AMP check, torchrun group, shutdown.

    ``body(args, context)`` does the work with a :class:`tpp.distributed.DistributedContext`.
    """
    from tpp import distributed, training
    from tpp.training.amp import check_amp

    device = training.resolve_device(args.device)
    check_amp(getattr(args, "amp", None), device)  # fp16 on CPU: fail before anything starts
    if getattr(args, "resume", False) and not args.out:
        raise ConfigError("--resume needs --out pointing at the run directory to continue")
    context = distributed.init_distributed(device, getattr(args, "dist_timeout", 30.0))
    code = body(args, context)
    distributed.shutdown(context)  # only on success: after an error the peers are stopped by torchrun
    return code
