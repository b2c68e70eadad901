"""Wall-clock latency of (pruned) models in eager PyTorch and ONNX Runtime.

Measurement rules: every call is timed on its own with :func:`time.perf_counter` (CUDA is
synchronised before and after), after warm-up calls; statistics are medians and percentiles of
those samples. When two models are compared (:func:`compare_pruned`) their measurements are
interleaved in alternating blocks (A B B A ...) so that frequency scaling, thermal drift and
background load affect both equally. The number of threads is set explicitly and recorded.
"""

from __future__ import annotations

import copy
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from tpp.deploy.export import export_onnx, import_onnxruntime
from tpp.errors import ConfigError

BACKENDS = ("torch", "onnxruntime")


@dataclass(frozen=True)
class LatencyStats:
    """Latency of one call in milliseconds: median, 10th/90th percentile, inter-quartile range."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    iqr_ms: float
    repeats: int

    @classmethod
    def from_samples(cls, seconds: Sequence[float]) -> LatencyStats:
        """Statistics of per-call durations given in seconds."""
        if not seconds:
            raise ValueError("no latency samples")
        ms = np.asarray(seconds, dtype=np.float64) * 1e3
        p10, q1, median, q3, p90 = np.percentile(ms, [10, 25, 50, 75, 90])
        return cls(float(median), float(p10), float(p90), float(q3 - q1), int(ms.size))

    def as_dict(self) -> dict[str, float]:
        """Plain dict of the fields."""
        return asdict(self)


def _samples(fn: Callable[[], Any], count: int, synchronize: Callable[[], None] | None) -> list[float]:
    out = []
    for _ in range(count):
        if synchronize is not None:
            synchronize()
        start = time.perf_counter()
        fn()
        if synchronize is not None:
            synchronize()
        out.append(time.perf_counter() - start)
    return out


def measure_latency(
    fn: Callable[[], Any], *, warmup: int = 5, repeats: int = 30, synchronize: Callable[[], None] | None = None
) -> LatencyStats:
    """Call ``fn()`` ``warmup`` times untimed, then ``repeats`` times timed one by one.

    ``synchronize`` (e.g. ``torch.cuda.synchronize``) is called before and after each timed
    call so that asynchronous GPU work is included.
    """
    if repeats < 1 or warmup < 0:
        raise ConfigError(f"need repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    _samples(fn, warmup, synchronize)
    return LatencyStats.from_samples(_samples(fn, repeats, synchronize))


def interleaved_samples(
    fns: Mapping[str, Callable[[], Any]],
    *,
    warmup: int = 5,
    repeats: int = 30,
    block: int = 1,
    synchronize: Callable[[], None] | None = None,
) -> dict[str, list[float]]:
    """Per-call durations (seconds) of several functions timed in alternating blocks.

    Blocks of ``block`` calls, order reversed each round: with two functions and ``block=1``
    the order is A B B A A B ..., so slow drift and bursts of background load fall on both
    alike, and the i-th samples of A and B are neighbours in time. ``repeats`` calls each.
    """
    if repeats < 1 or warmup < 0 or block < 1:
        raise ConfigError(f"need repeats >= 1, warmup >= 0, block >= 1; got {repeats}, {warmup}, {block}")
    for fn in fns.values():
        _samples(fn, warmup, synchronize)
    names = list(fns)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(math.ceil(repeats / block)):
        for name in names if round_index % 2 == 0 else reversed(names):
            todo = min(block, repeats - len(samples[name]))
            samples[name] += _samples(fns[name], todo, synchronize)
    return samples


def measure_interleaved(fns: Mapping[str, Callable[[], Any]], **kwargs: Any) -> dict[str, LatencyStats]:
    """:class:`LatencyStats` per function from :func:`interleaved_samples` (same keywords)."""
    return {name: LatencyStats.from_samples(s) for name, s in interleaved_samples(fns, **kwargs).items()}


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _sync_for(device: torch.device) -> Callable[[], None] | None:
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None


def _input(batch_size: int, input_shape: Sequence[int], device: torch.device | str = "cpu") -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randn((int(batch_size), *map(int, input_shape)), generator=generator).to(device)


def torch_runner(
    model: nn.Module, batch_size: int, input_shape: Sequence[int], device: str | torch.device = "cpu"
) -> Callable[[], Any]:
    """A no-argument callable running ``model`` (eval, inference mode) on a fixed random batch.

    ``input_shape`` is the per-sample shape, e.g. ``(3, 32, 32)``. The model is used as is:
    it is switched to eval mode and must already live on ``device``.
    """
    model.eval()
    x = _input(batch_size, input_shape, device)

    def run() -> Any:
        with torch.inference_mode():
            return model(x)

    return run


def onnxruntime_runner(
    path: str | os.PathLike,
    batch_size: int,
    input_shape: Sequence[int],
    threads: int | None = None,
    device: str = "cpu",
) -> Callable[[], Any]:
    """A no-argument callable running an ONNX file with ONNX Runtime on a fixed random batch.

    ``threads`` sets ``intra_op_num_threads`` (None: all usable cores); graph optimisations are
    all enabled, execution is sequential. ``device="cuda"`` uses the CUDA execution provider.
    """
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or usable_cores())
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if str(device).startswith("cuda"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ConfigError("this onnxruntime build has no CUDA provider; install onnxruntime-gpu or use device cpu")
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    else:
        providers = ["CPUExecutionProvider"]
    session = ort.InferenceSession(str(path), options, providers=providers)
    name = session.get_inputs()[0].name
    x = _input(batch_size, input_shape).numpy()
    return lambda: session.run(None, {name: x})


def time_torch(
    model: nn.Module,
    batch_size: int,
    input_shape: Sequence[int],
    device: str | torch.device = "cpu",
    warmup: int = 5,
    repeats: int = 30,
) -> LatencyStats:
    """Latency of ``model`` in eager PyTorch (eval, inference mode); the model must be on ``device``."""
    device = torch.device(device)
    return measure_latency(
        torch_runner(model, batch_size, input_shape, device),
        warmup=warmup,
        repeats=repeats,
        synchronize=_sync_for(device),
    )


def time_onnxruntime(
    path: str | os.PathLike,
    batch_size: int,
    input_shape: Sequence[int],
    warmup: int = 5,
    repeats: int = 30,
    threads: int | None = None,
) -> LatencyStats:
    """Latency of an ONNX file on ONNX Runtime's CPU provider with ``threads`` intra-op threads."""
    return measure_latency(onnxruntime_runner(path, batch_size, input_shape, threads), warmup=warmup, repeats=repeats)


def count_flops(model: nn.Module, input_shape: Sequence[int]) -> tuple[int, str]:
    """FLOPs per image and the counter used (``tpp.count``: 2 x conv+linear MACs)."""
    from tpp.metrics.counting import count

    x = _input(1, input_shape, next((p.device for p in model.parameters()), "cpu"))
    return int(count(model, x).flops), "tpp.count (FLOPs = 2 x MACs)"


def default_repeats(batch_size: int) -> tuple[int, int]:
    """``(warmup, repeats)`` used when none are given: more repetitions for small batches."""
    return (10, 100) if batch_size <= 8 else (3, 20)


def compare_pruned(
    base_model: nn.Module,
    pruned_model: nn.Module,
    input_shape: Sequence[int],
    batch_sizes: Sequence[int] = (1, 64),
    device: str | torch.device = "cpu",
    backends: Sequence[str] = BACKENDS,
    *,
    repeats: int | None = None,
    warmup: int | None = None,
    threads: int | None = None,
    workdir: str | os.PathLike | None = None,
) -> list[dict[str, Any]]:
    """Time ``base_model`` and ``pruned_model`` side by side, interleaved, per backend and batch.

    Returns one row per (backend, batch): ``backend``, ``device``, ``batch``, ``threads``,
    ``repeats``, ``base`` and ``pruned`` (:class:`LatencyStats` dicts), ``base_median_ms``,
    ``pruned_median_ms``, ``measured_speedup`` (base / pruned median), ``flops_speedup``
    (base / pruned FLOPs), ``measured_over_flops``, and two estimates that resist background
    load: ``paired_speedup`` (median of base/pruned over neighbouring calls) and ``p10_speedup``
    (ratio of 10th percentiles). The caller's models are not modified
    (copies are timed). ``threads`` (default: all usable cores) is applied to both PyTorch and
    ONNX Runtime; PyTorch's previous setting is restored afterwards. ONNX files go to ``workdir``
    (default: a temporary folder, removed afterwards).
    """
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        raise ConfigError(f"unknown backend(s) {unknown}; choose from {', '.join(BACKENDS)}")
    device = torch.device(device)
    threads = int(threads or usable_cores())
    base_flops, counter = count_flops(base_model, input_shape)
    pruned_flops, _ = count_flops(pruned_model, input_shape)
    flops_speedup = base_flops / pruned_flops if pruned_flops else float("inf")
    models = {"base": copy.deepcopy(base_model).eval(), "pruned": copy.deepcopy(pruned_model).eval()}
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="tpp-latency-") as tmp:
            folder = Path(workdir) if workdir is not None else Path(tmp)
            for backend in backends:
                runners = _backend_runners(backend, models, input_shape, batch_sizes, device, threads, folder)
                for batch, fns in runners:
                    w, r = default_repeats(batch)
                    w, r = (w if warmup is None else warmup), (r if repeats is None else repeats)
                    sync = _sync_for(device) if backend == "torch" else None
                    raw = interleaved_samples(fns, warmup=w, repeats=r, synchronize=sync)
                    base, pruned = LatencyStats.from_samples(raw["base"]), LatencyStats.from_samples(raw["pruned"])
                    speedup = base.median_ms / pruned.median_ms
                    paired = float(np.median(np.asarray(raw["base"]) / np.asarray(raw["pruned"])))
                    rows.append(
                        {
                            "backend": backend,
                            "device": str(device),
                            "batch": int(batch),
                            "threads": threads,
                            "repeats": r,
                            "base": base.as_dict(),
                            "pruned": pruned.as_dict(),
                            "base_median_ms": base.median_ms,
                            "pruned_median_ms": pruned.median_ms,
                            "measured_speedup": speedup,
                            "flops_speedup": flops_speedup,
                            "measured_over_flops": speedup / flops_speedup,
                            "paired_speedup": paired,
                            "p10_speedup": base.p10_ms / pruned.p10_ms,
                            "base_flops": base_flops,
                            "pruned_flops": pruned_flops,
                            "flops_counter": counter,
                        }
                    )
    finally:
        torch.set_num_threads(previous_threads)
    return rows


def _backend_runners(
    backend: str,
    models: dict[str, nn.Module],
    input_shape: Sequence[int],
    batch_sizes: Sequence[int],
    device: torch.device,
    threads: int,
    folder: Path,
) -> Iterator[tuple[int, dict[str, Callable[[], Any]]]]:
    """``(batch, {"base": fn, "pruned": fn})`` for one backend, one batch size at a time."""
    if backend == "torch":
        moved = {k: m.to(device) for k, m in models.items()}
        for batch in batch_sizes:
            yield batch, {k: torch_runner(m, batch, input_shape, device) for k, m in moved.items()}
        return
    import_onnxruntime()
    paths = {}
    for key, model in models.items():
        cpu_model = copy.deepcopy(model).cpu()
        paths[key] = export_onnx(cpu_model, _input(1, input_shape), folder / f"{key}.onnx", verify=True)
    for batch in batch_sizes:
        yield batch, {k: onnxruntime_runner(p, batch, input_shape, threads, device.type) for k, p in paths.items()}


def latency_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The rows of :func:`compare_pruned` as a text table: one line per backend, batch size and
    model (base, pruned), with median latency, inter-quartile range, 90th percentile, throughput
    (samples per second at the median) and, on the pruned line, the measured and FLOPs speedups."""
    header = ("backend", "batch", "model", "median ms", "IQR ms", "p90 ms", "samples/s", "speedup", "FLOPs speedup")
    lines = []
    for row in rows:
        for key in ("base", "pruned"):
            stats = row[key]
            pruned = key == "pruned"
            lines.append(
                (
                    str(row["backend"]),
                    str(row["batch"]),
                    key,
                    f"{stats['median_ms']:.3f}",
                    f"{stats['iqr_ms']:.3f}",
                    f"{stats['p90_ms']:.3f}",
                    f"{1e3 * row['batch'] / stats['median_ms']:,.1f}",
                    f"{row['measured_speedup']:.2f}x" if pruned else "",
                    f"{row['flops_speedup']:.2f}x" if pruned else "",
                )
            )
    widths = [max(len(header[i]), *(len(line[i]) for line in lines)) for i in range(len(header))]

    def fmt(cells: Sequence[str]) -> str:  # names left-aligned, numbers right-aligned
        return "  ".join(c.ljust(w) if i in (0, 2) else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return [fmt(header), "  ".join("-" * w for w in widths), *(fmt(line).rstrip() for line in lines)]
