"""The ``transformers`` configuration of a pruned model: widths read from its layers, checked by a build.

Pruning shrinks layers but leaves ``model.config`` as it was, and ``from_pretrained`` builds the
architecture from ``config.json`` alone, so the configuration must describe the pruned shapes:
``intermediate_size`` (``n_inner`` in GPT-2, ``ffn_dim`` in OPT, ``ffn_hidden_size`` in Falcon),
``num_attention_heads``, ``num_key_value_heads``, ``head_dim`` and ``hidden_size``. They are read
from the layers that consume each width (an MLP's output projection takes the MLP width, the
attention's output projection takes heads x head_dim), and the result is checked by building the
class from the new configuration on the meta device (no memory, no weights) and comparing every
tensor's shape: a pruned model that one configuration cannot describe (layers of different widths,
or a family whose configuration has no field for a width, like BLOOM's MLP of 4 x hidden_size) is
refused, naming the first tensor that differs.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import torch
from torch import nn

from tpp.errors import TPPError
from tpp.pruning.layers import filters, transposed_linear_types

# layers whose *input* width is the MLP width, by family: Llama/Mistral/Qwen/Gemma/Phi-3/StableLM,
# GPT-NeoX/BLOOM/Falcon, GPT-2 (a Conv1D), OPT, BERT/RoBERTa
_MLP_OUT = re.compile(r"(\.mlp\.(down_proj|dense_4h_to_h|c_proj|fc2)|layers\.\d+\.fc2|layer\.\d+\.output\.dense)$")
# layers whose input width is heads x head_dim: the attention's output projection
_ATTN_OUT = re.compile(
    r"(\.(self_attn|attn|attention|self_attention)\.(o_proj|out_proj|c_proj|dense)"
    r"|\.attention\.output\.dense)$"
)
# layers whose output width is key/value heads x head_dim (separate projections only)
_KEY = re.compile(r"\.(self_attn|attention)\.(k_proj|key)$|\.attention\.self\.key$")
_MLP_FIELDS = ("intermediate_size", "n_inner", "ffn_dim", "ffn_hidden_size")
_DROPPED = ("quantization_config",)  # a GGUF-loaded model's: the exported weights are plain floats


class ConfigMismatchError(TPPError):
    """One ``transformers`` configuration cannot describe the pruned model's shapes."""


def _linear_filters(module: nn.Module) -> torch.Tensor | None:
    """The ``[out, in]`` weight of a Linear or a ``transformers`` Conv1D (GPT-2 stores it ``[in, out]``)."""
    return filters(module) if isinstance(module, (nn.Linear, *transposed_linear_types())) else None


def in_width(module: nn.Module) -> int | None:
    """Input features of a Linear or a Conv1D."""
    weight = _linear_filters(module)
    return None if weight is None else int(weight.shape[1])


def out_width(module: nn.Module) -> int | None:
    """Output features of a Linear or a Conv1D."""
    weight = _linear_filters(module)
    return None if weight is None else int(weight.shape[0])


def _widths(model: nn.Module, pattern: re.Pattern, width) -> dict[str, int]:
    return {name: w for name, m in model.named_modules() if pattern.search(name) and (w := width(m)) is not None}


def layer_widths(model: nn.Module) -> dict[str, dict[str, int]]:
    """Per layer: the MLP width (``mlp``), the attention width = heads x head_dim (``attention``) and
    the key width = key/value heads x head_dim (``keys``, separate projections only)."""
    return {
        "mlp": _widths(model, _MLP_OUT, in_width),
        "attention": _widths(model, _ATTN_OUT, in_width),
        "keys": _widths(model, _KEY, out_width),
    }


def _one(found: dict[str, int], what: str) -> int | None:
    values = set(found.values())
    if len(values) > 1:
        names = sorted(found, key=found.get)
        raise ConfigMismatchError(
            f"the pruned layers have different {what} ({found[names[0]]} in {names[0]}, {found[names[-1]]} in "
            f"{names[-1]}) and one config.json holds one value; save with tpp.save_pruned, whose file keeps them, "
            "or prune every layer alike (one ratio)"
        )
    return values.pop() if values else None


def _set(cfg: Any, field: str, value: int) -> None:
    if getattr(cfg, field, None) != value:
        setattr(cfg, field, value)


def pruned_config(model: nn.Module) -> Any:
    """A copy of ``model.config`` that describes the pruned shapes, without ``quantization_config``.

    Raises:
        ConfigMismatchError: layers of different widths, or shapes no configuration of this class
            gives (checked by building the class from it on the meta device).
    """
    cfg = copy.deepcopy(model.config)
    for field in _DROPPED:
        if hasattr(cfg, field):
            delattr(cfg, field)
    original_heads = int(getattr(cfg, "num_attention_heads", 0) or 0)
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    hidden = int(embeddings.weight.shape[1]) if isinstance(embeddings, nn.Embedding) else None
    old_hidden = getattr(cfg, "hidden_size", None)
    # the attention layers know their head size; the config's head count may already be the pruned one
    sizes = {getattr(m, "head_dim", None) or getattr(m, "attention_head_size", None) for m in model.modules()} - {None}
    head_dim = next(iter(sizes)) if len(sizes) == 1 and isinstance(next(iter(sizes)), int) else None
    head_dim = head_dim or getattr(cfg, "head_dim", None)
    if not head_dim and old_hidden and original_heads:
        head_dim = old_hidden // original_heads
    if hidden is not None and old_hidden is not None and hidden != old_hidden:
        _set(cfg, "hidden_size", hidden)
        _set_norm_eps(cfg, model)
    widths = layer_widths(model)
    mlp = _one(widths["mlp"], "MLP widths")
    field = next((f for f in _MLP_FIELDS if f in cfg.to_dict()), None)
    if mlp is not None and field is not None:
        _set(cfg, field, mlp)
    attention = _one(widths["attention"], "attention widths")
    keys = _one(widths["keys"], "key/value widths")
    if head_dim and attention is not None and attention % head_dim == 0:
        _set(cfg, "num_attention_heads", attention // head_dim)
        if "head_dim" in cfg.to_dict() or attention // head_dim * head_dim != getattr(cfg, "hidden_size", 0):
            _set(cfg, "head_dim", head_dim)
        if keys is not None and keys % head_dim == 0 and hasattr(cfg, "num_key_value_heads"):
            _set(cfg, "num_key_value_heads", keys // head_dim)
    check_buildable(model, cfg)
    return cfg


def _set_norm_eps(cfg: Any, model: nn.Module) -> None:
    """A residual width cut under RMSNorm rescales each norm's eps (d/d'); one value goes to the config."""
    values = {float(m.variance_epsilon) for m in model.modules() if hasattr(m, "variance_epsilon")}
    for field in ("rms_norm_eps", "layer_norm_eps"):
        if field in cfg.to_dict() and len(values) == 1:
            setattr(cfg, field, values.pop())
            return


def check_buildable(model: nn.Module, cfg: Any) -> None:
    """Build ``type(model)(cfg)`` on the meta device and compare every tensor's shape with ``model``'s.

    Raises:
        ConfigMismatchError: the first tensor whose shape (or presence) differs.
    """
    try:
        with torch.device("meta"):
            fresh = type(model)(cfg)
    except Exception as error:  # noqa: BLE001 - a config the class rejects, whatever it raises
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ConfigMismatchError(
            f"{type(model).__name__} cannot be built from the pruned model's config ({first}); "
            "save with tpp.save_pruned, whose file keeps the pruned shapes"
        ) from None
    built = {k: tuple(v.shape) for k, v in fresh.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    name = type(model).__name__
    for key, shape in have.items():
        if built.get(key, shape) != shape:
            raise ConfigMismatchError(
                f"config.json cannot describe the pruned {name}: {key} is {list(shape)} but {name}(config) builds "
                f"{list(built[key])} (layers pruned to different widths, or a width the config has no field for); "
                "save with tpp.save_pruned, whose file keeps them"
            )
    missing = sorted(set(have) ^ set(built))
    if missing:
        raise ConfigMismatchError(
            f"config.json cannot describe the pruned {name}: {missing[0]} is in only one of the "
            "pruned model and the model its config builds; save with tpp.save_pruned"
        )
