"""Model specs: one string names any model tpp can build, and a plain-data record rebuilds it.

Forms of a spec (the CLI's ``--model``):

* a registry name: ``resnet56``, ``mlp7_linear`` ... (:func:`tpp.models.create_model`);
* ``timm:NAME`` - ``timm.create_model(NAME)`` (extra ``tpp-pruning[timm]``);
* ``torchvision:NAME`` - ``torchvision.models.get_model(NAME)`` (extra ``tpp-pruning[vision]``);
* ``hf:CLASS_OR_DIR`` - a ``transformers`` image-classification model: a class name such as
  ``ResNetForImageClassification`` (default configuration) or a folder written by
  ``save_pretrained`` (extra ``tpp-pruning[transformers]``);
* ``package.module:function`` - any importable factory returning an ``nn.Module``;
  ``num_classes`` / ``in_channels`` (and ``pretrained``) are passed when it takes them.

Every model built here carries ``model.tpp_spec``, plain data that :func:`model_from_record`
turns back into the same (freshly initialised) architecture: ``{"name": ...}`` for registry
models, as before, and ``{"spec": ..., "num_classes", "in_channels", "image_size"?}`` (plus the
``transformers`` configuration for ``hf:``) for the others. Pruned-model files and checkpoints
store it, so they can be rebuilt with no other information.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from typing import Any, Mapping

from torch import nn

from tpp.errors import CheckpointError, ModelError
from tpp.models import external
from tpp.models.budget import build_measured
from tpp.models.registry import create_model, model_image_size

PREFIXES = ("timm", "torchvision", "hf")
SPEC_FORMS = "timm:NAME, torchvision:NAME, hf:CLASS_OR_DIR or package.module:function"


def parse_spec(spec: str) -> tuple[str, str]:
    """``(kind, target)`` of a spec: kind is ``registry``, ``timm``, ``torchvision``, ``hf`` or ``factory``.

    Raises:
        ModelError: an empty or malformed spec.
    """
    text = str(spec).strip()
    prefix, colon, rest = text.partition(":")
    if not colon:
        if not text:
            raise ModelError(f"--model is empty; give a model name (see `tpp info`) or {SPEC_FORMS}")
        return "registry", text
    if prefix in PREFIXES:
        if not rest.strip():
            raise ModelError(f"--model {text!r} names no model after '{prefix}:'; e.g. {prefix}:resnet18")
        return prefix, rest.strip()
    if not all(part.isidentifier() for part in prefix.split(".")) or not all(
        part.isidentifier() for part in rest.split(".")
    ):
        raise ModelError(f"--model {text!r} is not a model spec; use a registry name or {SPEC_FORMS}")
    return "factory", text


def is_factory_spec(spec: Any) -> bool:
    """Whether ``spec`` is a ``module:function`` factory: code that only a spec the user gives may run
    (a spec a file records is not the user's word)."""
    try:
        return isinstance(spec, str) and parse_spec(spec)[0] == "factory"
    except ModelError:
        return False


def build_model(
    spec: str, num_classes: int = 10, in_channels: int = 3, *, pretrained: bool = False, image_size: int | None = None
) -> nn.Module:
    """Build the model a spec names (see the module docstring) and attach ``model.tpp_spec``.

    Args:
        spec: registry name, ``timm:NAME``, ``torchvision:NAME``, ``hf:CLASS_OR_DIR`` or
            ``package.module:function``.
        num_classes: output classes.
        in_channels: input image channels.
        pretrained: start from published weights; may download them (only when True).
        image_size: input side length, recorded for non-registry models so that example inputs
            can be made again later (registry models know theirs).

    Raises:
        ModelError: unknown or malformed spec, a missing optional library, a failed download,
            a factory that fails or returns no ``nn.Module``, or weights that need more memory
            than this machine can spare (measured on the meta device first, see
            :mod:`tpp.models.budget`).
    """
    kind, target = parse_spec(spec)
    if kind == "registry":
        if pretrained:
            raise ModelError(
                f"{target} is a tpp model with no published weights; drop --pretrained and pass "
                "--weights FILE or --checkpoint FILE"
            )
        try:
            model_image_size(target)  # the registry's "unknown model" error, with close matches
        except ModelError as error:
            raise ModelError(f"{error} Other models: {SPEC_FORMS}.") from None
        return build_measured(lambda: create_model(target, num_classes=num_classes, in_channels=in_channels), target)
    spec = f"{kind}:{target}" if kind != "factory" else target
    # measured on the meta device first, except published weights and the user's own factory
    # (which would run twice)
    model = (
        _build_external(kind, target, spec, num_classes, in_channels, pretrained, None)
        if pretrained or kind == "factory"
        else build_measured(lambda: _build_external(kind, target, spec, num_classes, in_channels, False, None), spec)
    )
    model.tpp_spec = _record(model, kind, spec, num_classes, in_channels, image_size)
    return model


def model_from_record(
    record: Mapping[str, Any],
    num_classes: int | None = None,
    in_channels: int | None = None,
    *,
    source: str | None = None,
) -> nn.Module:
    """A freshly initialised model of the architecture ``record`` (a ``model.tpp_spec``) describes.

    Nothing is downloaded. ``num_classes`` / ``in_channels`` override the recorded ones.
    ``source`` names the file the record comes from: a record read from a file may name a
    ``package.module:function`` factory, so only Python functions taking ``num_classes`` or
    ``in_channels`` (or ``nn.Module`` classes) outside the standard library are called then;
    for anything else the user must name the factory themselves (``--model``).

    Raises:
        CheckpointError: a record that names no architecture, a factory refused as above, or a
            record (read from ``source``) describing a model far larger than the file (measured
            on the meta device before anything is allocated, see :mod:`tpp.models.budget`).
        ModelError: the architecture cannot be built here (library or module missing), or it
            needs more memory than this machine can spare.
    """
    record = dict(record)
    classes = int(num_classes if num_classes is not None else record.get("num_classes", 10))
    channels = int(in_channels if in_channels is not None else record.get("in_channels", 3))
    where = f"{source} " if source else "the record "
    if "name" in record:
        kwargs = {k: v for k, v in record.items() if k not in ("name", "num_classes", "in_channels")}
        return build_measured(
            lambda: create_model(record["name"], num_classes=classes, in_channels=channels, **kwargs),
            str(record["name"]),
            source,
        )
    if "spec" not in record:
        raise CheckpointError(f"{where}does not record which model it holds; pass --model (or base_model=)")
    kind, target = parse_spec(record["spec"])
    spec = str(record["spec"])
    if kind == "factory":  # its classes and channels are bounded where the file is read (check_layout)
        model = _build_external(kind, target, spec, classes, channels, False, record, source)
    else:
        model = build_measured(
            lambda: _build_external(kind, target, spec, classes, channels, False, record, source), spec, source
        )
    model.tpp_spec = _record(model, kind, spec, classes, channels, record.get("image_size"))
    return model


def infer_record(model: nn.Module) -> dict[str, Any] | None:
    """``model.tpp_spec``, or for a ``transformers`` model built outside tpp a record made from its
    configuration (``hf:`` + class + config), so that a pruned file rebuilds it alone; else None."""
    record = getattr(model, "tpp_spec", None)
    if isinstance(record, Mapping) and record:
        return dict(record)
    config = getattr(model, "config", None)
    if type(model).__module__.startswith("transformers.") and hasattr(config, "to_diff_dict"):
        classes = int(getattr(config, "num_labels", 10))
        channels = int(getattr(config, "num_channels", 3))
        image = getattr(config, "image_size", None)
        record = {
            "spec": f"hf:{type(model).__name__}",
            "num_classes": classes,
            "in_channels": channels,
            **external.hf_record(model),
        }
        if isinstance(image, int):
            record["image_size"] = image
        return record
    return None


def spec_label(record: Mapping[str, Any] | None) -> str:
    """The spec string of a ``tpp_spec`` record (registry name or ``kind:target``)."""
    record = record or {}
    return str(record.get("name") or record.get("spec") or "")


def _build_external(
    kind: str,
    target: str,
    spec: str,
    num_classes: int,
    in_channels: int,
    pretrained: bool,
    record: Mapping[str, Any] | None,
    source: str | None = None,
) -> nn.Module:
    if kind == "registry":
        raise ModelError(f"{spec} is a registry name; build it with create_model")
    if kind == "timm":
        model = external.timm_model(target, num_classes, in_channels, pretrained)
    elif kind == "torchvision":
        model = external.torchvision_model(target, num_classes, in_channels, pretrained)
    elif kind == "hf":
        config = record.get("hf_config") if record else None
        model = external.hf_model(
            target,
            num_classes,
            in_channels,
            pretrained,
            config=config,
            class_name=record.get("hf_class") if record else None,
        )
    else:
        model = _factory_model(target, num_classes, in_channels, pretrained, source)
    if not isinstance(model, nn.Module):
        raise ModelError(f"{spec} returned {type(model).__name__}, not a torch.nn.Module; return the model itself")
    return model


def _record(
    model: nn.Module, kind: str, spec: str, num_classes: int, in_channels: int, image_size: int | None
) -> dict[str, Any]:
    record: dict[str, Any] = {"spec": spec, "num_classes": int(num_classes), "in_channels": int(in_channels)}
    if image_size is not None:
        record["image_size"] = int(image_size)
    if kind == "hf":
        record.update(external.hf_record(model))
    return record


def _factory_model(spec: str, num_classes: int, in_channels: int, pretrained: bool, source: str | None) -> nn.Module:
    module_name, _, attr = spec.partition(":")
    if source is not None:
        _check_module_from_file(module_name, spec, source)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and (module_name == error.name or module_name.startswith(error.name + ".")):
            fix = f"pass --model {spec} where it is importable (the current folder or PYTHONPATH)"
            if source:
                fix = f"make it importable (PYTHONPATH) or pass --model / base_model= to rebuild {source}"
            raise ModelError(f"cannot import {module_name!r} for the model {spec}; {fix}") from None
        raise ModelError(
            f"importing {module_name} for the model {spec} failed: {external._first_line(error)}"
        ) from error
    except Exception as error:
        raise ModelError(
            f"importing {module_name} for the model {spec} failed: {external._first_line(error)}"
        ) from error
    factory: Any = module
    # on a file's say-so, attributes are looked up without running code (a module's __getattr__
    # may import more modules lazily)
    lookup = getattr if source is None else inspect.getattr_static
    for part in attr.split("."):
        try:
            factory = lookup(factory, part)
        except AttributeError:
            raise ModelError(f"module {module_name} has no {attr!r}; check the name after ':' in {spec}") from None
    if not callable(factory):
        raise ModelError(f"{spec} is a {type(factory).__name__}, not a function or class that builds a model")
    params = _parameters(factory)
    if source is not None:
        _check_factory_from_file(factory, module_name, params, spec, source)
    kwargs: dict[str, Any] = {}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    for name, value in (("num_classes", num_classes), ("in_channels", in_channels)):
        if name in params or takes_any:
            kwargs[name] = value
    if pretrained:
        if "pretrained" not in params:
            raise ModelError(f"{spec} takes no 'pretrained' argument; drop --pretrained and pass --weights FILE")
        kwargs["pretrained"] = True
    try:
        return factory(**kwargs)
    except Exception as error:
        shown = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        raise ModelError(f"{spec}({shown}) failed: {external._first_line(error)}") from error


def _parameters(factory: Any) -> Mapping[str, inspect.Parameter]:
    try:
        return inspect.signature(factory).parameters
    except (TypeError, ValueError):  # some builtins and C extensions have no signature
        return {}


def _check_module_from_file(module_name: str, spec: str, source: str) -> None:
    """Importing a module runs its code, so a file may only name a module that is imported already;
    any other (even one in the current folder, such as ``./train.py``) needs the user's word: the
    same spec given as ``--model`` or ``base_model=``, which bypasses this check."""
    if sys.modules.get(module_name) is not None:
        return
    raise CheckpointError(
        f"{source} names the model factory {spec}, whose module {module_name} is not imported, and tpp does not "
        f"import code on a file's say-so; if you trust it, pass --model {spec} (Python: base_model={spec!r})"
    )


def _check_factory_from_file(
    factory: Any, module_name: str, params: Mapping[str, inspect.Parameter], spec: str, source: str
) -> None:
    """Refuse to call, on a file's say-so, anything that is not plainly a model factory."""
    top = module_name.split(".")[0]
    model_class = inspect.isclass(factory) and issubclass(factory, nn.Module)
    model_function = inspect.isfunction(factory) and ("num_classes" in params or "in_channels" in params)
    if top in getattr(sys, "stdlib_module_names", ()) or not (model_class or model_function):
        raise CheckpointError(
            f"{source} names {spec}, which is not a model factory tpp calls on a file's say-so (a Python "
            "function taking num_classes or in_channels, or an nn.Module class); pass --model "
            f"{spec} (or base_model=) if you trust it"
        )


def allow_imports_from_cwd(spec: str) -> None:
    """Make a ``module:function`` spec the user named importable from the current folder, as
    ``python -m`` would (the ``tpp`` script's own folder is on ``sys.path`` instead). Call it only for
    a spec the user gave (a flag, a recipe), never for one a file records."""
    import os
    import sys

    if parse_spec(spec)[0] == "factory" and os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
