"""Tiny ``transformers`` language models built from configs with random weights (no download).

The families people prune: decoder-only causal LMs (GPT-2, GPT-NeoX, OPT, BLOOM, Falcon, Llama,
Mistral, Qwen2, Qwen3, Gemma, Phi-3, StableLM) and encoder masked LMs (BERT, RoBERTa). Each has
hidden size 32, 2 layers, 4 attention heads (2 key/value heads where the family has grouped-query
attention), an MLP of 64 (BLOOM's is always 4 x hidden, 128) and a vocabulary of 128, so a whole
case runs in about a second on one core.
The inputs are ``{"input_ids": ...}`` of shape (batch, 8); the logits are (batch, 8, vocabulary).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

VOCAB = 128
HIDDEN = 32
LAYERS = 2
HEADS = 4
KV_HEADS = 2
MLP = 64
BATCH = 4
TOKENS = 8
# token ids inside the vocabulary (the families' defaults, e.g. GPT-2's 50256, are not)
_TOKENS = dict(bos_token_id=1, eos_token_id=2, pad_token_id=0)


@dataclass(frozen=True)
class LMSpec:
    """One language-model family: ``build()`` gives a fresh model (seed it first).

    Duck-types :class:`tests.zoo.spec.ModelSpec` for the zoo runner; ``auto_class`` is the
    ``transformers`` Auto class that loads the exported folder (``from_pretrained``); ``options``
    go to ``TPPPruner`` (whole attention heads too)."""

    name: str
    build: Callable[[], nn.Module]
    auto_class: str = "AutoModelForCausalLM"
    dict_inputs: bool = True
    options: dict = field(default_factory=lambda: {"heads": True})

    def inputs(self) -> dict[str, torch.Tensor]:
        """A fixed batch of token ids (none of them padding, BOS or EOS)."""
        g = torch.Generator().manual_seed(1234)
        return {"input_ids": torch.randint(3, VOCAB, (BATCH, TOKENS), generator=g)}


def _hf(class_name: str, config_name: str, **config):
    """A factory building ``transformers.<class_name>(<config_name>(**config))`` in eager attention
    (the same kernels in every process, so a reload can be compared bit for bit)."""

    def build():
        import transformers

        cfg = getattr(transformers, config_name)(**{**_TOKENS, **config})
        cfg._attn_implementation = "eager"
        return getattr(transformers, class_name)(cfg)

    return build


_LLAMA_LIKE = dict(
    vocab_size=VOCAB,
    hidden_size=HIDDEN,
    num_hidden_layers=LAYERS,
    num_attention_heads=HEADS,
    num_key_value_heads=KV_HEADS,
    intermediate_size=MLP,
    max_position_embeddings=64,
)
_ENCODER = dict(
    vocab_size=VOCAB,
    hidden_size=HIDDEN,
    num_hidden_layers=LAYERS,
    num_attention_heads=HEADS,
    intermediate_size=MLP,
    max_position_embeddings=64,
)

# name -> (model class, config class, config, Auto class of the exported folder)
_TABLE = {
    "gpt2": (
        "GPT2LMHeadModel",
        "GPT2Config",
        dict(vocab_size=VOCAB, n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, n_inner=MLP, n_positions=64),
    ),
    "gpt_neox": (
        "GPTNeoXForCausalLM",
        "GPTNeoXConfig",
        dict(
            vocab_size=VOCAB,
            hidden_size=HIDDEN,
            num_hidden_layers=LAYERS,
            num_attention_heads=HEADS,
            intermediate_size=MLP,
            max_position_embeddings=64,
        ),
    ),
    "opt": (
        "OPTForCausalLM",
        "OPTConfig",
        dict(
            vocab_size=VOCAB,
            hidden_size=HIDDEN,
            num_hidden_layers=LAYERS,
            num_attention_heads=HEADS,
            ffn_dim=MLP,
            word_embed_proj_dim=HIDDEN,
            max_position_embeddings=64,
        ),
    ),
    "bloom": (
        "BloomForCausalLM",
        "BloomConfig",
        dict(vocab_size=VOCAB, hidden_size=HIDDEN, n_layer=LAYERS, n_head=HEADS),
    ),
    "falcon": (
        "FalconForCausalLM",
        "FalconConfig",
        dict(
            vocab_size=VOCAB,
            hidden_size=HIDDEN,
            num_hidden_layers=LAYERS,
            num_attention_heads=HEADS,
            num_kv_heads=KV_HEADS,
            new_decoder_architecture=True,
            ffn_hidden_size=MLP,
        ),
    ),
    "llama": ("LlamaForCausalLM", "LlamaConfig", _LLAMA_LIKE),
    "mistral": ("MistralForCausalLM", "MistralConfig", _LLAMA_LIKE),
    "qwen2": ("Qwen2ForCausalLM", "Qwen2Config", _LLAMA_LIKE),
    "qwen3": ("Qwen3ForCausalLM", "Qwen3Config", dict(_LLAMA_LIKE, head_dim=HIDDEN // HEADS)),
    "gemma": ("GemmaForCausalLM", "GemmaConfig", dict(_LLAMA_LIKE, head_dim=HIDDEN // HEADS)),
    "phi3": ("Phi3ForCausalLM", "Phi3Config", _LLAMA_LIKE),
    "stablelm": ("StableLmForCausalLM", "StableLmConfig", _LLAMA_LIKE),
    "bert": ("BertForMaskedLM", "BertConfig", _ENCODER, "AutoModelForMaskedLM"),
    "roberta": (
        "RobertaForMaskedLM",
        "RobertaConfig",
        dict(_ENCODER, max_position_embeddings=66, pad_token_id=1),
        "AutoModelForMaskedLM",
    ),
}

# Architectures no channel of which can be removed exactly: refused when the pruner is built.
IMPOSSIBLE: dict[str, str] = {}

# Cases that must prune exactly (not merely be refused), as measured: every family's MLP neurons
# (gate/up -> down and Phi-3's fused gate_up in the Llama-style ones, Conv1D in GPT-2), both scopes.
MUST_BE_EXACT = {f"{name}/{scope}" for name in _TABLE for scope in ("internal", "all")}

# Families whose attention heads must be pruned too, as measured: whole KV groups with their query
# heads (4 heads / 2 KV heads -> 2 / 1 at ratio 0.5), the config's head counts kept true.
HEADS_EXACT = ("llama", "mistral", "qwen2", "qwen3", "gemma")

# Families whose pruned MLP no config.json can describe, so tpp.save_pretrained refuses them in one
# line (tpp.save_pruned keeps them): BloomMLP is always 4 x hidden_size, BloomConfig has no MLP width.
NO_HF_CONFIG = {"bloom": "BloomConfig has no field for the MLP width (BloomMLP is 4 x hidden_size)"}

SPECS = {name: LMSpec(name, _hf(cls, cfg, **config), *rest) for name, (cls, cfg, config, *rest) in _TABLE.items()}
