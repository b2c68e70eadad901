"""Unpickling that never runs code from the file: an allowlist of harmless callables, inert
placeholders for everything else.

Two users: the CIFAR batch reader (plain containers and numpy arrays, nothing else allowed) and
the importer of whole pickled ``nn.Module`` objects (:func:`load_torch_file`), where every class
the file names (``model.resnet_cifar10.ResNet``, ``torch.nn.modules.conv.Conv2d``, ...) becomes a
:class:`Placeholder` that only records the state pickle hands it.

Why this is safe: pickle can only call what ``find_class`` returns (``GLOBAL``, ``STACK_GLOBAL``,
``INST``, ``OBJ`` and the ``EXT*`` opcodes all go through it; see the warning and "Restricting
Globals" in https://docs.python.org/3/library/pickle.html). Here it returns either an allowlisted
callable that only builds data (containers, tensors from their storages, numpy arrays) or a
placeholder class whose instances can be *created* (``NEWOBJ``, how protocol-2 pickles rebuild
ordinary objects, calls only ``object.__new__``) but whose *call* (``REDUCE``, how a pickle runs a
function) is refused with :class:`UnsafePickleError`.
"""

from __future__ import annotations

import _compat_pickle
import builtins
import io
import pickle
import types
import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch

from tpp.errors import CheckpointError

__all__ = [
    "BUILTIN_GLOBALS",
    "NUMPY_GLOBALS",
    "Placeholder",
    "PlaceholderUnpickler",
    "RestrictedUnpickler",
    "UnsafePickleError",
    "is_placeholder_module",
    "load_torch_file",
    "placeholder_state_dict",
]


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle would call (or names) something that is not allowlisted: code tpp will not run."""

    def __init__(self, name: str, action: str = "call") -> None:
        super().__init__(f"it would {action} {name}")
        self.name = name


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """Stand-in for ``_codecs.encode``: protocol < 3 pickles store ``bytes`` this way."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError("global '_codecs.encode' is allowed only for latin1 text")
    return text.encode("latin1")


def _builtin_globals() -> dict[tuple[str, str], Any]:
    names = (
        "dict",
        "list",
        "tuple",
        "set",
        "frozenset",
        "bytes",
        "bytearray",
        "str",
        "int",
        "float",
        "bool",
        "complex",
    )
    allowed: dict[tuple[str, str], Any] = {("_codecs", "encode"): _latin1_encode}
    allowed.update({("builtins", name): getattr(builtins, name) for name in names})
    return allowed


def _numpy_globals() -> dict[tuple[str, str], Any]:
    """The few numpy callables an ndarray/scalar pickle needs, under their old and new module names."""
    reconstruct = np.empty(0).__reduce__()[0]  # multiarray._reconstruct, whatever its module
    frombuffer = np.empty(1).__reduce_ex__(5)[0]  # numeric._frombuffer (protocol 5 pickles)
    scalar = np.float64(0).__reduce__()[0]  # multiarray.scalar, for pickled numpy scalars
    allowed: dict[tuple[str, str], Any] = {}
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{core}.numeric", "_frombuffer")] = frombuffer
        allowed[(f"{core}.multiarray", "scalar")] = scalar
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    return allowed


BUILTIN_GLOBALS: Mapping[tuple[str, str], Any] = types.MappingProxyType(_builtin_globals())
"""Builtin containers/scalars and latin1 ``bytes`` decoding: constructors of plain data."""

NUMPY_GLOBALS: Mapping[tuple[str, str], Any] = types.MappingProxyType(_numpy_globals())
"""numpy's array, dtype and scalar reconstruction (data only)."""

# What a torch.save of tensors, Parameters and nn.Module objects needs beyond builtins. Storage
# classes are resolved by torch.load itself (it maps every "*Storage" name to a dtype tag before
# asking this unpickler). Deliberately absent: _rebuild_parameter_with_state and
# torch._tensor._rebuild_from_type_v2, which set arbitrary attributes / build arbitrary subclasses.
_TORCH_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch", "Size"): torch.Size,
}

# Modules whose mere mention marks a file as an exploit rather than a model. Not the safety
# mechanism (placeholders never run anyway), only a clearer refusal before anything is built.
_CODE_MODULES = frozenset(
    {
        "builtins",
        "os",
        "posix",
        "nt",
        "sys",
        "subprocess",
        "importlib",
        "runpy",
        "shutil",
        "socket",
        "ctypes",
        "pty",
        "code",
        "codeop",
        "pickle",
        "_pickle",
        "marshal",
        "webbrowser",
    }
)


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only the globals in :attr:`allowed`.

    Subclasses set ``allowed`` and may override :meth:`unknown_global` (by default a refusal).
    """

    allowed: ClassVar[Mapping[tuple[str, str], Any]] = BUILTIN_GLOBALS

    def find_class(self, module: str, name: str) -> Any:
        # protocol < 3 pickles use Python 2 names (__builtin__.set, commands.Popen); translate them
        # as pickle.Unpickler.find_class does, so the allowlist and the refusals see Python 3 names
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        found = self.allowed.get((module, name))
        if found is not None:
            return found
        return self.unknown_global(module, name)

    def unknown_global(self, module: str, name: str) -> Any:
        """What a global outside the allowlist resolves to; raises ``UnpicklingError`` here."""
        raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed")


class Placeholder:
    """Inert stand-in for a class or function named in a pickle.

    Creating an instance (``NEWOBJ``) runs nothing; ``BUILD`` stores the pickled state in
    :attr:`tpp_state`; calling the class itself (``REDUCE``) raises :class:`UnsafePickleError`.
    ``tpp_global`` is the ``module.name`` the file referred to.
    """

    __slots__ = ("tpp_state",)
    tpp_global: ClassVar[str] = "?"
    # torch.load reads this flag of pickled nn.Module classes in legacy (pre-1.6) files
    dump_patches: ClassVar[bool] = False

    def __new__(cls, *args: Any, **kwargs: Any) -> Placeholder:
        self = object.__new__(cls)
        self.tpp_state = None
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # only a call of the class reaches __init__ (NEWOBJ uses __new__ alone): REDUCE = run code
        raise UnsafePickleError(type(self).tpp_global)

    def __setstate__(self, state: Any) -> None:
        self.tpp_state = state

    def __repr__(self) -> str:
        return f"<placeholder {type(self).tpp_global}>"


class PlaceholderUnpickler(RestrictedUnpickler):
    """Allowlist of builtins, numpy and torch tensor rebuilding; a :class:`Placeholder` subclass
    for every other global; modules that only an exploit would name are refused outright."""

    allowed: ClassVar[Mapping[tuple[str, str], Any]] = types.MappingProxyType(
        {**BUILTIN_GLOBALS, **NUMPY_GLOBALS, **_TORCH_GLOBALS}
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._placeholders: dict[str, type[Placeholder]] = {}

    def unknown_global(self, module: str, name: str) -> Any:
        full = f"{module}.{name}"
        if module.split(".")[0] in _CODE_MODULES:
            raise UnsafePickleError(full, "use")
        if full not in self._placeholders:
            self._placeholders[full] = type(name, (Placeholder,), {"__slots__": (), "tpp_global": full})
        return self._placeholders[full]


def _pickle_module() -> types.ModuleType:
    """A stand-in for the ``pickle`` module handed to ``torch.load(pickle_module=...)``."""
    module = types.ModuleType("tpp_placeholder_pickle")
    module.Unpickler = PlaceholderUnpickler  # type: ignore[attr-defined]
    module.load = lambda file, **kwargs: PlaceholderUnpickler(file, **kwargs).load()  # type: ignore[attr-defined]
    module.UnpicklingError = pickle.UnpicklingError  # type: ignore[attr-defined]
    return module


def _is_torchscript(data: bytes) -> bool:
    if not data.startswith(b"PK\x03\x04"):
        return False
    try:
        names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    except (zipfile.BadZipFile, ValueError, OSError, EOFError):
        return False  # torch.load reports the broken archive
    return any(n.endswith("/constants.pkl") or "/code/" in n for n in names)


def load_torch_file(path: str, data: bytes | None = None) -> Any:
    """Load a ``torch.save`` file (zip or legacy format) without running any code from it.

    torch's own reader handles the file formats and tensor storages; only the unpickler is
    tpp's. ``torch.load(weights_only=True)`` cannot be used: it refuses every class it does not
    know instead of standing in for it, and refuses the ``("module", cls, ...)`` persistent ids
    of whole modules saved in the legacy format outright. So tpp passes its own unpickler through
    ``torch.load``'s documented ``pickle_module`` argument (which requires ``weights_only=False``;
    the restriction lives in :class:`PlaceholderUnpickler` instead). TorchScript archives, which
    ``torch.load`` would hand to ``torch.jit.load``, are refused beforehand. The bytes are read
    once and parsed from memory, so what was checked is what gets loaded.

    Returns:
        The unpickled object; pickled modules and other objects appear as :class:`Placeholder`.

    Raises:
        CheckpointError: unreadable, corrupt or truncated file, TorchScript archive, or a pickle
            that would call something outside the allowlist (one line naming it).
    """
    if data is None:
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError as error:
            raise CheckpointError(f"cannot read {path}: {error.strerror or error}") from None
    if _is_torchscript(data):
        raise CheckpointError(
            f"{path} is a TorchScript archive (it contains code), not a torch.save checkpoint; "
            "tpp imports only checkpoints written by torch.save"
        )
    try:
        with warnings.catch_warnings():
            # legacy files: torch compares the saved source of each module class with the
            # placeholder's, which has none; the comparison is irrelevant to an import
            warnings.filterwarnings("ignore", message="Couldn't retrieve source code")
            warnings.filterwarnings("ignore", category=torch.serialization.SourceChangeWarning)
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False, pickle_module=_pickle_module())
    except UnsafePickleError as error:
        raise CheckpointError(
            f"refused {path}: it holds code that tpp will not run ({error}); "
            "only load files from a source you trust, and re-download the official checkpoint"
        ) from None
    except RuntimeError as error:
        if "explicit pickle_module" not in str(error):
            raise _unreadable(path, error) from None
        raise CheckpointError(
            "TORCH_FORCE_WEIGHTS_ONLY_LOAD is set, which rules out tpp's placeholder unpickler; "
            "unset it for this command"
        ) from None
    except Exception as error:  # noqa: BLE001 - any failure of a parser fed untrusted bytes
        raise _unreadable(path, error) from None


def _unreadable(path: str, error: Exception) -> CheckpointError:
    detail = " ".join(str(error).split()).split(". ")[0][:160]
    return CheckpointError(
        f"{path} is not a readable PyTorch checkpoint ({type(error).__name__}: {detail}); "
        "is it truncated or another kind of file? Download it again"
    )


def _module_state(obj: Any) -> dict[str, Any] | None:
    state = obj.tpp_state if isinstance(obj, Placeholder) else None
    if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict):
        state = state[0]  # (dict state, slot state) form of BUILD
    if isinstance(state, dict) and isinstance(state.get("_modules"), Mapping):
        return state
    return None


def is_placeholder_module(obj: Any) -> bool:
    """Whether ``obj`` is a placeholder for a pickled ``nn.Module`` (its state has ``_modules``)."""
    return _module_state(obj) is not None


def placeholder_state_dict(root: Any) -> dict[str, torch.Tensor]:
    """The ``state_dict`` a pickled ``nn.Module`` had, read from its placeholder tree.

    A pickled module keeps its tensors in the ``_parameters`` and ``_buffers`` entries of its
    state and its children in ``_modules``; buffers listed in ``_non_persistent_buffers_set``
    are skipped as ``nn.Module.state_dict`` does. Shared submodules are visited once.
    """
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()

    def visit(obj: Any, prefix: str) -> None:
        state = _module_state(obj)
        if state is None or id(obj) in seen:
            return
        seen.add(id(obj))
        skip = state.get("_non_persistent_buffers_set") or set()
        for group in ("_parameters", "_buffers"):
            entries = state.get(group)
            if not isinstance(entries, Mapping):
                continue
            for name, value in entries.items():
                if torch.is_tensor(value) and not (group == "_buffers" and name in skip):
                    out[prefix + str(name)] = value.detach()
        for name, child in state["_modules"].items():
            visit(child, f"{prefix}{name}.")

    visit(root, "")
    return out
