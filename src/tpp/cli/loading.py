"""The model of a command: rebuilt from any tpp checkpoint, or built from ``--model``.

Handles tpp checkpoints (:mod:`tpp.checkpoints`: training runs and ``tpp.save_pruned`` files,
``model`` + ``tpp_spec`` and, for pruned models, ``tpp_plan``) and raw state_dicts (which need
``--model``). Without a checkpoint, ``--model`` (any spec of
:mod:`tpp.models.specs`) is built, from ``--pretrained`` weights and/or ``--weights FILE``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from torch import nn

from tpp.errors import CheckpointError, ConfigError
from tpp.models.specs import allow_imports_from_cwd  # noqa: F401 - the commands import it from here


def model_from_checkpoint(
    path: str | Path,
    payload: dict[str, Any],
    *,
    model_name: str | None = None,
    num_classes: int | None = None,
    in_channels: int | None = None,
    image_size: int | None = None,
) -> nn.Module:
    """Build the architecture recorded in ``payload`` (or ``model_name``) and load its weights.

    ``num_classes``/``in_channels`` override the recorded ones (e.g. from ``--dataset``).

    Raises:
        ConfigError: the file does not say which model it holds and ``model_name`` is None.
        ModelError: unknown model name.
        CheckpointError: weights of another architecture, or a model recorded for other input
            channels or classes than ``in_channels`` / ``num_classes``.
    """
    from tpp.checkpoints import load_model_weights, normalise
    from tpp.data.record import RECORD_KEY
    from tpp.models import build_model, model_from_record
    from tpp.pruning.history import replay_plan

    path = Path(path)
    payload = normalise(payload)
    record = dict(payload.get("tpp_spec") or {})
    config = payload.get("config") if isinstance(payload.get("config"), dict) else {}
    if not record and isinstance(config.get("model"), str):  # only the run's config names the model
        # still the file's say-so: rebuilt under the same rules as a recorded spec
        record = {"name": config["model"]} if ":" not in config["model"] else {"spec": config["model"]}
        if "spec" in record and image_size is not None:
            record["image_size"] = int(image_size)
    recorded = record.get("name") or record.get("spec")
    name = model_name or recorded
    if not name:
        raise ConfigError(f"{path} does not record which model it holds; pass --model")
    if model_name:  # only a spec the user gave may import from the current folder; the file's may not
        allow_imports_from_cwd(model_name)
    own = recorded is not None and name == recorded
    for field, asked in (("in_channels", in_channels), ("num_classes", num_classes)):
        if own and asked is not None and field in record and int(record[field]) != int(asked):
            hint = f" (it was trained on {config['dataset']})" if isinstance(config.get("dataset"), str) else ""
            raise CheckpointError(
                f"{path} holds a {name} with {field} {record[field]}, not the {asked} asked for by --dataset / "
                f"--{field.replace('_', '-')}; use data with the checkpoint's shape{hint}"
            )
    try:
        if own:
            # a record the user confirmed with --model is theirs: its factory needs no file-level check;
            # without --model it is the file's say-so, and a factory's module must be imported already
            model = model_from_record(record, num_classes, in_channels, source=None if model_name else str(path))
        else:
            model = build_model(
                name,
                num_classes=int(num_classes or record.get("num_classes", 10)),
                in_channels=int(in_channels or record.get("in_channels", 3)),
                image_size=image_size,
            )
    except (TypeError, ValueError) as error:  # a record whose arguments the builder does not take
        raise CheckpointError(
            f"{path} records arguments {name} does not take ({error}); re-create the checkpoint with tpp"
        ) from None
    plan = payload.get("tpp_plan")
    if isinstance(plan, dict):
        replay_plan(model, plan, path)
    load_model_weights(model, payload, path)
    record = payload.get(RECORD_KEY)
    if isinstance(record, dict):  # its data travels on to the next file it is saved to
        model.tpp_data = record
    return model


def model_from_args(
    args: argparse.Namespace,
    *,
    num_classes: int,
    in_channels: int,
    image_size: int | None = None,
    payload: dict[str, Any] | None = None,
    need_weights: bool = False,
) -> nn.Module:
    """The model a command works on: ``--checkpoint`` (``payload``, if already read), else
    ``--model`` built with ``--pretrained`` and loaded from ``--weights``.

    Raises:
        ConfigError: both --checkpoint and --weights, no --model, or (``need_weights``) no
            weights at all.
    """
    from tpp.checkpoints import load_checkpoint
    from tpp.models import build_model, load_weights

    checkpoint, weights = getattr(args, "checkpoint", None), getattr(args, "weights", None)
    pretrained = bool(getattr(args, "pretrained", False))
    if checkpoint:
        if weights or pretrained:
            raise ConfigError("--checkpoint already holds the weights; drop --weights/--pretrained")
        return model_from_checkpoint(
            checkpoint,
            payload if payload is not None else load_checkpoint(checkpoint),
            model_name=args.model,
            num_classes=num_classes,
            in_channels=in_channels,
            image_size=image_size,
        )
    if need_weights:
        require_trained_model(args)
    if not args.model:
        raise ConfigError("--model is required (give it on the command line or in the --config file)")
    allow_imports_from_cwd(args.model)
    model = build_model(args.model, num_classes, in_channels, pretrained=pretrained, image_size=image_size)
    if weights:
        load_weights(model, weights)
    return model


def require_trained_model(args: argparse.Namespace) -> None:
    """Raise :class:`ConfigError` unless the options name a trained model: ``--checkpoint``, or
    ``--model`` with ``--weights`` or ``--pretrained``."""
    if getattr(args, "checkpoint", None):
        return
    if not (getattr(args, "weights", None) or getattr(args, "pretrained", False)):
        raise ConfigError(
            "--checkpoint is required (or --model with --weights FILE or --pretrained): the trained model"
        )
    if not args.model:
        raise ConfigError("--weights/--pretrained need --model (the architecture the weights belong to)")
