"""Models from other libraries: ``timm:NAME``, ``torchvision:NAME`` and ``hf:CLASS_OR_DIR``.

Each library is an optional extra, imported only when a spec names it; a missing one is a
one-line :class:`~tpp.errors.ModelError` with the ``pip install`` command. Nothing here reaches
the network unless ``pretrained=True`` (the CLI's ``--pretrained``); downloads that fail (no
connection, unknown name) become one-line errors too.
"""

from __future__ import annotations

import difflib
import importlib
from enum import Enum
from pathlib import Path
from types import ModuleType
from typing import Any, Mapping

from torch import nn

from tpp.errors import ModelError

# extra of pyproject.toml that provides each library
EXTRAS = {"timm": "timm", "torchvision": "vision", "transformers": "transformers", "safetensors": "transformers"}
# files from which transformers' from_pretrained reads a folder's weights
_HF_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def require(module: str) -> ModuleType:
    """Import an optional library, or raise a one-line :class:`ModelError` naming its extra."""
    top = module.split(".")[0]
    hint = f"pip install 'tpp-pruning[{EXTRAS.get(top, top)}]'"
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name and top.startswith(error.name.split(".")[0]):
            raise ModelError(f"{top} is not installed; {hint}") from None
        raise ModelError(f"{top} cannot be imported (it lacks {error.name}); {hint}") from None
    except Exception as error:  # e.g. a torchvision built for another torch fails while loading
        raise ModelError(
            f"{top} is installed but cannot be imported ({_first_line(error)}); reinstall it to match torch: {hint}"
        ) from None


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def _download_error(spec: str, error: BaseException) -> ModelError:
    return ModelError(
        f"could not get the pretrained weights of {spec} ({_first_line(error)}); --pretrained downloads "
        "them unless they are cached: check the name and the network connection, or drop --pretrained"
    )


def timm_model(name: str, num_classes: int, in_channels: int, pretrained: bool = False) -> nn.Module:
    """``timm.create_model(name, pretrained, num_classes, in_chans)``."""
    timm = require("timm")
    if not pretrained and hasattr(timm, "is_model") and not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=1)
        hint = f" Did you mean timm:{close[0]}?" if close else ""
        raise ModelError(f"timm has no model {name!r}.{hint} List them with timm.list_models().")
    try:
        return timm.create_model(name, pretrained=pretrained, num_classes=num_classes, in_chans=in_channels)
    except Exception as error:
        if pretrained:
            raise _download_error(f"timm:{name}", error) from error
        raise ModelError(f"timm could not build {name!r} ({_first_line(error)})") from error


def torchvision_model(name: str, num_classes: int, in_channels: int, pretrained: bool = False) -> nn.Module:
    """``torchvision.models.get_model(name)``; with ``pretrained`` the default weights, classifier
    replaced by a fresh one when ``num_classes`` differs from the weights' classes."""
    models = require("torchvision.models")
    if in_channels != 3:
        raise ModelError(
            f"torchvision:{name} takes 3-channel (RGB) images, not {in_channels}; "
            "feed it RGB images (e.g. --channels 3)"
        )
    names = models.list_models()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" Did you mean torchvision:{close[0]}?" if close else ""
        raise ModelError(f"torchvision has no model {name!r}.{hint} List them with torchvision.models.list_models().")
    if not pretrained:
        return models.get_model(name, weights=None, num_classes=num_classes)
    try:
        model = models.get_model(name, weights="DEFAULT")
    except Exception as error:
        raise _download_error(f"torchvision:{name}", error) from error
    return replace_classifier(model, num_classes, f"torchvision:{name}")


def replace_classifier(model: nn.Module, num_classes: int, spec: str) -> nn.Module:
    """Swap the last ``nn.Linear`` of ``model`` for a freshly initialised one with ``num_classes``
    outputs (no-op when it already has that many): pretrained weights on a new set of classes."""
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = name, module
    if last is None:
        raise ModelError(
            f"{spec} has no Linear classifier to resize to {num_classes} classes; "
            "use its own number of classes or another model"
        )
    name, layer = last
    if layer.out_features == num_classes:
        return model
    parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    setattr(parent, name.rpartition(".")[2], nn.Linear(layer.in_features, num_classes, bias=layer.bias is not None))
    return model


def hf_model(
    target: str,
    num_classes: int,
    in_channels: int,
    pretrained: bool = False,
    config: Mapping[str, Any] | None = None,
    class_name: str | None = None,
) -> nn.Module:
    """A ``transformers`` image-classification model, or the language model a folder holds.

    ``target`` is a folder (``config.json`` and, if present, weights: loaded with
    ``local_files_only=True``), a model class name such as ``ResNetForImageClassification``
    (its default configuration), or, with ``pretrained``, a Hugging Face Hub id (downloaded).
    ``config`` + ``class_name`` (as recorded in ``model.tpp_spec``) rebuild the same
    architecture without the folder, the Hub or any weights. ``num_labels`` (and ``num_channels``
    where the configuration has it) are set from ``num_classes`` and ``in_channels``, except for a
    folder whose ``config.json`` names a language model (``...ForCausalLM``, ``...LMHeadModel``,
    ``...ForMaskedLM`` in ``architectures``): that class is loaded as it is. A ``.gguf`` file
    (``hf:PATH/FILE.gguf``, needs the ``gguf`` package) is loaded as a causal language model with
    its weights dequantised to float32; its record rebuilds it from the configuration alone.
    """
    transformers = require("transformers")
    if config is not None:
        cls = _hf_class(transformers, class_name or "AutoModelForImageClassification", f"hf:{target}")
        cfg = _hf_config_from_dict(transformers, config, f"hf:{target}")
        if cls.__name__.endswith(_LANGUAGE_MODEL_SUFFIXES):
            return _hf_build(cls, cfg)
        return _hf_build(cls, _sized(cfg, num_classes, in_channels, f"hf:{target}"))
    folder = Path(target).expanduser()
    if folder.suffix.lower() == ".gguf":
        return _gguf_model(transformers, folder, f"hf:{target}")
    auto = transformers.AutoModelForImageClassification
    if folder.is_dir():
        try:
            cfg = transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True)
        except Exception as error:
            raise ModelError(
                f"hf:{target}: cannot read its config.json ({_first_line(error)}); "
                "point hf: at a folder written by save_pretrained()"
            ) from None
        weights = any((folder / name).is_file() for name in _HF_WEIGHT_FILES)
        language = _language_model_class(transformers, cfg, f"hf:{target}")
        if language is not None:  # a language model has no classes or image channels to resize
            return _hf_load(language, folder, cfg, f"hf:{target}") if weights else _hf_build(language, cfg)
        before = (cfg.num_labels, getattr(cfg, "num_channels", in_channels))
        cfg = _sized(cfg, num_classes, in_channels, f"hf:{target}")
        if not weights:
            return _hf_build(auto, cfg)
        try:  # a new number of classes (or channels) re-initialises the layers whose shapes change
            return auto.from_pretrained(
                str(folder),
                config=cfg,
                local_files_only=True,
                ignore_mismatched_sizes=before != (num_classes, in_channels),
            )
        except Exception as error:
            raise ModelError(f"hf:{target}: cannot load the weights in the folder ({_first_line(error)})") from None
    if target.isidentifier():
        if pretrained:
            raise ModelError(
                f"hf:{target} is a class: it builds a fresh model from the default configuration; "
                "for pretrained weights pass a folder (hf:DIR) or a Hub id (hf:org/name)"
            )
        cls = _hf_class(transformers, target, f"hf:{target}")
        return _hf_build(cls, _sized(cls.config_class(), num_classes, in_channels, f"hf:{target}"))
    if not pretrained:
        raise ModelError(
            f"hf:{target} is neither a folder nor a transformers class name; pass a folder holding config.json, "
            f"a class such as hf:ResNetForImageClassification, or add --pretrained to download {target} "
            "from the Hugging Face Hub"
        )
    try:
        cfg = transformers.AutoConfig.from_pretrained(target)
        before = (cfg.num_labels, getattr(cfg, "num_channels", in_channels))
        cfg = _sized(cfg, num_classes, in_channels, f"hf:{target}")
        return auto.from_pretrained(target, config=cfg, ignore_mismatched_sizes=before != (num_classes, in_channels))
    except ModelError:
        raise
    except Exception as error:
        raise _download_error(f"hf:{target}", error) from None


# configuration entries that describe how weights were *stored*, not the architecture: a GGUF-loaded
# model carries a quantization_config (its weights are dequantised to floats by then), whose enum
# values would also make the file hold a class reference that weights-only loading refuses
_NOT_ARCHITECTURE = ("quantization_config",)


# class-name endings of transformers language models (causal and masked), as config.architectures names them
_LANGUAGE_MODEL_SUFFIXES = ("ForCausalLM", "LMHeadModel", "ForMaskedLM")


def _language_model_class(transformers: ModuleType, cfg: Any, spec: str) -> Any:
    """The language-model class a folder's ``config.json`` names in ``architectures``, or None."""
    name = next(iter(getattr(cfg, "architectures", None) or []), None)
    if not isinstance(name, str) or not name.endswith(_LANGUAGE_MODEL_SUFFIXES):
        return None
    return _hf_class(transformers, name, spec)


def _gguf_model(transformers: ModuleType, path: Path, spec: str) -> nn.Module:
    """``AutoModelForCausalLM.from_pretrained(parent, gguf_file=name)``: weights dequantised to float32."""
    if not path.is_file():
        raise ModelError(f"{spec}: {path} is not a file; pass the path of an existing .gguf file")
    try:
        importlib.import_module("gguf")
    except ImportError:
        raise ModelError(f"{spec}: reading .gguf files needs the gguf package; pip install gguf") from None
    try:
        return transformers.AutoModelForCausalLM.from_pretrained(
            str(path.parent), gguf_file=path.name, local_files_only=True
        )
    except Exception as error:
        raise ModelError(
            f"{spec}: cannot load the language model in {path.name} ({_first_line(error)}); "
            "pass a .gguf file of an architecture transformers supports"
        ) from None


def _hf_load(cls: Any, folder: Path, cfg: Any, spec: str) -> nn.Module:
    try:
        return cls.from_pretrained(str(folder), config=cfg, local_files_only=True)
    except Exception as error:
        raise ModelError(f"{spec}: cannot load the weights in the folder ({_first_line(error)})") from None


def hf_record(model: nn.Module) -> dict[str, Any]:
    """Plain data from which :func:`hf_model` rebuilds the architecture of ``model``."""
    config = {k: v for k, v in model.config.to_diff_dict().items() if k not in _NOT_ARCHITECTURE}
    return {"hf_class": type(model).__name__, "hf_config": _plain(config)}


def _hf_class(transformers: ModuleType, name: str, spec: str) -> Any:
    cls = getattr(transformers, name, None)
    base = getattr(transformers, "PreTrainedModel")
    if name.startswith("Auto") and cls is not None:
        return cls
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ModelError(
            f"{spec}: transformers has no model class {name!r}; use a class such as "
            "ResNetForImageClassification, or a folder written by save_pretrained()"
        )
    return cls


def _hf_config_from_dict(transformers: ModuleType, data: Mapping[str, Any], spec: str) -> Any:
    values = dict(data)
    model_type = values.pop("model_type", None)
    try:
        return transformers.AutoConfig.for_model(model_type, **values)
    except Exception as error:
        raise ModelError(
            f"{spec}: this transformers cannot rebuild the recorded configuration "
            f"({_first_line(error)}); install the transformers version that saved it"
        ) from None


def _hf_build(cls: Any, cfg: Any) -> nn.Module:
    return cls.from_config(cfg) if hasattr(cls, "from_config") and cls.__name__.startswith("Auto") else cls(cfg)


def _sized(cfg: Any, num_classes: int, in_channels: int, spec: str) -> Any:
    if cfg.num_labels != num_classes:
        cfg.num_labels = num_classes  # also resets id2label / label2id
    if getattr(cfg, "num_channels", in_channels) != in_channels:
        cfg.num_channels = in_channels
    elif not hasattr(cfg, "num_channels") and in_channels != 3:
        raise ModelError(
            f"{spec} takes 3-channel images and its configuration has no num_channels; "
            "feed it RGB images (e.g. --channels 3)"
        )
    return cfg


def _plain(value: Any) -> Any:
    """``value`` as nested dicts/lists of str/int/float/bool/None, as weights-only loading accepts."""
    if isinstance(value, Mapping):
        return {k if isinstance(k, (str, int)) else str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Enum):  # e.g. a str-valued enum: pickled, it would name its class
        return _plain(value.value)
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, (str, int, float)):  # a subclass: store the plain value
        return next(t for t in (bool, str, int, float) if isinstance(value, t))(value)
    return str(value)
