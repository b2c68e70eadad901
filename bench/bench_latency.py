"""Does pruning's FLOPs speedup turn into wall-clock speedup? ResNet-56, CPU (and CUDA if present).

For each ratio in 0.3/0.5/0.7/0.9, two pruned models are built (no training needed: latency
depends only on the architecture):

* ``internal``: ``{"*layer*.conv1": r}``, scope ``internal`` (the paper's setting: only the
  first conv of each residual block loses filters);
* ``all``: float ``r``, scope ``all`` (residual-coupled channels are pruned too).

Each is timed against the unpruned ResNet-56, interleaved call by call, in eager PyTorch
(``torch.inference_mode``) and in ONNX Runtime (CPU provider), at batch 1 and 64; on a CUDA
machine eager PyTorch on the GPU is timed as well. Results go to
``bench/results/latency_cpu.json`` (and ``latency_cuda.json``).

Threads: ``--threads`` (default 1) is set for both PyTorch and ONNX Runtime and recorded. One
thread is the default because on a small shared machine, multi-threaded OpenMP with another
busy process on the same cores was seen to slow eager PyTorch ~10x at random, swamping the
comparison. Pass ``--threads 0`` for all usable cores.

Background load: before each configuration the script waits (``--quiet-wait``, default 20 s)
for CPU pressure (Linux PSI "some avg10", percent) to drop below 50%, and records the pressure
before and after, so rows measured on a busy machine can be spotted. Besides the ratio of
medians (``measured_speedup``), rows carry ``paired_speedup`` (median of base/pruned over
neighbouring calls) and ``p10_speedup``, which are less sensitive to such load.

Run: ``python bench/bench_latency.py [--repeats N] [--threads T] [--ratios 0.5]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import torch

from tpp.deploy import machine_info, onnxruntime_available, run_latency_bench
from tpp.deploy.latency import default_repeats, usable_cores

RESULTS = Path(__file__).resolve().parent / "results"


def cpu_pressure() -> float | None:
    """Share of the last 10 s in which some runnable task waited for a CPU (percent), or None."""
    try:
        for line in Path("/proc/pressure/cpu").read_text().splitlines():
            if line.startswith("some"):
                return float(line.split("avg10=")[1].split()[0])
    except (OSError, IndexError, ValueError):
        pass
    return None


def wait_for_quiet(max_wait: float, threshold: float = 50.0) -> float:
    """Wait (at most ``max_wait`` s) until CPU pressure drops below ``threshold``; seconds waited."""
    start = time.perf_counter()
    while time.perf_counter() - start < max_wait:
        pressure = cpu_pressure()
        if pressure is None or pressure < threshold:
            break
        time.sleep(2.0)
    return time.perf_counter() - start


def run_device(args: argparse.Namespace, device: str, backends: tuple[str, ...]) -> dict:
    """Every ratio x scope on one device; returns the JSON document."""
    threads = args.threads or usable_cores()
    rows = []
    configs = [(r, scope) for r in args.ratios for scope in ("internal", "all")]
    started = time.perf_counter()
    for index, (r, scope) in enumerate(configs, 1):
        ratio = {"*layer*.conv1": r} if scope == "internal" else r
        waited = wait_for_quiet(args.quiet_wait)
        before = cpu_pressure()
        result = run_latency_bench(
            args.model, ratio, scope, tuple(args.batch_sizes), backends, device, args.repeats, threads
        )
        after = cpu_pressure()
        for row in result["rows"]:
            rows.append(
                {
                    "ratio": r,
                    "scope": scope,
                    "pattern": "*layer*.conv1" if scope == "internal" else "*",
                    "params_base": result["params"]["base"],
                    "params_pruned": result["params"]["pruned"],
                    "cpu_pressure_before": before,
                    "cpu_pressure_after": after,
                    "waited_for_quiet_s": round(waited, 1),
                    **row,
                }
            )
            print(
                f"[{index}/{len(configs)}] r={r} {scope:8s} {row['backend']:11s} b={row['batch']:<3d} "
                f"base {row['base_median_ms']:8.2f} ms  pruned {row['pruned_median_ms']:8.2f} ms  "
                f"measured x{row['measured_speedup']:.2f}  FLOPs x{row['flops_speedup']:.2f}  "
                f"ratio {row['measured_over_flops']:.2f}  (paired x{row['paired_speedup']:.2f}, "
                f"psi {before}->{after})",
                flush=True,
            )
    repeats = {b: (args.repeats if args.repeats else default_repeats(b)[1]) for b in args.batch_sizes}
    return {
        "benchmark": "latency_pruned_vs_base",
        "command": "python " + " ".join(sys.argv),
        "model": args.model,
        "device": device,
        "backends": list(backends),
        "batch_sizes": list(args.batch_sizes),
        "repeats_per_batch": repeats,
        "method": "per-call perf_counter samples, base and pruned interleaved A B B A ...; "
        "measured_speedup = base median / pruned median; paired_speedup = median of "
        "base/pruned over neighbouring calls; flops_speedup from tpp.count (FLOPs = 2 x MACs)",
        "machine": machine_info(threads, device),
        "elapsed_s": round(time.perf_counter() - started, 1),
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet56")
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.3, 0.5, 0.7, 0.9])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64])
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed calls per model and batch (default: 100 at batch <= 8, else 20)",
    )
    parser.add_argument("--threads", type=int, default=1, help="0: all usable cores")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=20.0,
        help="before each configuration wait up to this many seconds for CPU pressure < 50%%",
    )
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)

    cpu_backends = ("torch", "onnxruntime") if onnxruntime_available() else ("torch",)
    if len(cpu_backends) == 1:
        print("onnxruntime is not installed; timing eager PyTorch only (pip install 'tpp-pruning[onnx]')")
    targets = [("cpu", cpu_backends)]
    if torch.cuda.is_available():
        targets.append(("cuda", ("torch",)))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for device, backends in targets:
        document = run_device(args, device, backends)
        out = args.out_dir / f"latency_{device}.json"
        tmp = out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(document, indent=2) + "\n")
        tmp.replace(out)
        print(f"wrote {out} ({document['elapsed_s']} s)")


if __name__ == "__main__":
    main()
