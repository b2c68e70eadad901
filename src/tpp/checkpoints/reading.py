"""Read a torch file as data only, with one true line for every way it can fail.

``torch.load(weights_only=True)`` never runs code, but what it raises for a bad file is anything
from ``UnpicklingError`` to ``KeyError: 101`` (a text file) or ``RecursionError``, and it warns on
stderr about pickle protocols it does not expect. :func:`read_weights_only` turns all of that into
a :class:`~tpp.errors.CheckpointError` that says whether the file is missing, unreadable, or
holds pickled code (a reference to a function or class outside torch's weights-only allowlist,
e.g. ``posix.system``), which tpp will never run.

Code references are found by the unpickler's own message or, when it stops earlier (an opcode
it does not support), by listing the pickle's opcodes with :mod:`pickletools`, which only
parses and never imports or calls anything.
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any, Iterator

import torch

from tpp.errors import CheckpointError
from tpp.util.archive import archive_damage
from tpp.util.atomic import describe_os_error
from tpp.util.files import not_a_regular_file

# pickles larger than this are not scanned for code references (a checkpoint's pickle holds
# only the structure; the tensor bytes live outside it)
_SCAN_LIMIT = 64 * 2**20
_TORCH_GLOBAL = re.compile(r"GLOBAL ([A-Za-z_][\w.]*\w)")
_STRING_OPS = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8"}
_GET_OPS = {"GET", "BINGET", "LONG_BINGET"}
_PUT_OPS = {"PUT", "BINPUT", "LONG_BINPUT"}


def read_weights_only(
    path: str | os.PathLike[str], *, kind: str = "checkpoint", fix: str = "", map_location: Any = "cpu"
) -> Any:
    """``torch.load(path, weights_only=True)``, or a one-line :class:`CheckpointError`.

    Args:
        path: the file.
        kind: what the file should be, for the messages ("checkpoint", "pruned model").
        fix: what to do about an unreadable file (appended to that message).
        map_location: as for :func:`torch.load`.
    """
    path = Path(path)
    fix = fix or "re-create it or point --checkpoint at another file"
    if not path.exists():
        raise CheckpointError(f"{kind} {path} does not exist; check the path given to --checkpoint")
    if path.is_dir():
        inside = next((path / n for n in ("pruned_model.pt", "best.pt", "last.pt") if (path / n).is_file()), None)
        example = f" (e.g. {inside})" if inside else ""
        raise CheckpointError(f"{kind} {path} is a directory; point --checkpoint at a .pt file in it{example}")
    other = not_a_regular_file(path)
    if other is not None:  # a FIFO would block the first read forever, a device never end
        raise CheckpointError(f"{kind} {path} is {other}, not a regular file; point --checkpoint at a .pt file")
    damage = archive_damage(path)
    if damage:
        raise CheckpointError(f"{path} is not a readable tpp {kind} ({damage}); {fix}")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error below says it all
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except OSError:
        reason = _read_problem(path)
        if reason:
            raise CheckpointError(f"cannot read {kind} {path}: {reason}") from None
        # the bytes are readable: torch's C++ reader reports some malformed files as OSError
        raise CheckpointError(f"{path} is not a readable tpp {kind} (corrupt or truncated?); {fix}") from None
    except pickle.UnpicklingError as error:
        found = _TORCH_GLOBAL.search(str(error))
        reference = found.group(1) if found else find_code_reference(path)
        if reference:
            raise holds_code(path, reference) from None
        raise CheckpointError(f"{path} is not a readable tpp {kind} (corrupt or truncated?); {fix}") from None
    except Exception:  # noqa: BLE001 - a damaged file makes torch raise almost any type
        reference = find_code_reference(path)
        if reference:
            raise holds_code(path, reference) from None
        raise CheckpointError(f"{path} is not a readable tpp {kind} (corrupt or truncated?); {fix}") from None


def _read_problem(path: Path) -> str | None:
    try:
        with open(path, "rb") as handle:
            while handle.read(2**24):
                pass
    except OSError as error:
        return describe_os_error(error)
    return None


def holds_code(path: Path, reference: str) -> CheckpointError:
    """The error for a file whose pickle would call ``reference`` if it were unpickled."""
    return CheckpointError(
        f"{path} holds pickled code (it would call {reference}) that tpp will not run: checkpoints are read as "
        "weights only; if you trust its source, re-save just the weights, e.g. torch.save(model.state_dict(), path)"
    )


def find_code_reference(path: str | os.PathLike[str]) -> str | None:
    """The first ``module.name`` a pickle in ``path`` would import that torch's weights-only
    unpickler does not allow, or None. Parses opcodes only; nothing is imported or called."""
    allowed = _allowed_globals()
    try:
        for data in _pickle_streams(Path(path)):
            for reference in _references(data):
                if reference not in allowed:
                    return reference
    except Exception:  # noqa: BLE001 - a damaged container simply has nothing more to scan
        return None
    return None


def _allowed_globals() -> set[str]:
    try:  # private, hence guarded: without it every reference counts as code
        from torch import _weights_only_unpickler as unpickler

        allowed = set(unpickler._get_allowed_globals())
        allowed.update(unpickler._get_user_allowed_globals())
        return allowed
    except Exception:  # noqa: BLE001
        return set()


def _pickle_streams(path: Path) -> Iterator[bytes]:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.filename.endswith(".pkl") and info.file_size <= _SCAN_LIMIT:
                    with archive.open(info) as member:
                        yield member.read(_SCAN_LIMIT)
    else:
        with open(path, "rb") as handle:
            yield handle.read(_SCAN_LIMIT)


def _references(data: bytes) -> Iterator[str]:
    """``module.name`` of every GLOBAL / STACK_GLOBAL / INST in the pickles of ``data`` (the legacy
    torch format is several pickles in a row)."""
    stream = io.BytesIO(data)
    while stream.tell() < len(data):
        strings: list[str] = []  # recent string pushes: the operands of STACK_GLOBAL
        memo: dict[Any, str] = {}
        memoized = 0
        last: str | None = None  # the value just pushed, if it is a string
        try:
            for opcode, arg, _ in pickletools.genops(stream):
                name, pushed = opcode.name, None
                if name in ("GLOBAL", "INST"):
                    yield str(arg).replace(" ", ".")
                elif name == "STACK_GLOBAL" and len(strings) >= 2:
                    yield f"{strings[-2]}.{strings[-1]}"
                elif name in _STRING_OPS and isinstance(arg, (str, bytes)):
                    pushed = arg if isinstance(arg, str) else arg.decode("latin-1")
                elif name in _PUT_OPS or name == "MEMOIZE":  # stores the top of the stack, pushes nothing
                    key = arg if name in _PUT_OPS else memoized
                    memoized += name == "MEMOIZE"
                    if last is not None:
                        memo[key] = last
                    continue
                elif name in _GET_OPS:
                    pushed = memo.get(arg)
                if pushed is not None:
                    strings.append(pushed)
                    del strings[:-2]
                last = pushed
        except Exception:  # noqa: BLE001 - stop at the first damaged opcode
            return


# ------------------------------------------------------------------ what a loaded payload may hold
_MAX_EXAMPLE_ELEMENTS = 2**26  # example inputs recorded in a plan: ImageNet at batch 2 is 3e5
_MAPPINGS = ("config", "extra", "optimizer", "rng", "amp")
_COUNTERS = ("epoch", "global_step", "best_epoch")
# a record's classes and channels reach model builders (a user's factory among them) before any
# weight is compared: bounded here, far above any real dataset (ImageNet-21k: 21841 classes)
_MAX_CLASSES = 10**6
_MAX_CHANNELS = 10**4
_ACCURACIES = ("best_top1", "last_top1", "last_top5")


def check_layout(obj: Any, path: Path, kind: str = "checkpoint", fix: str = "") -> dict[str, Any]:
    """``obj`` if it has the layout of a tpp checkpoint, pruned model or raw state_dict, else a
    one-line :class:`CheckpointError` naming the first entry that is wrong.

    Only the entries tpp reads are checked (their types and ranges), so that a damaged or
    hand-made file is refused here rather than failing deep inside model building."""
    fix = fix or "re-create it or point --checkpoint at another file"

    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"{path} is not a readable tpp {kind} ({what}); {fix}")

    if not isinstance(obj, dict) or not obj:
        raise bad(
            f"it holds {'an empty dict' if isinstance(obj, dict) else 'a ' + type(obj).__name__}, not a dict of weights"
        )
    if not all(isinstance(key, str) for key in obj):
        raise bad("a top-level key is not a string")
    _check_tensors(obj, "", bad)
    for key in ("model", "state_dict"):
        weights = obj.get(key)
        if key in obj and not torch.is_tensor(weights):
            if not isinstance(weights, dict) or not all(isinstance(k, str) for k in weights):
                raise bad(f"'{key}' is not a mapping of parameter names to tensors")
            _check_tensors(weights, f"{key}.", bad)
    for key in ("tpp_spec", "spec"):
        if key in obj:
            _check_spec(obj[key], key, bad)
    for key in ("tpp_plan", "plan"):
        if key in obj:
            _check_plan(obj[key], key, bad)
    for key in _MAPPINGS:
        if key in obj and obj[key] is not None and not isinstance(obj[key], dict):
            raise bad(f"'{key}' is a {type(obj[key]).__name__}, not a mapping")
    for key in _COUNTERS:
        if key in obj and obj[key] is not None and not _whole(obj[key]):
            raise bad(f"'{key}' is {obj[key]!r}, not a whole number")
    for key in _ACCURACIES:
        if key in obj and obj[key] is not None and not _real(obj[key]):
            raise bad(f"'{key}' is {obj[key]!r}, not a number")
    return obj


def _check_tensors(weights: dict[str, Any], prefix: str, bad: Any) -> None:
    """Weights are dense tensors with values: a sparse or meta tensor would fail (or be densified
    silently) deep inside ``load_state_dict``."""
    for name, value in weights.items():
        if not torch.is_tensor(value):
            continue
        if value.layout != torch.strided:
            layout = str(value.layout).removeprefix("torch.")
            raise bad(f"'{prefix}{name}' is a {layout} tensor, not a dense one; save dense weights (tensor.to_dense())")
        if value.is_meta:
            raise bad(
                f"'{prefix}{name}' is a meta tensor, which holds no values; save the weights of a model that "
                "was materialised"
            )


def _whole(value: Any, minimum: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_spec(spec: Any, key: str, bad: Any) -> None:
    if spec is None:
        return
    if not isinstance(spec, dict) or not all(isinstance(k, str) for k in spec):
        raise bad(f"'{key}' is not a mapping of model arguments")
    if "name" in spec and not isinstance(spec["name"], str):
        raise bad(f"'{key}' names the model {spec['name']!r}, not a string")
    for field, most in (("num_classes", _MAX_CLASSES), ("in_channels", _MAX_CHANNELS)):
        if field in spec and not _whole(spec[field], minimum=1):
            raise bad(f"'{key}' gives {field} {spec[field]!r}")
        if field in spec and spec[field] > most:
            raise bad(f"'{key}' gives {field} {spec[field]}, more than the {most} tpp builds a model for")
    for name, value in spec.items():  # nested plain data (e.g. a recorded configuration) is fine
        if not isinstance(value, (str, int, float, bool, type(None), list, tuple, dict)):
            raise bad(f"'{key}' gives {name} a {type(value).__name__}")


def _check_plan(plan: Any, key: str, bad: Any) -> None:
    if plan is None:
        return
    if not isinstance(plan, dict):
        raise bad(f"'{key}' is not a channel plan")
    history = plan.get("history") or []
    if not isinstance(history, list):
        raise bad(f"'{key}' history is not a list")
    for step in history:
        if (
            not isinstance(step, (list, tuple))
            or len(step) != 3
            or not isinstance(step[0], str)
            or not isinstance(step[1], bool)
            or not isinstance(step[2], (list, tuple))
            or not all(_whole(i) for i in step[2])
        ):
            raise bad(f"'{key}' has a malformed history entry")
    # the example inputs the plan was traced with: {"kind", "items": [{"shape", "dtype"}]} or, in
    # older files, a list of shapes
    signature = plan.get("inputs", plan.get("input_shapes"))
    if isinstance(signature, dict):
        items = signature.get("items")
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise bad(f"'{key}' records malformed example inputs")
        for item in items:
            dtype = item.get("dtype", "float32")
            if not isinstance(dtype, str) or not isinstance(getattr(torch, dtype, None), torch.dtype):
                raise bad(f"'{key}' records an unknown input dtype {dtype!r}")
        shapes = [item.get("shape") for item in items]
    else:
        shapes = signature
    if history and (not isinstance(shapes, (list, tuple)) or not shapes):
        raise bad(f"'{key}' records no example input shapes")
    for shape in shapes or ():
        if not isinstance(shape, (list, tuple)) or not shape or not all(_whole(d, minimum=1) for d in shape):
            raise bad(f"'{key}' records a malformed input shape {shape!r}")
        elements = 1
        for dim in shape:
            elements *= dim
        if elements > _MAX_EXAMPLE_ELEMENTS:
            raise bad(f"'{key}' records an implausibly large input shape {list(shape)}")
