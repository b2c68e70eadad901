"""The option groups that several commands share: model, data, optimisation, runtime, speed.

Each ``add_*_args(parser)`` adds its options to a command's parser; what the options mean is
resolved by the command when it runs (see :mod:`tpp.cli.common`).
"""

from __future__ import annotations

import argparse

from tpp.cli.option_types import (
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
from tpp.cli.text_options import DEFAULT_SEQ_LEN
from tpp.training.optim import DEFAULT_MOMENTUM, DEFAULT_WEIGHT_DECAY

# the choices of --eval-split
TEXT_EVAL_SPLITS = ("valid", "test")


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
