"""Shared pieces of the command modules: parser class, help formatting, option groups.

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
from tpp.cli.text_options import DEFAULT_SEQ_LEN, text_dataset
from tpp.errors import ConfigError
from tpp.training.optim import DEFAULT_MOMENTUM, DEFAULT_WEIGHT_DECAY

__all__ = [
    "MAX_EPOCHS",
    "MAX_SEED",
    "ArgumentParser",
    "HelpFormatter",
    "UsageError",
    "add_command",
    "add_data_args",
    "add_model_args",
    "add_runtime_args",
    "add_speed_args",
    "add_train_args",
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


def add_model_args(parser: argparse.ArgumentParser, *, required: bool = True, weights: bool = True) -> None:
    """``--model`` (validated when the command runs, so YAML configs can supply it) and, with
    ``weights``, ``--weights`` and ``--pretrained``."""
    need = "required" if required else "optional"
    parser.add_argument(
        "--model",
        metavar="SPEC",
        help=f"model ({need}): a tpp name (see `tpp info`, e.g. mlp7_linear, resnet56), timm:NAME, "
        "torchvision:NAME, hf:CLASS_OR_DIR (transformers class or save_pretrained folder) or "
        "package.module:function (a factory; num_classes/in_channels passed when it takes them)",
    )
    if weights:
        parser.add_argument(
            "--weights",
            metavar="FILE",
            help="start --model from these weights: a state_dict (.pt/.pth) or .safetensors file, "
            "loaded weights-only; keys and shapes must match",
        )
        parser.add_argument(
            "--pretrained",
            action="store_true",
            help="start --model from its published weights (timm, torchvision, Hugging Face Hub); "
            "downloads them unless cached - the only option that may use the network for a model",
        )


def add_data_args(parser: argparse.ArgumentParser, *, train: bool = True) -> None:
    """``--dataset``, ``--data-dir``, ``--download``, batch sizes and, for training, ``--train-subset``."""
    group = parser.add_argument_group("data")
    group.add_argument(
        "--dataset",
        metavar="NAME",
        help="mnist, fashion_mnist, cifar10, cifar100, imagenet, mnist_subset (built in), imagefolder (your images), "
        "text (your text: DIR/train.txt, valid.txt, test.txt) or text_tiny (a built-in 24 KB English corpus)",
    )
    group.add_argument("--data-dir", metavar="DIR", help="dataset root (default: $TPP_DATA, else ~/.cache/tpp/data)")
    group.add_argument("--download", action="store_true", help="download missing dataset files from the official URLs")
    group.add_argument(
        "--val-split",
        type=fraction,
        metavar="F",
        help="built-in image datasets: hold out this fraction of every class of the training set "
        "(the same images for every seed and method); training never sees it",
    )
    group.add_argument(
        "--eval-split",
        choices=TEXT_EVAL_SPLITS,
        metavar="SPLIT",
        help="valid (choose settings: the --val-split images, or valid.txt) or test (report; the default)",
    )
    if train:
        group.add_argument("--batch-size", type=positive_int, default=128, metavar="N", help="training batch size")
        group.add_argument(
            "--train-subset", type=positive_int, metavar="N", help="train on N class-balanced images only"
        )
    group.add_argument("--test-batch-size", type=positive_int, default=256, metavar="N", help="evaluation batch size")
    group.add_argument(
        "--num-workers",
        type=non_negative_int,
        default=4,
        metavar="N",
        help="loader worker processes (ImageNet, imagefolder)",
    )
    group = parser.add_argument_group(
        "image folder (--dataset imagefolder --data-dir DIR)",
        "your images in DIR/train/<class>/ and DIR/val/<class>/ (png, jpg, ...; classes = sorted folder names),\n"
        "decoded with PIL, resized (shorter side) and centre-cropped as torchvision's Resize + CenterCrop",
    )
    group.add_argument("--image-size", type=positive_int, metavar="S", help="network input side (default: 224)")
    group.add_argument(
        "--resize",
        type=positive_int,
        metavar="R",
        help="shorter side before the centre crop (default: the image size; ImageNet practice: 256 for 224)",
    )
    group.add_argument("--channels", type=int, choices=(1, 3), help="3: RGB, 1: grayscale (default: 3)")
    group.add_argument(
        "--normalize", choices=("imagenet", "mnist", "half", "none"), help="mean/std preset (default: imagenet)"
    )
    group.add_argument("--mean", type=float_list, metavar="M[,M,M]", help="per-channel mean; overrides --normalize")
    group.add_argument("--std", type=float_list, metavar="S[,S,S]", help="per-channel std; overrides --normalize")
    group.add_argument(
        "--augment",
        action="store_true",
        default=None,
        help="training batches get random 4-pixel shifts and horizontal flips",
    )
    group.add_argument(
        "--stream",
        action="store_true",
        default=None,
        help="decode images batch by batch (default: in memory when they take at most 2 GiB)",
    )
    group = parser.add_argument_group(
        "text (--dataset text --data-dir DIR, or text_tiny)",
        "a causal language model (--model hf:DIR or hf:FILE.gguf) trained and evaluated on the next token of\n"
        "fixed-length windows of DIR/train.txt and DIR/test.txt (UTF-8); metric: perplexity and bits per byte",
    )
    group.add_argument(
        "--seq-len",
        type=positive_int,
        metavar="T",
        help=f"tokens per window (default: {DEFAULT_SEQ_LEN}; stated in every report)",
    )
    group.add_argument(
        "--tokenizer",
        metavar="SOURCE",
        help="hf:DIR, hf:FILE.gguf or bytes (default: the --model's own when it is an hf: folder or "
        "GGUF file, else bytes)",
    )
    if train:
        group.add_argument(
            "--windows-per-epoch",
            type=positive_int,
            metavar="N",
            help="an epoch draws N training windows at random (default: every window once)",
        )


def add_train_args(parser: argparse.ArgumentParser) -> None:
    """Epochs, learning-rate schedule, momentum, weight decay."""
    group = parser.add_argument_group("optimisation")
    group.add_argument(
        "--epochs",
        type=epoch_count,
        default=120,
        metavar="N",
        help="number of epochs (the paper fine-tunes 120 on CIFAR)",
    )
    group.add_argument(
        "--lr",
        default="step:0.01",
        metavar="SCHEDULE",
        help="learning rate: a number (constant), 'EPOCH:LR,...' as in the paper (e.g. 0:0.01,60:0.001,90:0.0001), "
        "'step:BASE' (x0.1 at 50%% and 75%% of the epochs) or 'cosine:BASE'",
    )
    group.add_argument("--momentum", type=non_negative_float, default=DEFAULT_MOMENTUM, help="SGD momentum")
    group.add_argument(
        "--weight-decay",
        type=non_negative_float,
        default=DEFAULT_WEIGHT_DECAY,
        metavar="WD",
        help="L2 weight decay (paper: 5e-4 CIFAR, 1e-4 ImageNet)",
    )


def add_runtime_args(parser: argparse.ArgumentParser, *, out: bool = True) -> None:
    """``--device``, ``--seed``, ``--quiet``, ``--threads``, ``--config`` and, if ``out``, ``--out``."""
    group = parser.add_argument_group("runtime")
    group.add_argument("--device", default="auto", metavar="DEV", help="auto, cpu, cuda or cuda:N")
    group.add_argument("--seed", type=seed_int, default=0, help="seed of initialisation, data order and augmentation")
    group.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    group.add_argument(
        "--threads",
        type=positive_int,
        metavar="N",
        help="CPU threads for torch (default: torch's choice; 1 is much faster on a busy machine)",
    )
    if out:
        group.add_argument(
            "--out", type=output_path, metavar="DIR", help="run directory (default: runs/<model>-<dataset>-<time>)"
        )
    group.add_argument(
        "--config",
        metavar="FILE",
        help="YAML file of option values (keys are option names, e.g. 'batch-size: 64'); the command line overrides it",
    )


def add_speed_args(parser: argparse.ArgumentParser) -> None:
    """``--amp``, ``--channels-last``, ``--compile`` and ``--dist-timeout`` (multi-process runs)."""
    group = parser.add_argument_group(
        "speed and multi-process runs",
        "launch with `torchrun --nproc_per_node N -m tpp ...` for DistributedDataParallel on N\n"
        "processes: --batch-size is the global batch, split evenly over them; only rank 0 writes files",
    )
    group.add_argument(
        "--amp",
        choices=("bf16", "fp16"),
        default=None,
        help="mixed precision: bf16 autocast (CPU or CUDA) or fp16 autocast + loss scaling (CUDA only)",
    )
    group.add_argument("--channels-last", action="store_true", help="channels_last memory format for model and inputs")
    group.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the model while it trains (falls back to eager with a warning on failure)",
    )
    group.add_argument(
        "--dist-timeout",
        type=positive_float,
        default=30.0,
        metavar="MINUTES",
        help="under torchrun: how long ranks wait for a lost peer before failing",
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
TEXT_EVAL_SPLITS = ("valid", "test")
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
