"""Seeding and capture/restore of every random number generator a training run uses.

The captured state contains only tensors, lists, numbers and strings so that it can be stored
in a checkpoint loaded with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's legacy global RNG and torch (CPU and all CUDA devices)."""
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def get_rng_state() -> dict[str, Any]:
    """Snapshot of the Python, NumPy and torch RNGs as weights-only-loadable plain data."""
    version, internal, gauss_next = random.getstate()
    name, keys, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {"version": int(version), "state": [int(v) for v in internal], "gauss_next": gauss_next},
        "numpy": {
            "bit_generator": str(name),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore RNGs from :func:`get_rng_state`; parts missing from ``state`` are left alone."""
    if "python" in state:
        py = state["python"]
        random.setstate((py["version"], tuple(py["state"]), py["gauss_next"]))
    if "numpy" in state:
        npy = state["numpy"]
        keys = np.asarray(npy["keys"].cpu().numpy() if torch.is_tensor(npy["keys"]) else npy["keys"])
        np.random.set_state(
            (npy["bit_generator"], keys.astype(np.uint32), npy["pos"], npy["has_gauss"], npy["cached_gaussian"])
        )
    if "torch" in state:
        torch.set_rng_state(state["torch"].cpu())
    cuda_states = state.get("cuda")
    # a run resumed on a machine with another GPU count keeps its fresh CUDA seeds
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])
