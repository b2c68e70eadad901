"""The README's Python examples run: the third-party loop on a real transformers model."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import torch

import tpp
from tpp.util.inputs import logits_of

README = Path(__file__).resolve().parents[1] / "README.md"


def _block_after(heading: str) -> str:
    text = README.read_text()
    section = text[text.index(heading) :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_third_party_loop_from_the_readme_prunes_a_transformers_model_exactly(tmp_path, monkeypatch):
    import transformers

    code = _block_after("### Models from timm and transformers")
    # the only lines replaced: no download, a small model, 32-px data, a schedule that ends quickly
    code = code.replace('AutoModelForImageClassification.from_pretrained("facebook/deit-tiny-patch16-224")', "small()")
    code = code.replace("loader = train_loader", "loader = batches()")
    code = code.replace("torch.randn(2, 3, 224, 224)", "torch.randn(2, 3, 32, 32)")
    # 14 iterations, longer than one pass over the 10 batches: the loop must run epochs until done
    code = code.replace('scope="all")', 'scope="all", reg_step=0.25, reg_interval=2, stabilize_iters=6)')
    assert code.count("small()") == 1 and code.count("batches()") == 1 and "reg_step" in code

    def small():
        torch.manual_seed(0)
        config = transformers.DeiTConfig(
            image_size=32,
            patch_size=8,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            num_labels=10,
        )
        return transformers.DeiTForImageClassification(config)

    def batches():
        from tpp.data.embedded import load_mnist_subset

        images, labels = load_mnist_subset("train")
        x = (images[:160].float() / 255).expand(-1, 3, -1, -1)
        return [(x[i : i + 16], labels[i : i + 16]) for i in range(0, 160, 16)]

    monkeypatch.chdir(tmp_path)
    scope = {"small": small, "batches": batches}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec(compile(code, "README.md", "exec"), scope)
    said = [str(w.message) for w in caught if str(w.message).startswith("tpp: pruning")]
    assert len(said) == 1 and "attention heads" in said[0]  # one warning, and it says why
    pruned, inputs = scope["model"], scope["inputs"]
    assert scope["pruner"].done and scope["pruner"].iteration == 14 and (tmp_path / "deit-pruned.pt").is_file()
    assert not [w for w in caught if "before pruner.done" in str(w.message)]
    reloaded = tpp.load_pruned(tmp_path / "deit-pruned.pt")  # the file records the transformers config
    pruned.eval(), reloaded.eval()
    with torch.no_grad():
        assert torch.equal(logits_of(reloaded(**inputs)), logits_of(pruned(**inputs)))
    assert tpp.count(pruned, inputs).params < tpp.count(small(), inputs).params
