"""Name -> builder registry for the model zoo (timm-style).

A builder is a function ``fn(num_classes, in_channels, **kwargs) -> nn.Module``. Models made by
:func:`create_model` carry their constructor arguments as ``model.tpp_spec`` (a plain dict) so a
saved, pruned model can be rebuilt from data alone.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from tpp.errors import ModelError

Builder = Callable[..., nn.Module]


@dataclass(frozen=True)
class _Entry:
    builder: Builder
    image_size: int


_REGISTRY: dict[str, _Entry] = {}


def register_model(name: str, *, image_size: int) -> Callable[[Builder], Builder]:
    """Decorator registering ``fn(num_classes, in_channels, **kwargs)`` under ``name``.

    ``image_size`` is the side length of the square input the model is designed for (32 for
    CIFAR/MNIST-style models, 224 for ImageNet models).
    """

    def decorator(fn: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = _Entry(fn, int(image_size))
        return fn

    return decorator


def list_models() -> list[str]:
    """Sorted names of all registered models."""
    return sorted(_REGISTRY)


def _entry(name: str) -> _Entry:
    entry = _REGISTRY.get(name)
    if entry is None:
        names = list_models()
        close = difflib.get_close_matches(str(name), names, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ModelError(f"Unknown model {name!r}.{hint} Valid names: {', '.join(names)}.")
    return entry


def model_image_size(name: str) -> int:
    """Input side length the model ``name`` expects (32 or 224). Unknown name -> ModelError."""
    return _entry(name).image_size


def create_model(name: str, num_classes: int = 10, in_channels: int = 3, **kwargs: Any) -> nn.Module:
    """Build a freshly initialised model by registry name.

    Extra ``kwargs`` go to the builder (e.g. ``width`` for MLPs). The returned model has
    ``model.tpp_spec = {"name", "num_classes", "in_channels", **kwargs}``, enough to call
    ``create_model(**spec)`` again.
    """
    entry = _entry(name)
    model = entry.builder(num_classes=num_classes, in_channels=in_channels, **kwargs)
    model.tpp_spec = {"name": name, "num_classes": num_classes, "in_channels": in_channels, **kwargs}
    return model


def example_inputs(
    name_or_model: str | nn.Module,
    in_channels: int | None = None,
    batch_size: int = 1,
    image_size: int | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """A seeded ``randn`` batch of shape ``[batch_size, in_channels, S, S]`` for a model.

    ``name_or_model`` is a registry name or a model made by :func:`create_model` or
    :func:`tpp.models.build_model` (its ``tpp_spec`` supplies the name and, unless given,
    ``in_channels``). ``S`` defaults to :func:`model_image_size` for registry models; for other
    models to the ``image_size`` recorded in their spec, else to the input a pruned model was
    traced with. Pass ``image_size`` to override (e.g. 64 for quick ImageNet checks).
    Random rather than zeros so that data-dependent tracing does not see degenerate activations.
    """
    size = None if image_size is None else int(image_size)
    if isinstance(name_or_model, nn.Module):
        spec = getattr(name_or_model, "tpp_spec", None)
        if not isinstance(spec, dict) or not ("name" in spec or "spec" in spec):
            raise ModelError(
                "example_inputs() needs a model made by tpp.models.create_model or build_model (it has no "
                "tpp_spec); pass the model name instead."
            )
        if in_channels is None:
            in_channels = int(spec.get("in_channels", 3))
        if size is None:
            size = model_image_size(spec["name"]) if "name" in spec else _recorded_size(name_or_model)
    elif size is None:
        if ":" in str(name_or_model):
            raise ModelError(f"example_inputs({name_or_model!r}) needs image_size: only tpp's own models know theirs")
        size = model_image_size(name_or_model)
    channels = 3 if in_channels is None else int(in_channels)
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch_size, channels, size, size, generator=gen)


def _recorded_size(model: nn.Module) -> int:
    """The input side of a non-registry model: from its spec, else from its pruning plan."""
    size = model.tpp_spec.get("image_size")
    if size is None:  # plans record an input signature ("inputs"), older ones a list of shapes
        plan = getattr(model, "tpp_plan", None) or {}
        signature = plan.get("inputs") or plan.get("input_shapes") or []
        shapes = [item["shape"] for item in signature["items"]] if isinstance(signature, dict) else signature
        size = shapes[0][-1] if shapes and len(shapes[0]) == 4 else None
    if size is None:
        raise ModelError(f"the input size of {model.tpp_spec['spec']} is not recorded; pass image_size (--image-size)")
    return int(size)
