"""Deployment tooling: ONNX and Hugging Face export and latency measurement of (pruned) models.

>>> from tpp.deploy import export_onnx, compare_pruned                     # doctest: +SKIP
>>> export_onnx(pruned, example_inputs("resnet56"), "resnet56.onnx")       # doctest: +SKIP
>>> rows = compare_pruned(base, pruned, (3, 32, 32), batch_sizes=(1, 64))  # doctest: +SKIP

Entry points for the command line: :func:`export_pruned_onnx` (``tpp export --format onnx``),
:func:`export_pruned_hf` (``tpp export --format hf``: a ``from_pretrained`` folder, see
:mod:`tpp.deploy.hf`) and :func:`run_latency_bench` (``tpp bench latency``).

``onnx`` and ``onnxruntime`` form the optional extra ``tpp-pruning[onnx]``; without them the
functions that need them raise :class:`MissingDependencyError` (a :class:`~tpp.errors.TPPError`)
with the install command. Names are imported lazily so that ``import tpp.deploy`` stays cheap.
"""

from __future__ import annotations

import copy
import importlib
import os
import platform
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

# public name -> defining module (functions defined below are listed as None)
_EXPORTS = {
    "ExportError": "tpp.deploy.export",
    "MissingDependencyError": "tpp.deploy.export",
    "export_onnx": "tpp.deploy.export",
    "verify_onnx": "tpp.deploy.export",
    "onnxruntime_available": "tpp.deploy.export",
    "save_pretrained": "tpp.deploy.hf",
    "export_pruned_hf": "tpp.deploy.hf",
    "HFExportError": "tpp.deploy.hf",
    "ConfigMismatchError": "tpp.deploy.hf_config",
    "LatencyStats": "tpp.deploy.latency",
    "measure_latency": "tpp.deploy.latency",
    "measure_interleaved": "tpp.deploy.latency",
    "interleaved_samples": "tpp.deploy.latency",
    "time_torch": "tpp.deploy.latency",
    "time_onnxruntime": "tpp.deploy.latency",
    "compare_pruned": "tpp.deploy.latency",
    "count_flops": "tpp.deploy.latency",
    "export_pruned_onnx": None,
    "machine_info": None,
    "run_latency_bench": None,
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tpp.deploy' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


def export_pruned_onnx(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    *,
    opset: int = 17,
    dynamic_batch: bool = True,
    batch_size: int = 1,
    overwrite: bool = False,
    base_model: str | None = None,
) -> Path:
    """Load a file written by ``tpp.save_pruned`` and export it to ONNX at ``out`` (verified when
    onnxruntime is installed). The example input comes from the model's registry spec; an
    existing ``out`` that tpp did not write is replaced only with ``overwrite``. ``base_model``
    is passed to :func:`tpp.load_pruned` (the spec to rebuild the file with, on your word).

    Raises:
        TPPError: unreadable checkpoint, failed export or verification, unwritable ``out``.
    """
    from tpp.checkpoints import load_pruned
    from tpp.deploy.export import check_opset, export_onnx
    from tpp.models import example_inputs

    check_opset(opset)  # before the checkpoint is read
    model = load_pruned(checkpoint, base_model)
    return export_onnx(
        model,
        example_inputs(model, batch_size=batch_size),
        out,
        opset=opset,
        dynamic_batch=dynamic_batch,
        overwrite=overwrite,
    )


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (falls back to :func:`platform.processor`)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_info(threads: int | None = None, device: str = "cpu") -> dict[str, Any]:
    """Hardware and software facts that latency numbers depend on (JSON-ready)."""
    import torch

    from tpp.deploy.export import MissingDependencyError, import_onnxruntime
    from tpp.deploy.latency import usable_cores

    try:
        ort_version = import_onnxruntime().__version__
    except MissingDependencyError:
        ort_version = None
    info = {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cores": usable_cores(),
        "torch_threads": int(threads or usable_cores()),
        "torch_version": torch.__version__,
        "onnxruntime_version": ort_version,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "load_average": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }
    if torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
        info["cuda_version"] = torch.version.cuda
    return info


def run_latency_bench(
    model_name: str,
    ratio: float | str | Mapping[str, float] = 0.5,
    scope: str = "internal",
    batch_sizes: Sequence[int] = (1, 64),
    backends: Sequence[str] = ("torch", "onnxruntime"),
    device: str = "cpu",
    repeats: int | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Prune a freshly built registry model and compare its latency with the unpruned one.

    No training is needed: latency depends only on the pruned architecture. ``ratio`` and
    ``scope`` go to :class:`tpp.TPPPruner` (``{"*layer*.conv1": 0.5}`` or the text
    ``"*layer*.conv1:0.5"`` with ``"internal"`` is the paper's setting). ``repeats=None`` uses
    :func:`tpp.deploy.latency.default_repeats`; ``threads=None`` all usable cores.

    Returns a JSON-ready dict: ``model``, ``ratio``, ``scope``, ``input_shape``, ``params``
    (base/pruned), ``machine`` (:func:`machine_info`) and ``rows``
    (:func:`~tpp.deploy.latency.compare_pruned`, one per backend and batch size).
    """
    import torch

    from tpp.deploy.latency import compare_pruned, usable_cores
    from tpp.models import create_model, example_inputs
    from tpp.pruning.methods.tpp import TPPPruner

    torch.manual_seed(0)
    base = create_model(model_name).eval()
    inputs = example_inputs(model_name, batch_size=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "can lose only k of n channels" notices
        pruned = TPPPruner(copy.deepcopy(base), inputs, ratio=ratio, scope=scope).prune().eval()
    threads = int(threads or usable_cores())
    input_shape = tuple(int(s) for s in inputs.shape[1:])
    rows = compare_pruned(base, pruned, input_shape, batch_sizes, device, backends, repeats=repeats, threads=threads)
    return {
        "model": model_name,
        "ratio": dict(ratio) if isinstance(ratio, Mapping) else ratio,
        "scope": scope,
        "input_shape": list(input_shape),
        "params": {
            "base": sum(p.numel() for p in base.parameters()),
            "pruned": sum(p.numel() for p in pruned.parameters()),
        },
        "machine": machine_info(threads, device),
        "rows": rows,
    }
