"""Rebuild a model from any tpp checkpoint for the ``eval`` and ``info`` commands.

Handles three kinds of file: training checkpoints (``tpp.training``: ``model`` + ``tpp_spec`` and,
for pruned models, ``tpp_plan``), pruned-model files (``tpp.save_pruned``) and raw state_dicts
(which need ``--model``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from tpp.errors import CheckpointError, ConfigError

PRUNED_FORMAT = "tpp-pruned-v1"
# spec keys that are not builder arguments
_SPEC_META = ("name", "num_classes", "in_channels")


def model_from_checkpoint(
    path: str | Path,
    payload: dict[str, Any],
    *,
    model_name: str | None = None,
    num_classes: int | None = None,
    in_channels: int | None = None,
) -> nn.Module:
    """Build the architecture recorded in ``payload`` (or ``model_name``) and load its weights.

    ``num_classes``/``in_channels`` override the recorded ones (e.g. from ``--dataset``).

    Raises:
        ConfigError: the file does not say which model it holds and ``model_name`` is None.
        ModelError: unknown model name.
        CheckpointError: weights of another architecture, or a model recorded for other input
            channels or classes than ``in_channels`` / ``num_classes``.
    """
    from tpp.models import create_model
    from tpp.pruning.serialization import replay_plan
    from tpp.training import load_model_weights

    path = Path(path)
    pruned_file = payload.get("format") == PRUNED_FORMAT
    spec = dict(payload.get("spec" if pruned_file else "tpp_spec") or {})
    config = payload.get("config") if isinstance(payload.get("config"), dict) else {}
    name = model_name or spec.get("name") or config.get("model")
    if not name:
        raise ConfigError(f"{path} does not record which model it holds; pass --model")
    own = spec.get("name") == name
    for field, asked in (("in_channels", in_channels), ("num_classes", num_classes)):
        if own and asked is not None and field in spec and int(spec[field]) != int(asked):
            hint = f" (it was trained on {config['dataset']})" if isinstance(config.get("dataset"), str) else ""
            raise CheckpointError(
                f"{path} holds a {name} with {field} {spec[field]}, not the {asked} asked for by --dataset / "
                f"--{field.replace('_', '-')}; use data with the checkpoint's shape{hint}")
    kwargs = {k: v for k, v in spec.items() if k not in _SPEC_META} if own else {}
    try:
        model = create_model(
            name,
            num_classes=int(num_classes if num_classes is not None else spec.get("num_classes", 10)),
            in_channels=int(in_channels if in_channels is not None else spec.get("in_channels", 3)),
            **kwargs,
        )
    except (TypeError, ValueError) as error:  # a spec whose arguments the builder does not take
        raise CheckpointError(f"{path} records arguments {name} does not take ({error}); "
                              "re-create the checkpoint with tpp") from None
    plan = payload.get("plan" if pruned_file else "tpp_plan")
    if isinstance(plan, dict):
        replay_plan(model, plan, path)
    load_model_weights(model, payload, path)
    return model
