"""Language models of ``transformers`` through the pruning core: tiny random configs, nothing downloaded.

Each case builds a TPP pruner on a causal LM, takes a few regularisation steps, prunes, and checks what
the user relies on: the pruned model's logits equal the zeroed model's (in float64, where only
rounding can differ), the config says the new widths (a model rebuilt from it loads the weights), and
every refusal or warning is one true line.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import transformers  # a dev dependency: missing, the module fails instead of skipping

import tpp
from tests.loop import pruner_step
from tpp.errors import PruningError

VOCAB = 128
SMALL = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, vocab_size=VOCAB)


def _llama():
    return transformers.LlamaConfig(**SMALL, intermediate_size=256, num_key_value_heads=2)


def _qwen2():
    return transformers.Qwen2Config(**SMALL, intermediate_size=256, num_key_value_heads=2)


def _phi3():
    return transformers.Phi3Config(**SMALL, intermediate_size=256, num_key_value_heads=2, pad_token_id=0)


def _gpt2():
    return transformers.GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=VOCAB, n_positions=32)


def _neox():
    return transformers.GPTNeoXConfig(**SMALL, intermediate_size=256)


# family -> (config, the config field that holds the MLP width)
FAMILIES = {
    "llama": (_llama, "intermediate_size"),
    "qwen2": (_qwen2, "intermediate_size"),
    "phi3": (_phi3, "intermediate_size"),  # fused gate_up_proj
    "gpt2": (_gpt2, "n_inner"),  # transformers' Conv1D, weights stored [in, out]
    "gpt_neox": (_neox, "intermediate_size"),
}


def _model(make_config, dtype=torch.float64):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = transformers.AutoModelForCausalLM.from_config(make_config())
    return model.to(dtype)


def _ids(seed=1):
    return torch.randint(0, VOCAB, (2, 12), generator=torch.Generator().manual_seed(seed))


def _logits(model, ids):
    model.eval()
    with torch.no_grad():
        return model(ids, use_cache=False).logits


def _relative(a, b):
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("family", list(FAMILIES))
def test_mlp_neurons_prune_exactly_and_the_config_stays_true(family):
    make_config, field = FAMILIES[family]
    model, ids = _model(make_config), _ids()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the warning says attention heads stay whole; tested below
        pruner = tpp.TPPPruner(model, ids, ratio=0.5, scope="internal")
    assert model.config.use_cache is not False  # traced without the cache, the user's config untouched
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    for _ in range(3):
        pruner_step(pruner, optimizer, model(ids, labels=ids).loss)
    pruner.zero_pruned()
    zeroed = _logits(model, ids)
    params_before = sum(p.numel() for p in model.parameters())
    pruned = pruner.prune(optimizer)
    after = _logits(pruned, ids)
    assert sum(p.numel() for p in pruned.parameters()) < params_before
    assert _relative(after, zeroed) < 1e-12  # float64: removal of zeroed neurons only reorders sums
    assert getattr(pruned.config, field) == 128  # 256 MLP neurons per layer, half of them removed
    # a model rebuilt from the config (as from_pretrained does) takes the pruned weights as they are
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rebuilt = transformers.AutoModelForCausalLM.from_config(pruned.config).to(torch.float64)
    rebuilt.load_state_dict(pruned.state_dict())
    assert torch.equal(_logits(rebuilt, ids), _logits(pruned, ids))
    # and it still trains: one step through the re-pointed optimizer
    loss = pruned(ids, labels=ids).loss
    loss.backward()
    optimizer.step()


def test_gated_mlp_is_internal_and_warnings_name_the_true_reasons():
    model, ids = _model(_llama), _ids()
    with pytest.warns(UserWarning) as record:
        pruner = tpp.TPPPruner(model, ids, ratio=0.5, scope="all", heads=True)
    # per layer: one MLP unit (gate and up lose the same neurons) and one unit of whole attention heads
    assert sorted(pruner.pruned_indices) == [
        "model.layers.0.mlp.up_proj",
        "model.layers.0.self_attn",
        "model.layers.1.mlp.up_proj",
        "model.layers.1.self_attn",
    ]
    rows = {m.name for u in pruner.units for m in u.rows}
    assert {"model.layers.0.mlp.gate_proj", "model.layers.0.mlp.up_proj"} <= rows
    text = " ".join(str(w.message) for w in record if "tpp:" in str(w.message))
    assert "normalised jointly" in text  # the residual stream, under RMSNorm
    assert "Embedding" not in text and "x[:, :C]" not in text
    assert len(text.splitlines()) == 1


def test_fused_attention_is_left_whole_as_split_into_heads():
    model, ids = _model(_gpt2), _ids()
    with pytest.warns(UserWarning, match="split into attention heads") as record:
        tpp.TPPPruner(model, ids, ratio=0.5, scope="all")
    text = " ".join(str(w.message) for w in record if "tpp:" in str(w.message))
    assert "c_attn" in text and "x[:, :C]" not in text


def test_uneven_widths_leave_the_config_alone_and_say_so():
    model, ids = _model(_llama), _ids()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pruner = tpp.TPPPruner(model, ids, ratio={"*layers.0.mlp.gate_proj": 0.5}, scope="internal")
    with pytest.warns(UserWarning, match="intermediate_size stays 256"):
        pruner.prune()
    assert model.config.intermediate_size == 256


def test_a_failed_prune_puts_the_config_back():
    model, ids = _model(_llama), _ids()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pruner = tpp.TPPPruner(model, ids, ratio=0.5)
    original = pruner.zero_pruned

    def zero_then_break():
        original()
        with torch.no_grad():
            neuron = next(iter(pruner.pruned_indices.values()))[0]
            mlp = model.model.layers[0].mlp  # gate and up both live again: the neuron carries a signal
            mlp.gate_proj.weight[neuron] = 1.0
            mlp.up_proj.weight[neuron] = 1.0

    pruner.zero_pruned = zero_then_break
    with pytest.raises(PruningError) as error:
        pruner.prune()
    assert "\n" not in str(error.value)
    assert model.config.intermediate_size == 256


def test_fused_attention_only_ratio_is_refused_in_one_true_line():
    model, ids = _model(_gpt2), _ids()
    with pytest.raises(PruningError) as error:
        tpp.TPPPruner(model, ids, ratio={"*attn.c_attn": 0.5}, scope="internal")
    message = str(error.value)
    assert "\n" not in message
    assert "split into attention heads" in message and "c_attn" in message


def _gemma():
    return transformers.GemmaConfig(**SMALL, intermediate_size=256, num_key_value_heads=2, head_dim=16)


def _qwen3():
    return transformers.Qwen3Config(**SMALL, intermediate_size=256, num_key_value_heads=2, head_dim=16)


def _mha_llama():
    return transformers.LlamaConfig(**SMALL, intermediate_size=256, num_key_value_heads=4)


@pytest.mark.parametrize(
    "make_config, heads, kv_heads",
    [
        (_llama, 2, 1),  # GQA: one of two key/value groups goes, with its two query heads
        (_qwen3, 2, 1),  # q_norm/k_norm act per head_dim: untouched by whole heads
        (_gemma, 2, 1),  # lm_head tied to embed_tokens
        (_mha_llama, 2, 2),  # multi-head attention: a group is one head
    ],
)
def test_whole_heads_prune_exactly_and_the_config_follows(make_config, heads, kv_heads):
    original = make_config()
    model, ids = _model(make_config), _ids()
    pruner = tpp.TPPPruner(model, ids, ratio={"*self_attn*": 0.5, "*mlp*": 0.25}, heads=True)
    assert "model.layers.0.self_attn" in pruner.pruned_indices
    for _ in range(2):
        loss = model(ids, labels=ids).loss + pruner.penalty()
        loss.backward()
        pruner.regularize()
        pruner.step()
    pruner.zero_pruned()
    zeroed = _logits(model, ids)
    pruned = pruner.prune()
    assert _relative(_logits(pruned, ids), zeroed) < 1e-12
    config = pruned.config
    assert (config.num_attention_heads, config.num_key_value_heads, config.head_dim) == (heads, kv_heads, 16)
    assert config.intermediate_size == 192
    attention = pruned.model.layers[1].self_attn
    assert attention.q_proj.out_features == heads * 16 and attention.k_proj.out_features == kv_heads * 16
    assert attention.num_key_value_groups == heads // kv_heads and attention.head_dim == 16
    if original.tie_word_embeddings:
        assert pruned.lm_head.weight is pruned.model.embed_tokens.weight
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rebuilt = transformers.AutoModelForCausalLM.from_config(config).to(torch.float64)
    rebuilt.load_state_dict(pruned.state_dict())
    assert torch.equal(_logits(rebuilt, ids), _logits(pruned, ids))
    # the plan replays on a fresh, unpruned model (what tpp.load_pruned does), heads included
    from tpp.pruning.history import replay_plan

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fresh = transformers.AutoModelForCausalLM.from_config(original).to(torch.float64)
    replay_plan(fresh, pruned.tpp_plan, "plan")
    fresh.load_state_dict(pruned.state_dict())
    assert torch.equal(_logits(fresh, ids), _logits(pruned, ids))


def test_heads_a_config_cannot_describe_stay_whole_with_the_reason():
    config = lambda: transformers.StableLmConfig(**SMALL, intermediate_size=256, num_key_value_heads=2)  # noqa: E731
    model, ids = _model(config), _ids()
    with pytest.warns(UserWarning, match="derives head_dim from hidden_size / num_attention_heads"):
        pruner = tpp.TPPPruner(model, ids, ratio=0.5, heads=True)
    assert all(".mlp." in name for name in pruner.pruned_indices)


def _deep_llama(dtype=torch.float32):
    """32 layers with weights scaled up 25x: in float32, removing zeroed channels alone moves these
    logits by ~7e-5 relative (CPU-dependent), past the 1e-5 a float32 check could allow."""
    config = transformers.LlamaConfig(
        hidden_size=32,
        intermediate_size=128,
        num_hidden_layers=32,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=VOCAB,
        initializer_range=0.5,
    )
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return transformers.AutoModelForCausalLM.from_config(config).to(dtype)


@pytest.mark.filterwarnings("ignore:tpp. stabilize_iters")
def test_a_deep_float32_model_is_checked_in_float64_and_not_refused_for_rounding():
    model, ids = _deep_llama(), _ids()
    pruner = tpp.TPPPruner(model, ids, ratio=0.5, heads=True)
    pruner.zero_pruned()
    zeroed = _logits(model, ids)
    weight = model.model.layers[0].mlp.up_proj.weight
    pruned = pruner.prune()
    assert pruned.model.layers[0].mlp.up_proj.weight.dtype == torch.float32  # back in its own precision
    assert weight.dtype == torch.float32
    assert pruned.config.intermediate_size == 64 and pruned.config.num_key_value_heads == 1
    assert _relative(_logits(pruned, ids), zeroed) < 1e-3


@pytest.mark.filterwarnings("ignore:tpp. stabilize_iters")
def test_a_wrong_removal_is_still_caught_on_the_deep_model(monkeypatch):
    from tpp.pruning import removal

    model, ids = _deep_llama(), _ids()
    pruner = tpp.TPPPruner(model, ids, ratio=0.5, heads=True)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    remove = removal._remove_unit
    target = pruner.units[-1].name  # the last MLP: one neuron off, in one layer of 32

    def off_by_one(graph, unit, roots):
        if unit.name == target:
            kept = torch.tensor([i for i in range(unit.channels) if i not in set(roots.tolist())])
            roots = torch.cat([roots[1:], kept[:1]])  # one zeroed neuron stays, one live neuron goes
        remove(graph, unit, roots)

    monkeypatch.setattr(removal, "_remove_unit", off_by_one)
    with pytest.raises(PruningError, match=f"{target}.*would change the network") as error:
        pruner.prune()
    assert "\n" not in str(error.value)
    assert model.config.intermediate_size == 128  # all or nothing: config, shapes and weights as before
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_the_check_runs_in_float64_with_tied_embeddings_and_leaves_the_model_alone():
    from tpp.pruning.removal import eval_outputs

    model, ids = _model(_gemma, dtype=torch.float32), _ids()
    weight = model.model.embed_tokens.weight
    outputs = eval_outputs(model, ids)
    assert [t.dtype for t in outputs] == [torch.float64]  # not the float32 fallback
    assert model.model.embed_tokens.weight is weight and weight.dtype == torch.float32
    assert model.lm_head.weight is weight
    assert _relative(outputs[0].float(), _logits(model, ids)) < 1e-5
