"""``tpp.save_pretrained`` and ``tpp export --format hf``: a pruned language model as a ``from_pretrained`` folder.

Loading the folders in a process where tpp cannot be imported is done for every family by the language
model zoo (tests/test_zoo_lm.py, tests/zoo/hf_check.py); here: the config's widths, what is dropped and
kept, refusals, atomic replacement, and the command line.
"""

from __future__ import annotations

import json
import warnings

import pytest
import torch
import transformers
from torch import nn

import tpp
from tests.zoo.lm_models import SPECS
from tpp.deploy.hf import HFExportError
from tpp.deploy.hf_config import ConfigMismatchError


def _pruned_llama(scope: str = "internal") -> nn.Module:
    torch.manual_seed(0)
    spec = SPECS["llama"]
    model = spec.build()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "pruning 64 of the 128 channels asked for ..."
        return tpp.TPPPruner(model, spec.inputs(), ratio=0.5, scope=scope).prune().eval()


@pytest.fixture(scope="module")
def pruned() -> nn.Module:
    return _pruned_llama()


def _logits(model: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(**SPECS["llama"].inputs()).logits


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def test_the_folder_describes_the_pruned_widths_and_loads_with_equal_logits(pruned, tmp_path):
    out = tpp.save_pretrained(pruned, tmp_path / "llama")
    config = json.loads((out / "config.json").read_text())
    down = pruned.model.layers[0].mlp.down_proj
    assert config["intermediate_size"] == down.in_features == 32
    heads = pruned.model.layers[0].self_attn.o_proj.in_features // config["head_dim"]
    kv = pruned.model.layers[0].self_attn.k_proj.out_features // config["head_dim"]
    assert (config["num_attention_heads"], config["num_key_value_heads"]) == (heads, kv)
    assert config["architectures"] == ["LlamaForCausalLM"] and "quantization_config" not in config
    assert "tpp" not in (out / "config.json").read_text().lower()  # nothing only tpp could load
    assert (out / "model.safetensors").is_file()
    loaded = transformers.AutoModelForCausalLM.from_pretrained(out, local_files_only=True)
    assert _relative(_logits(loaded), _logits(pruned)) <= 1e-5
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary sibling left


def test_a_gguf_quantization_config_is_dropped_and_the_pruned_file_loads(tmp_path):
    from transformers.utils.quantization_config import GgufConfig

    model = _pruned_llama()
    model.config.quantization_config = GgufConfig(gguf_file="model.Q4_1.gguf")  # what gguf_file= loading leaves
    tpp.save_pruned(model, tmp_path / "pruned.pt")
    again = tpp.load_pruned(tmp_path / "pruned.pt")  # was: "holds pickled code (QuantizationMethod)"
    assert _relative(_logits(again), _logits(model)) <= 1e-6  # rebuilt in the default (sdpa) attention
    out = tpp.save_pretrained(again, tmp_path / "hf")
    assert "quantization_config" not in json.loads((out / "config.json").read_text())


def test_layers_of_different_widths_are_refused_in_one_line(tmp_path):
    torch.manual_seed(0)
    model = SPECS["llama"].build()
    mlp = model.model.layers[0].mlp  # layer 0 keeps 48 neurons, layer 1 all 64
    mlp.gate_proj, mlp.up_proj = nn.Linear(32, 48, bias=False), nn.Linear(32, 48, bias=False)
    mlp.down_proj = nn.Linear(48, 32, bias=False)
    with pytest.raises(ConfigMismatchError) as caught:
        tpp.save_pretrained(model, tmp_path / "out")
    message = str(caught.value)
    assert "\n" not in message and "different MLP widths" in message and "tpp.save_pruned" in message
    assert not list(tmp_path.iterdir())


def test_a_config_without_a_field_for_the_width_is_refused(tmp_path):
    torch.manual_seed(0)
    model = SPECS["bloom"].build()
    for block in model.transformer.h:  # BloomMLP is 4 x hidden_size, whatever the config says
        block.mlp.dense_h_to_4h, block.mlp.dense_4h_to_h = nn.Linear(32, 64), nn.Linear(64, 32)
    with pytest.raises(ConfigMismatchError, match=r"cannot describe the pruned BloomForCausalLM: .*dense_h_to_4h"):
        tpp.save_pretrained(model, tmp_path / "out")


def test_a_folder_tpp_did_not_write_is_kept_unless_overwrite(pruned, tmp_path):
    folder = tmp_path / "theirs"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(HFExportError, match="was not written by tpp; pass --overwrite"):
        tpp.save_pretrained(pruned, folder)
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]
    tpp.save_pretrained(pruned, folder, overwrite=True)
    assert not (folder / "notes.txt").exists() and (folder / "config.json").is_file()
    tpp.save_pretrained(pruned, folder)  # its own folder: replaced without --overwrite
    with pytest.raises(HFExportError, match="not a folder"):
        tpp.save_pretrained(pruned, folder / "config.json")


def test_a_failed_check_leaves_the_previous_folder_whole(pruned, tmp_path, monkeypatch):
    import tpp.deploy.hf as hf

    folder = tpp.save_pretrained(pruned, tmp_path / "out")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def fail(model, tmp):
        raise HFExportError("the exported folder's logits differ; nothing was written")

    monkeypatch.setattr(hf, "_verify", fail)
    with pytest.raises(HFExportError):
        tpp.save_pretrained(pruned, folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    model = _pruned_llama()

    def full(folder, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(model, "save_pretrained", full)
    with pytest.raises(HFExportError, match=r"cannot write .*out: No space left on device; nothing was changed"):
        tpp.save_pretrained(model, tmp_path / "out")
    assert not list(tmp_path.iterdir())


def test_tokenizer_files_of_the_source_folder_are_kept(tmp_path):
    from tokenizers import Tokenizer, models

    torch.manual_seed(0)
    source = tmp_path / "source"
    SPECS["llama"].build().save_pretrained(source)
    vocab = {f"t{i}": i for i in range(128)}
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="t0")))
    fast.save_pretrained(source)
    model = tpp.models.build_model(f"hf:{source}")  # the folder's own class: a causal LM, not an image classifier
    assert type(model).__name__ == "LlamaForCausalLM"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = tpp.TPPPruner(model, SPECS["llama"].inputs(), ratio=0.5).prune()
    tpp.save_pruned(model, tmp_path / "pruned.pt")
    out = tpp.save_pretrained(tpp.load_pruned(tmp_path / "pruned.pt"), tmp_path / "out")
    assert (out / "tokenizer.json").is_file() and (out / "tokenizer_config.json").is_file()
    assert transformers.AutoTokenizer.from_pretrained(out).convert_tokens_to_ids("t5") == 5


def test_a_model_that_is_not_transformers_is_refused(tmp_path):
    with pytest.raises(HFExportError, match="not a transformers model"):
        tpp.save_pretrained(nn.Linear(2, 2), tmp_path / "out")


def test_tpp_export_format_hf(pruned, tmp_path, run_cli):
    tpp.save_pruned(pruned, tmp_path / "pruned.pt")
    result = run_cli("export", "--format", "hf", "--checkpoint", tmp_path / "pruned.pt", "--out", tmp_path / "hf")
    assert result.code == 0, result.err
    assert result.out.strip() == f"wrote {tmp_path / 'hf'}"
    loaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf", local_files_only=True)
    assert _relative(_logits(loaded), _logits(pruned)) <= 1e-5
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "a.txt").write_text("x")
    for extra, words in (([], "was not written by tpp"), (["--opset", "13"], "ONNX options")):
        result = run_cli(
            "export", "--format", "hf", "--checkpoint", tmp_path / "pruned.pt", "--out", tmp_path / "theirs", *extra
        )
        assert result.code == 2 and len(result.err_lines) == 1 and words in result.err, result.err


def test_the_readme_loop_for_a_causal_lm_runs_and_its_folder_loads(tmp_path, monkeypatch):
    import re
    from pathlib import Path

    from tokenizers import Tokenizer, models, pre_tokenizers

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", readme[readme.index("## Language models") :], re.S).group(1)
    # the only lines replaced: no download, a tiny Llama and tokenizer, a schedule that ends quickly
    code = code.replace('AutoModelForCausalLM.from_pretrained("HuggingFaceTB/SmolLM2-135M")', "small()")
    code = code.replace('AutoTokenizer.from_pretrained("HuggingFaceTB/SmolLM2-135M")', "words()")
    code = code.replace("for ids in token_batches:", "for ids in batches():")
    code = code.replace("heads=True)", "heads=True, reg_step=0.25, reg_interval=1, stabilize_iters=4)")
    assert code.count("small()") == 1 and code.count("words()") == 1 and "reg_step" in code and "batches()" in code

    def small():
        torch.manual_seed(0)
        return SPECS["llama"].build()

    def words():
        vocab = {w: i for i, w in enumerate("[UNK] pruning keeps what the model needs".split())}
        backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
        backend.pre_tokenizer = pre_tokenizers.Whitespace()
        return transformers.PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")

    def batches():
        generator = torch.Generator().manual_seed(0)
        return [torch.randint(3, 128, (4, 8), generator=generator) for _ in range(40)]

    monkeypatch.chdir(tmp_path)
    scope = {"small": small, "words": words, "batches": batches}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "pruning 64 of the ... channels asked for; left whole: ..."
        exec(compile(code, "README.md", "exec"), scope)
    assert scope["pruner"].done
    loaded = scope["model"]  # what from_pretrained read from the folder the loop wrote
    config = json.loads((tmp_path / "smollm2-pruned" / "config.json").read_text())
    assert config["intermediate_size"] == loaded.model.layers[0].mlp.down_proj.in_features == 32
    assert config["num_key_value_heads"] * config["head_dim"] == loaded.model.layers[0].self_attn.k_proj.out_features
    assert (tmp_path / "smollm2-pruned" / "tokenizer.json").is_file()
    assert sum(p.numel() for p in loaded.parameters()) < sum(p.numel() for p in small().parameters())
