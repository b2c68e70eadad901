#!/usr/bin/env python3
"""Build src/tpp/data/embedded/mnist_subset.npz: a stratified, seeded subset of real MNIST.

600 training and 100 test images per class (6000 / 1000), stored as uint8 28x28 images and
uint8 labels with ``np.savez_compressed``. Deterministic: the same input files and seed give
the same arrays.

Usage:
    python scripts/make_embedded_subset.py [--data-dir ../shared/data] [--out PATH] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # run from a checkout without installing

from tpp.data.mnist import mnist_folder, read_idx, split_files  # noqa: E402

PER_CLASS = {"train": 600, "test": 100}
MAX_BYTES = 3 * 1024 * 1024


def stratified_pick(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of ``per_class`` random examples of each class 0..9."""
    picks = []
    for cls in range(10):
        candidates = np.flatnonzero(labels == cls)
        if len(candidates) < per_class:
            raise SystemExit(f"class {cls} has only {len(candidates)} examples, need {per_class}")
        picks.append(rng.choice(candidates, size=per_class, replace=False))
    return np.sort(np.concatenate(picks))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=ROOT.parent / "shared" / "data",
        help="dataset root holding MNIST/raw/*.gz (default: ../shared/data)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "src" / "tpp" / "data" / "embedded" / "mnist_subset.npz")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    folder = mnist_folder("mnist", args.data_dir)
    rng = np.random.default_rng(args.seed)
    arrays: dict[str, np.ndarray] = {}
    for split in ("train", "test"):
        images_file, labels_file = split_files(split)
        images = read_idx(folder / images_file, 0x803)
        labels = read_idx(folder / labels_file, 0x801)
        keep = stratified_pick(labels, PER_CLASS[split], rng)
        arrays[f"x_{split}"] = np.ascontiguousarray(images[keep], dtype=np.uint8)
        arrays[f"y_{split}"] = np.ascontiguousarray(labels[keep], dtype=np.uint8)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    size = args.out.stat().st_size
    print(f"wrote {args.out} ({size / 1e6:.2f} MB): " + ", ".join(f"{k} {list(v.shape)}" for k, v in arrays.items()))
    if size > MAX_BYTES:
        print(f"error: {args.out} is larger than {MAX_BYTES} bytes", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
