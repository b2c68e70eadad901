"""Benchmark: tpp's Jacobian singular values vs the official per-class loop + SVD (docs/method.md#jsv).

Both compute the same quantity (eval mode): the K singular values of each example's logits-input
Jacobian. The reference does K backward passes with a one-hot ``grad_output`` and then
``torch.linalg.svdvals`` of the ``[B, K, D]`` Jacobians (the official code's ``torch.svd``); ours
is ``tpp.jacobian_singular_values`` (one forward, K VJPs, eigvalsh of the K x K Gram in float64).
The two are timed alternately within each repetition so that background load hits both alike.

Usage (from the repo root)::

    python bench/bench_jsv.py [--repeats 15] [--out bench/results/jsv.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from tpp import jacobian_singular_values
from tpp.models import create_model, example_inputs

CASES = [  # (model, batch size, input channels); 32x32 inputs, 10 classes
    ("resnet20", 32, 3),
    ("mlp7_linear", 100, 1),
]


def reference_jsv(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Official-style: one forward, K backward passes (one-hot grad_output), SVD per example."""
    x = x.clone().requires_grad_(True)
    out = model(x)
    rows = []
    for k in range(out.shape[1]):
        one_hot = torch.zeros_like(out)
        one_hot[:, k] = 1
        (g,) = torch.autograd.grad(out, x, one_hot, retain_graph=True)
        rows.append(g.flatten(1))
    return torch.linalg.svdvals(torch.stack(rows, 1))


def _load() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_case(name: str, batch: int, channels: int, repeats: int, warmup: int) -> dict[str, object]:
    load_before = _load()
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_channels=channels).eval()
    x = example_inputs(model, batch_size=batch, seed=0)
    ours = lambda: jacobian_singular_values(model, x)  # noqa: E731
    ref = lambda: reference_jsv(model, x)  # noqa: E731
    for _ in range(warmup):
        ours(), ref()
    t_ours, t_ref = [], []
    for i in range(repeats):  # alternate the order too, against drift in background load
        pair = [(t_ours, ours), (t_ref, ref)]
        for times, fn in pair if i % 2 == 0 else pair[::-1]:
            times.append(_timed(fn))
    s_ours = ours().singular_values
    s_ref = reference_jsv(model, x).double()
    med_ours, med_ref = statistics.median(t_ours), statistics.median(t_ref)
    return {
        "model": name,
        "input_shape": list(x.shape),
        "num_classes": 10,
        "mode": "eval",
        "repetitions": repeats,
        "warmup": warmup,
        "median_s_ours": med_ours,
        "median_s_reference": med_ref,
        "speedup_reference_over_ours": med_ref / med_ours,
        "min_s_ours": min(t_ours),
        "min_s_reference": min(t_ref),
        "max_rel_diff_singular_values": float(((s_ours - s_ref).abs() / s_ref.abs()).max()),
        "mean_jsv": float(s_ours.mean()),
        # other processes on this small machine skew timings: record the load around the case
        "load_average_1min_before_after": [load_before, _load()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="bench/results/jsv.json", help="JSON output path")
    parser.add_argument("--repeats", type=int, default=15, help="timed repetitions per method")
    parser.add_argument("--warmup", type=int, default=2, help="untimed repetitions first")
    args = parser.parse_args()
    torch.set_num_threads(2)
    results = []
    for name, batch, channels in CASES:
        res = bench_case(name, batch, channels, args.repeats, args.warmup)
        results.append(res)
        print(
            f"{name:12s} B={batch:3d}: ours {res['median_s_ours'] * 1e3:8.2f} ms, reference "
            f"{res['median_s_reference'] * 1e3:8.2f} ms, speedup {res['speedup_reference_over_ours']:.2f}x, "
            f"max rel diff {res['max_rel_diff_singular_values']:.1e}"
        )
    report = {
        "benchmark": "Jacobian singular values: tpp vs per-class backward loop + torch.linalg.svdvals",
        "machine": {
            "cpu_count": os.cpu_count(),
            "torch_num_threads": torch.get_num_threads(),
            "torch_version": torch.__version__,
            "python_version": platform.python_version(),
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
        },
        "cases": results,
        "note": (
            "Both methods run the same forward pass; on resnet20 (conv/BN) ours also loops over the K "
            "backward passes (batched VJPs are slower there on CPU), which dominate both timings, and "
            "the reference's SVD of [B, K, D] is only a few percent of its time at K = 10: parity is "
            "expected, with run-to-run noise of about +-5% on this shared 2-core machine. On "
            "mlp7_linear ours batches the K VJPs (is_grads_batched) and replaces the SVD by the K x K Gram."
        ),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
