"""Reload saved pruned models in a fresh process and compare their outputs bit for bit.

``python -m tests.zoo.reload MANIFEST.json THREADS`` reads ``[{suite, model, pruned_file, io_file, key}]``,
rebuilds each unpruned base model with the zoo factory, ``tpp.load_pruned(path, base_model=...)``,
runs the saved inputs in eval mode and prints one JSON object ``{key: "identical" | problem}``.
"""

from __future__ import annotations

import json
import sys

import torch


def reload_one(entry: dict) -> str:
    import tpp
    from tests.zoo.runner import SEED, eval_logits
    from tests.zoo.suites import specs

    try:
        torch.manual_seed(SEED)
        base = specs(entry["suite"])[entry["model"]].build()
        model = tpp.load_pruned(entry["pruned_file"], base_model=base).eval()
        saved = torch.load(entry["io_file"], weights_only=True)
        output = eval_logits(model, saved["inputs"])
    except Exception as error:
        return f"load failed: {type(error).__name__}: {' '.join(str(error).split())[:300]}"
    expected = saved["logits"]
    if output.shape != expected.shape:
        return f"output shape {tuple(expected.shape)} -> {tuple(output.shape)} after reload"
    if not torch.equal(output, expected):
        return f"outputs differ after reload (max abs {float((output - expected).abs().max()):.3e})"
    return "identical"


def main(argv: list[str]) -> int:
    torch.set_num_threads(int(argv[1]))  # the parent's thread count: the same kernels, the same bits
    entries = json.loads(open(argv[0]).read())
    print(json.dumps({e["key"]: reload_one(e) for e in entries}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
