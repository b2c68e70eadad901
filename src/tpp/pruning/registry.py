"""The registry of pruning methods, by name, for the CLI, recipes and jobs.

A :class:`Method` is a pruner (a :class:`~tpp.pruning.base.BasePruner` composition) plus up to two
hooks around the common pipeline (pretrained model -> [regularise] -> remove -> fine-tune):
``after_prune(model)`` (e.g. OrthP's re-initialisation) and ``finetune_penalty(model, **options)``
(an extra loss while fine-tuning). Its options are the fields of its ``config`` dataclass
(:mod:`tpp.pruning.options`): an option a method does not declare is an error, not ignored. The
options named in ``hook_options`` go to the fine-tuning hook, all others to the pruner.

A method registers itself where it is defined, with the :func:`pruning_method` decorator (as
timm's ``@register_model``)::

    @pruning_method("tpp", regularized=True, description="Trainability Preserving Pruning")
    class TPPPruner(ConfiguredPruner):
        Config = TPPConfig  # its options

The built-in methods live one per file in :mod:`tpp.pruning.methods`; every module there is imported
(and so registers itself) the first time the registry is asked for a method. Methods written outside
the package are made visible to the CLI and recipes by naming their modules in the ``TPP_PLUGINS``
environment variable (comma-separated, e.g. ``TPP_PLUGINS=my_methods.growing_l1``): importing runs
their code, so only modules the user names are ever imported.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from dataclasses import KW_ONLY, dataclass
from typing import Any, Callable, TypeVar

import torch
import torch.nn as nn

from tpp.errors import ConfigError
from tpp.pruning.options import Option, options_of

_COMMON = ("ratio", "scope", "ignored_layers", "global_ratio", "importance", "heads")


@dataclass(frozen=True)
class Method:
    """How one pruning method plugs into the common pipeline.

    ``pruner(model, example_inputs, ratio=, scope=, ignored_layers=, global_ratio=, **options)`` builds
    the pruner; ``regularized`` says whether it has a training phase before removal. The fields after
    ``pruner`` are keyword-only, so a bare positional ``True``/``False`` cannot be misread."""

    name: str
    pruner: Callable[..., Any]
    _: KW_ONLY
    regularized: bool
    description: str
    config: type | None = None
    after_prune: Callable[[nn.Module], None] | None = None
    finetune_penalty: Callable[..., Callable[[], torch.Tensor]] | None = None
    hook_options: tuple[str, ...] = ()

    @property
    def options(self) -> list[Option]:
        """The method's own options (besides ratio, scope, ignored_layers and global_ratio)."""
        return options_of(self.config)

    def make_pruner(self, model: nn.Module, example_inputs: Any, **options: Any) -> Any:
        """Build the pruner; an option the method does not declare is a :class:`ConfigError`."""
        self.check_options(options)
        return self.pruner(model, example_inputs, **{k: v for k, v in options.items() if k not in self.hook_options})

    def check_options(self, options: dict[str, Any]) -> None:
        """Raise :class:`ConfigError` for an option the method does not declare."""
        allowed = {o.name for o in self.options}
        unknown = sorted(k for k in options if k not in allowed and k not in _COMMON)
        if unknown:
            raise ConfigError(
                f"method {self.name!r} has no option {unknown[0]!r}"
                + (f"; its options are {', '.join(sorted(allowed))}" if allowed else "; it has none")
            )

    def make_finetune_penalty(self, model: nn.Module, **options: Any) -> Callable[[], torch.Tensor] | None:
        """The fine-tuning loss term of the method (None if it has none), given its options."""
        if self.finetune_penalty is None:
            return None
        self.check_options(options)
        return self.finetune_penalty(model, **{k: v for k, v in options.items() if k in self.hook_options})


_METHODS: dict[str, Method] = {}

F = TypeVar("F", bound=Callable[..., Any])


def register_method(method: Method) -> Method:
    """Add a method to the registry (names are unique)."""
    if method.name in _METHODS and _METHODS[method.name].pruner is not method.pruner:
        raise ConfigError(
            f"pruning method {method.name!r} is already registered (by "
            f"{_METHODS[method.name].pruner.__module__}); give the new one another name"
        )
    _METHODS[method.name] = method
    return method


def pruning_method(
    name: str,
    *,
    regularized: bool,
    description: str,
    config: type | None = None,
    after_prune: Callable[[nn.Module], None] | None = None,
    finetune_penalty: Callable[..., Callable[[], torch.Tensor]] | None = None,
    hook_options: tuple[str, ...] = (),
) -> Callable[[F], F]:
    """Decorator registering the decorated pruner class or factory function as the method ``name``.

    The arguments are the :class:`Method` fields; ``config`` defaults to the pruner's ``Config`` (a
    :class:`~tpp.pruning.configured.ConfiguredPruner` declares its options there). The pruner is returned
    unchanged. A second name for
    the same pruner can be registered with ``pruning_method(other, ...)(pruner)`` or
    :func:`register_method`."""

    def decorator(pruner: F) -> F:
        declared = config if config is not None else getattr(pruner, "Config", None)  # a ConfiguredPruner's own
        register_method(
            Method(
                name,
                pruner,
                regularized=regularized,
                description=description,
                config=declared,
                after_prune=after_prune,
                finetune_penalty=finetune_penalty,
                hook_options=tuple(hook_options),
            )
        )
        return pruner

    return decorator


def get_method(name: str) -> Method:
    """The registered method called ``name`` (ConfigError listing the valid names otherwise)."""
    _load_builtin()
    if name not in _METHODS:
        raise ConfigError(f"unknown pruning method {name!r}; choose from {', '.join(list_methods())}")
    return _METHODS[name]


def list_methods() -> list[str]:
    """Names of all registered methods."""
    _load_builtin()
    return sorted(_METHODS)


def all_methods() -> list[Method]:
    """Every registered method, by name."""
    return [_METHODS[name] for name in list_methods()]


_loaded = False


def _load_builtin() -> None:
    """Import the built-in method modules, then the ``TPP_PLUGINS`` ones (once all succeeded; a failed
    import raises and is retried at the next call, never leaving a silently partial registry)."""
    global _loaded
    if _loaded:
        return
    package = importlib.import_module("tpp.pruning.methods")
    modules = [
        f"{package.__name__}.{info.name}"
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name)
    ]
    plugins = [name.strip() for name in os.environ.get("TPP_PLUGINS", "").split(",") if name.strip()]
    for name in modules + plugins:
        try:
            importlib.import_module(name)
        except ImportError as error:
            if name in plugins:
                raise ConfigError(
                    f"TPP_PLUGINS names {name!r}, which cannot be imported ({error}); "
                    "put its folder on PYTHONPATH or fix the name"
                ) from error
            raise
    _loaded = True
