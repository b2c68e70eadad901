"""Language-model text data: tokenizers, corpus reading and the window loaders (tpp.data.text)."""

from __future__ import annotations

import os
import sys

import pytest
import torch

from tpp.data import build_loaders, dataset_info
from tpp.data.text import TextLoader, build_text_loaders, read_text_splits
from tpp.data.tokenizers import ByteTokenizer, load_tokenizer
from tpp.errors import DataError


def write_corpus(root, train="hello world, " * 20, valid="valid text\n" * 5, test="test text ok\n" * 5):
    for name, text in (("train", train), ("valid", valid), ("test", test)):
        (root / f"{name}.txt").write_text(text, encoding="utf-8")
    return root


def test_byte_tokenizer_round_trips_utf8():
    tok = ByteTokenizer()
    text = "héllo → wörld ✓\n"
    ids = tok.encode(text)
    assert ids == list(text.encode("utf-8")) and tok.vocab_size == 256 and tok.name == "bytes"
    assert tok.decode(ids) == text
    assert isinstance(load_tokenizer(None), ByteTokenizer) and isinstance(load_tokenizer("bytes"), ByteTokenizer)


def test_windows_are_non_overlapping_and_targets_are_shifted_by_one():
    tokens = torch.arange(23)
    loader = TextLoader(tokens, seq_len=5, batch_size=2)
    assert loader.num_windows == 4 and len(loader) == 2 and loader.tokens == 20  # (23 - 1) // 5, tail dropped
    batches = list(loader)
    inputs = torch.cat([x for x, _ in batches])
    targets = torch.cat([y for _, y in batches])
    assert inputs.dtype == targets.dtype == torch.int64 and inputs.shape == (4, 5)
    assert torch.equal(inputs, torch.arange(20).view(4, 5))
    assert torch.equal(targets, inputs + 1)


def test_set_epoch_makes_an_epoch_a_function_of_seed_and_epoch():
    tokens = torch.arange(1001)
    make = lambda seed: TextLoader(tokens, seq_len=10, batch_size=8, shuffle=True, seed=seed)  # noqa: E731
    a, b = make(3), make(3)
    a.set_epoch(2)
    b.set_epoch(1)
    b.set_epoch(2)
    assert all(torch.equal(x, y) for (x, _), (y, _) in zip(a, b))
    first = torch.cat([x for x, _ in a])
    assert torch.equal(first, torch.cat([x for x, _ in a]))  # iterating again without set_epoch: same epoch
    a.set_epoch(3)
    assert not torch.equal(first, torch.cat([x for x, _ in a]))
    assert sorted(a.indices().tolist()) == list(range(100))  # every window once
    assert not torch.equal(make(4).indices(), make(3).indices())


def test_windows_per_epoch_draws_that_many_distinct_windows():
    loader = TextLoader(torch.arange(1001), seq_len=10, batch_size=4, shuffle=True, windows_per_epoch=30, seed=1)
    idx = loader.indices()
    assert len(idx) == 30 and len(set(idx.tolist())) == 30 and len(loader) == 8 and loader.tokens == 300
    loader.set_epoch(1)
    assert not torch.equal(idx, loader.indices())
    more = TextLoader(torch.arange(101), seq_len=10, batch_size=4, shuffle=True, windows_per_epoch=25)
    assert len(more.indices()) == 25 and set(more.indices().tolist()) == set(range(10))
    with pytest.raises(DataError, match="windows_per_epoch"):
        TextLoader(torch.arange(101), seq_len=10, batch_size=4, windows_per_epoch=5)  # not a training loader


def test_two_ranks_get_disjoint_windows_covering_the_epoch():
    tokens = torch.arange(1001)
    ranks = [TextLoader(tokens, seq_len=10, batch_size=8, shuffle=True, seed=5, rank=r, world_size=2) for r in (0, 1)]
    for loader in ranks:
        loader.set_epoch(4)
    a, b = (set(loader.indices().tolist()) for loader in ranks)
    assert not a & b and a | b == set(range(100)) and len(ranks[0]) == len(ranks[1])
    starts = torch.cat([x[:, 0] for x, _ in ranks[1]]) // 10
    assert set(starts.tolist()) == b


def test_eval_loader_keeps_the_last_partial_batch_in_order(tmp_path):
    write_corpus(tmp_path, test="abcdefghij" * 7)  # 70 bytes -> 6 windows of 11
    train, evaluate, info = build_text_loaders(tmp_path, "bytes", seq_len=11, batch_size=4, test_batch_size=4)
    sizes = [x.shape[0] for x, _ in evaluate]
    assert sizes == [4, 2] and evaluate.tokens == 66
    data = torch.tensor(list(b"abcdefghij" * 7))
    assert torch.equal(torch.cat([x for x, _ in evaluate])[:, 0], data[torch.arange(6) * 11])  # in order
    assert info.name == "text" and info.kind == "text" and info.num_classes == 256 and info.image_size == 11
    assert info.in_channels == 1 and info.mean == () and info.augment is False and info.tokenizer == "bytes"


def test_embedded_corpus_reads_with_one_byte_per_token():
    splits = read_text_splits(None, ByteTokenizer())
    assert set(splits) == {"train", "valid", "test"}
    assert 20_000 < splits["train"].num_bytes < 30_000 and 4_000 < splits["test"].num_bytes < 8_000
    assert all(s.bytes_per_token == 1.0 for s in splits.values())
    train, evaluate, info = build_loaders("text_tiny", batch_size=4, test_batch_size=8, seq_len=64)
    assert info.name == "text_tiny" and info.bytes_per_token == 1.0 and train.bytes_per_token == 1.0
    x, y = next(iter(train))
    assert x.shape == y.shape == (4, 64)
    assert dataset_info("text_tiny").num_classes == 256 and dataset_info("text").kind == "text"


def test_bad_corpus_files_give_one_line_data_errors(tmp_path):
    with pytest.raises(DataError, match=r"train\.txt is missing") as missing:
        read_text_splits(tmp_path, "bytes")
    assert "\n" not in str(missing.value)
    write_corpus(tmp_path)
    (tmp_path / "valid.txt").write_bytes(b"ok \xff\xfe bad")
    with pytest.raises(DataError, match=r"valid\.txt is not UTF-8.*offset 3"):
        read_text_splits(tmp_path, "bytes")
    (tmp_path / "valid.txt").unlink()
    os.mkdir(tmp_path / "valid.txt")
    with pytest.raises(DataError, match=r"valid\.txt cannot be read.*directory"):
        read_text_splits(tmp_path, "bytes", ("valid",))
    (tmp_path / "test.txt").write_text("short")
    with pytest.raises(DataError, match=r"test\.txt has 5 tokens.*seq-len"):
        build_text_loaders(tmp_path, "bytes", seq_len=16, batch_size=2, test_batch_size=2)
    for bad in ("nonsense", "hf:" + str(tmp_path / "absent")):
        with pytest.raises(DataError, match="--tokenizer bytes"):
            load_tokenizer(bad)
    with pytest.raises(DataError, match="--tokenizer bytes"):
        load_tokenizer(f"hf:{tmp_path}")  # a folder with no tokenizer files


def test_build_loaders_text_with_a_folder(tmp_path):
    write_corpus(tmp_path)
    train, evaluate, info = build_loaders(
        "text",
        tmp_path,
        tokenizer=ByteTokenizer(),
        seq_len=16,
        batch_size=3,
        test_batch_size=5,
        eval_split="valid",
        seed=1,
    )
    x, y = next(iter(train))
    assert x.shape == (3, 16) and torch.equal(x[:, 1:], y[:, :-1])
    assert evaluate.num_windows == (50 - 1) // 16 and info.name == "text" and info.image_size == 16
    with pytest.raises(DataError, match="train_subset"):
        build_loaders("text", tmp_path, train_subset=10)


def test_a_local_hf_tokenizer_folder_loads(tmp_path):
    import tokenizers
    import transformers

    vocab = {"[UNK]": 0, "hello": 1, "world": 2, "text": 3}
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")
    fast.save_pretrained(tmp_path / "tok")
    tok = load_tokenizer(f"hf:{tmp_path / 'tok'}")
    assert tok.name == f"hf:{tmp_path / 'tok'}" and tok.vocab_size == 4
    assert tok.encode("hello world\ntext other") == [1, 2, 3, 0]
    write_corpus(tmp_path, train="hello world " * 30, valid="text " * 20, test="world " * 20)
    _, evaluate, info = build_text_loaders(tmp_path, tok, seq_len=4, batch_size=2, test_batch_size=2)
    assert info.num_classes == 4 and info.tokenizer == tok.name
    assert evaluate.bytes_per_token == pytest.approx(6.0)  # "world " per token


def test_gguf_specs_without_a_file_or_the_gguf_package_give_one_line_errors(tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    from tpp.errors import ModelError
    from tpp.models import build_model

    with pytest.raises(ModelError, match="not a file"):
        build_model(f"hf:{tmp_path / 'absent.gguf'}", 10, 1)
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"GGUF")
    monkeypatch.setitem(sys.modules, "gguf", None)  # as if it were not installed
    with pytest.raises(ModelError, match="pip install gguf") as error:
        build_model(f"hf:{fake}", 10, 1)
    assert "\n" not in str(error.value)
    with pytest.raises(DataError, match="pip install gguf"):
        load_tokenizer(f"hf:{fake}")
