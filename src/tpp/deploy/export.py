"""ONNX export of (pruned) models, checked against PyTorch with ONNX Runtime.

Uses the TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``), which needs the
``onnx`` package but not ``onnxscript``; ONNX Runtime verifies the file and times it. Both come
with the optional extra ``tpp-pruning[onnx]`` and are imported lazily. Pruned models need nothing special: Torch-Pruning removes
channels physically, and the option-A shortcut's channel gather (``index_select`` with a
constant index buffer) exports as an ordinary ``Gather``.
"""

from __future__ import annotations

import importlib
import io
import os
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import nn

from tpp.errors import CheckpointError, TPPError
from tpp.util.inputs import logits_of
from tpp.util.modules import unwrap
from tpp.util.owned import GENERATOR, refuse_foreign

ONNX_EXTRA_HINT = "pip install 'tpp-pruning[onnx]'"


class ExportError(TPPError):
    """A model cannot be exported, written, or does not match its ONNX file."""


class MissingDependencyError(TPPError):
    """An optional package (e.g. onnxruntime) is needed but not installed."""


def _require(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError:
        raise MissingDependencyError(f"{name} is not installed; {ONNX_EXTRA_HINT}") from None


def import_onnxruntime() -> ModuleType:
    """Import ``onnxruntime`` or raise :class:`MissingDependencyError` with the install command."""
    return _require("onnxruntime")


def onnxruntime_available() -> bool:
    """Whether ``onnxruntime`` can be imported."""
    try:
        import_onnxruntime()
    except MissingDependencyError:
        return False
    return True


def _as_tuple(inputs: Any) -> tuple[torch.Tensor, ...]:
    if torch.is_tensor(inputs):
        return (inputs,)
    if isinstance(inputs, (tuple, list)) and all(torch.is_tensor(t) for t in inputs):
        return tuple(inputs)
    raise ExportError("example_inputs must be a tensor or a tuple of tensors")


def opset_range() -> tuple[int, int]:
    """The ONNX opset versions torch's TorchScript exporter writes (7..20 on torch 2.x)."""
    try:
        from torch.onnx import _constants

        return int(_constants.ONNX_MIN_OPSET), int(_constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET)
    except (ImportError, AttributeError):  # private names: the values of torch 2.1-2.13
        return 7, 20


def check_opset(opset: int) -> None:
    """Refuse an opset the exporter cannot write, naming the supported range.

    Raises:
        ExportError: ``opset`` outside :func:`opset_range`.
    """
    low, high = opset_range()
    if isinstance(opset, bool) or not isinstance(opset, int) or not low <= opset <= high:
        raise ExportError(
            f"ONNX opset {opset!r} is not supported by this torch's exporter; pass --opset (opset=) "
            f"between {low} and {high} (17, the default, suits most runtimes)"
        )


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def _export_bytes(model: nn.Module, inputs: tuple[torch.Tensor, ...], opset: int, dynamic_batch: bool) -> bytes:
    input_names = ["input"] if len(inputs) == 1 else [f"input{i}" for i in range(len(inputs))]
    dynamic_axes = {name: {0: "batch"} for name in [*input_names, "output"]} if dynamic_batch else None
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # the TorchScript exporter announces its own deprecation; the file it writes is standard ONNX
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        torch.onnx.export(
            model,
            inputs,
            buffer,
            opset_version=opset,
            input_names=input_names,
            output_names=["output"],
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
            dynamo=False,
        )
    return buffer.getvalue()


def _mark_as_ours(data: bytes) -> bytes:
    """Add the ``generator: tpp`` metadata property that lets a later export replace the file."""
    onnx = _require("onnx")
    proto = onnx.load_from_string(data)
    entry = proto.metadata_props.add()
    entry.key, entry.value = "generator", GENERATOR
    return proto.SerializeToString()


def onnx_is_ours(path: Path) -> bool:
    """Whether the ONNX file at ``path`` was written by tpp (its ``generator`` metadata)."""
    try:
        proto = _require("onnx").load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - not an ONNX file at all, or unreadable
        return False
    return any(p.key == "generator" and p.value.startswith(GENERATOR) for p in proto.metadata_props)


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """``max|actual - expected| / max|expected|`` (absolute error when ``expected`` is all zero)."""
    scale = float(np.abs(expected).max()) if expected.size else 0.0
    diff = float(np.abs(actual - expected).max()) if expected.size else 0.0
    return diff / scale if scale > 0 else diff


def verify_onnx(model: nn.Module, onnx_model: str | os.PathLike | bytes, inputs: Any, rtol: float = 1e-4) -> float:
    """Run ``inputs`` through ``model`` (eval) and the ONNX model on ORT's CPU provider.

    Returns the relative error (see :func:`relative_error`); raises :class:`ExportError` if it
    exceeds ``rtol`` and :class:`MissingDependencyError` without onnxruntime.
    """
    ort = import_onnxruntime()
    tensors = _as_tuple(inputs)
    source = onnx_model if isinstance(onnx_model, bytes) else str(onnx_model)
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    feeds = {arg.name: t.detach().cpu().numpy() for arg, t in zip(session.get_inputs(), tensors)}
    got = session.run(None, feeds)[0]
    module = unwrap(model)
    was_training = module.training
    module.eval()
    try:
        with torch.inference_mode():
            device = next((p.device for p in module.parameters()), torch.device("cpu"))
            expected = module(*(t.to(device) for t in tensors))
    finally:
        module.train(was_training)
    expected = logits_of(expected).float().cpu().numpy()
    if got.shape != expected.shape:
        raise ExportError(f"ONNX output shape {got.shape} differs from PyTorch's {expected.shape}")
    error = relative_error(got, expected)
    if not error <= rtol:
        raise ExportError(f"ONNX output differs from PyTorch by {error:.2e} (relative), above {rtol:.0e}")
    return error


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` atomically (shared writer), reporting failures as :class:`ExportError`."""
    from tpp.errors import CheckpointError
    from tpp.util.atomic import atomic_write

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda handle: handle.write(data))
    except CheckpointError as error:  # already "cannot write <path>: <reason>; ..."
        raise ExportError(str(error)) from None
    except OSError as error:
        reason = error.strerror or type(error).__name__
        if path.parent.exists() and not path.parent.is_dir():
            reason = f"{path.parent} is not a directory"
        raise ExportError(f"cannot write {path}: {reason}; choose a writable location") from None


def export_onnx(
    model: nn.Module,
    example_inputs: Any,
    path: str | os.PathLike,
    *,
    opset: int = 17,
    dynamic_batch: bool = True,
    verify: bool | None = None,
    rtol: float = 1e-4,
    overwrite: bool = False,
) -> Path:
    """Export ``model`` in eval mode to an ONNX file at ``path`` and return the path.

    Args:
        model: any traceable module, e.g. from ``tpp.TPPPruner(...).prune()`` or
            ``tpp.load_pruned(path)``; DataParallel/DDP wrappers are unwrapped. Its train/eval
            mode is restored afterwards.
        example_inputs: a tensor (or tuple of tensors) of the input shape.
        path: destination; written atomically, so it is either untouched or a complete file
            whose outputs were checked.
        opset: ONNX opset version.
        dynamic_batch: make the batch dimension symbolic (input ``input``, output ``output``).
        verify: compare ONNX Runtime's outputs with PyTorch's (at the example batch and, if
            ``dynamic_batch``, at another batch size) before the file is moved into place.
            ``None``: verify when onnxruntime is installed; ``True``: require it.
        rtol: allowed ``max|ort - torch| / max|torch|``.
        overwrite: replace an existing ``path`` that tpp did not write (one it wrote, marked by
            ``generator: tpp`` metadata, is always replaced).

    Raises:
        ExportError: an opset outside :func:`opset_range`, tracing/export fails, outputs differ,
            ``path`` is not writable, or it holds a file tpp did not write and ``overwrite`` is False.
        MissingDependencyError: ``onnx`` is missing, or ``verify=True`` without onnxruntime.
    """
    path = Path(path)
    check_opset(opset)
    _require("onnx")  # torch's exporter serialises with it
    try:
        refuse_foreign(path, onnx_is_ours, overwrite)  # before the (slow) export
    except CheckpointError as error:
        raise ExportError(str(error)) from None
    module = unwrap(model)
    inputs = _as_tuple(example_inputs)
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    inputs = tuple(t.to(device) for t in inputs)
    if verify is None:
        verify = onnxruntime_available()
    elif verify:
        import_onnxruntime()  # fail before the (slow) export
    was_training = module.training
    module.eval()
    try:
        data = _mark_as_ours(_export_bytes(module, inputs, opset, dynamic_batch))
    except TPPError:
        raise
    except Exception as error:  # the exporter raises many types for unsupported operators
        raise ExportError(f"ONNX export of {type(module).__name__} failed ({_first_line(error)})") from error
    finally:
        module.train(was_training)
    if verify:
        verify_onnx(module, data, inputs, rtol)
        if dynamic_batch and inputs[0].dim() > 0:
            other = inputs[0].shape[0] + 2
            generator = torch.Generator().manual_seed(0)
            batch = tuple(
                torch.randn((other, *t.shape[1:]), generator=generator).to(t.dtype)
                if t.is_floating_point()
                else t[:1].expand(other, *t.shape[1:]).contiguous().cpu()
                for t in inputs
            )
            verify_onnx(module, data, batch, rtol)
    _atomic_write(path, data)
    return path
