"""The set-up that ``tpp train``, ``prune``, ``eval`` and ``jsv`` share: the dataset, the seed, the
model, its input checks, the loaders and example inputs, in one order (so that a bad model is
refused before any data is read, and every file the job writes records how its inputs are prepared).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tpp.cli.checks import check_language_model, check_model_input, input_fix, model_name
from tpp.cli.common import TEXT_DATASETS, dataset_from_args, per_rank_batch_size
from tpp.errors import ModelError


@dataclass
class Prepared:
    """What :func:`prepare_model_and_data` built.

    ``inputs``: two windows of real token ids for a language model (checked), two example images
    when asked for with ``want_inputs``, else ``None``. ``batch_size`` is the per-rank batch.
    """

    model: Any
    info: Any
    data: dict[str, Any]
    train_loader: Any
    test_loader: Any
    inputs: Any
    text: bool
    batch_size: int | None


def prepare_model_and_data(
    args: argparse.Namespace,
    payload: dict[str, Any] | None,
    device: Any,
    *,
    source: str | None = None,
    batch_size: int | None = None,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int | None = None,
    train_subset: int | None = None,
    input_hint: str = "",
    label: str | None = None,
    need_weights: bool = False,
    seed: bool = True,
    check_outputs: bool = False,
    check_text: bool = True,
    want_inputs: bool = False,
    on_model: Callable[[Any], None] | None = None,
    before_data: Callable[[Any, dict[str, Any]], None] | None = None,
) -> Prepared:
    """Build the model and the loaders of a job from the command's options.

    The dataset is the one ``payload`` (a read checkpoint, ``{}`` for none) records, checked against
    the flags, with ``source`` (default: ``--checkpoint``, ``--weights`` or ``--model``) naming it in
    messages; with ``payload`` ``None`` it comes from the flags
    alone. Then ``batch_size`` (global) is split over ``world_size`` ranks, ``--seed`` is set (``seed``),
    the model is built (``need_weights``: refused without trained weights), ``on_model(model)`` runs,
    an image model is tried on one input (``label``, default the model's name, and ``input_hint`` go
    into the message), moved to ``device``, its class scores checked (``check_outputs``), then
    ``before_data(info, data)`` runs (e.g. reading a checkpoint to resume) and the loaders are built.
    A language model is checked on two test windows (``check_text``), and ``model.tpp_data`` records
    the data.

    Raises:
        ConfigError, DataError, ModelError, CheckpointError: from each step, with its own message.
    """
    from tpp import training
    from tpp.cli.loading import model_from_args
    from tpp.cli.recorded_data import recorded_dataset
    from tpp.data import build_loaders
    from tpp.data.record import data_record
    from tpp.models import example_inputs

    source = source or getattr(args, "checkpoint", None) or getattr(args, "weights", None) or args.model
    info, data = recorded_dataset(args, payload, source) if payload is not None else dataset_from_args(args)
    text = info.name in TEXT_DATASETS
    if batch_size is not None:
        batch_size = per_rank_batch_size(batch_size, world_size)
    if seed:
        training.seed_everything(args.seed)
    model = model_from_args(
        args,
        num_classes=info.num_classes,
        in_channels=info.in_channels,
        image_size=info.image_size,
        payload=payload or None,
        need_weights=need_weights,
    )
    if on_model is not None:
        on_model(model)
    if not text:
        check_model_input(
            model,
            (1, info.in_channels, info.image_size, info.image_size),
            label or model_name(model),
            input_fix(info, input_hint),
        )
    model = model.to(device)
    if check_outputs and not text:
        check_output_shape(model, info, label or model_name(model))
    if before_data is not None:
        before_data(info, data)
    # only what a command sets is passed: the others keep build_loaders' defaults
    options = {"batch_size": batch_size, "num_workers": num_workers}
    train_loader, test_loader, info = build_loaders(
        info.name,
        **data,
        **{key: value for key, value in options.items() if value is not None},
        test_batch_size=args.test_batch_size,
        device=device,
        download=args.download,
        seed=args.seed,
        train_subset=train_subset,
        rank=rank,
        world_size=world_size,
    )
    inputs = None
    if text and check_text:  # real token ids (two windows) trace a language model's channels
        inputs = check_language_model(model, next(iter(test_loader))[0][:2].to(device), info)
    elif want_inputs and not text:
        inputs = example_inputs(model, in_channels=info.in_channels, batch_size=2, image_size=info.image_size).to(
            device
        )
    model.tpp_data = data_record(info, data)  # every file the job writes says how its inputs are prepared
    return Prepared(model, info, data, train_loader, test_loader, inputs, text, batch_size)


def job_options(args: argparse.Namespace, context: Any) -> dict[str, Any]:
    """The :func:`prepare_model_and_data` options of a job that trains (``tpp train``, ``prune``) on the
    ranks of ``context`` (a :class:`tpp.distributed.DistributedContext`): the global ``--batch-size``,
    ``--num-workers`` and ``--train-subset``."""
    return {
        "batch_size": args.batch_size,
        "rank": context.rank,
        "world_size": context.world_size,
        "num_workers": args.num_workers,
        "train_subset": args.train_subset,
        "input_hint": "pick a --model that takes them",
    }


def check_output_shape(model: Any, info: Any, model_name: str) -> None:
    """Fail early, with one line, when the model cannot consume the dataset's images or gives
    another number of class scores.

    Raises:
        ModelError: the forward pass fails, or its output is not ``[N, info.num_classes]``.
    """
    import torch

    from tpp.util.inputs import logits_of
    from tpp.util.modules import device_of

    shape = (2, info.in_channels, info.image_size, info.image_size)
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = logits_of(model(torch.zeros(shape, device=device_of(model))))
    except (RuntimeError, ValueError, TypeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelError(
            f"model {model_name} cannot take {info.name} images of shape {list(shape[1:])} ({first}); "
            f"{input_fix(info, 'pick another --model')}"
        ) from None
    finally:
        model.train(training)
    if logits.dim() != 2 or logits.shape[1] != info.num_classes:
        raise ModelError(
            f"model {model_name} gives outputs of shape {list(logits.shape[1:])} per image, not {info.num_classes} "
            f"class scores for {info.name}; build it with num_classes={info.num_classes}"
        )
