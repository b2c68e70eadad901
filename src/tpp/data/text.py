"""Language-model text data: tokenizers, a corpus of train/valid/test splits, and window loaders.

A corpus is a folder holding ``train.txt``, ``valid.txt`` and ``test.txt`` (UTF-8). Each split is
tokenised once into one 1-D tensor and served as non-overlapping windows of ``seq_len + 1``
tokens: ``inputs = window[:-1]``, ``targets = window[1:]``. With no folder, a tiny corpus shipped
inside the package (the start of the Python reference documentation, PSF licence) is used, so
demos and tests run with no data and no network.

Tokenizers: ``bytes`` (the UTF-8 bytes, 256 symbols, needs nothing) or ``hf:DIR`` /
``hf:PATH/FILE.gguf`` (a ``transformers`` tokenizer read from local files only).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

from tpp.data.description import DatasetInfo
from tpp.data.loader import EpochBatches, epoch_generator
from tpp.data.tokenizers import ByteTokenizer, Tokenizer, load_tokenizer
from tpp.errors import DataError
from tpp.util.files import FileTooLarge, read_bounded

SPLITS: tuple[str, ...] = ("train", "valid", "test")
MAX_SPLIT_BYTES = 256 * 2**20  # per file: a corpus this size is already ~100M byte tokens
EMBEDDED_DIR = ("embedded", "text")  # under the tpp.data package


@dataclass(frozen=True)
class TextSplit:
    """One tokenised split of a corpus.

    Attributes:
        tokens: int64 token ids, 1-D.
        num_bytes: UTF-8 bytes of the split's text (for bits-per-byte figures).
        source: where the text came from (a path, or ``embedded:...``), for messages.
    """

    tokens: torch.Tensor
    num_bytes: int
    source: str = ""

    @property
    def bytes_per_token(self) -> float:
        """UTF-8 bytes per token of this split (1.0 for the byte tokenizer)."""
        return self.num_bytes / max(1, int(self.tokens.numel()))


def read_text_splits(
    data_dir: str | os.PathLike[str] | None,
    tokenizer: str | Tokenizer | None,
    splits: Sequence[str] = SPLITS,
    *,
    min_tokens: int = 2,
) -> dict[str, TextSplit]:
    """Read and tokenise ``DIR/<split>.txt`` for each split (the embedded corpus when ``data_dir`` is None).

    Args:
        data_dir: folder holding ``train.txt``, ``valid.txt``, ``test.txt``; None: the tiny corpus
            shipped in the package.
        tokenizer: a :class:`Tokenizer` or a source for :func:`load_tokenizer`.
        splits: which splits to read.
        min_tokens: fewest tokens a split may have (one window of ``seq_len + 1`` tokens).

    Raises:
        DataError: a file is missing, not a regular file, over 256 MiB, not UTF-8, or too short.
    """
    tok = load_tokenizer(tokenizer)
    out: dict[str, TextSplit] = {}
    for split in splits:
        if split not in SPLITS:
            raise DataError(f"unknown text split {split!r}; choose one of {', '.join(SPLITS)}")
        if data_dir is None or str(data_dir) == "":
            source, data = f"embedded:{'/'.join(EMBEDDED_DIR)}/{split}.txt", _embedded_bytes(split)
        else:
            path = Path(data_dir).expanduser() / f"{split}.txt"
            source, data = str(path), _file_bytes(path)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise DataError(
                f"{source} is not UTF-8 text (bad byte at offset {error.start}); "
                "convert it to UTF-8 (e.g. iconv -t UTF-8)"
            ) from None
        if isinstance(tok, ByteTokenizer):  # the bytes are the tokens: no Python list of 10^8 ints
            tokens = torch.frombuffer(bytearray(data), dtype=torch.uint8).to(torch.int64)
        else:
            tokens = torch.tensor(tok.encode(text), dtype=torch.int64)
        if tokens.numel() < min_tokens:
            raise DataError(
                f"{source} has {tokens.numel()} tokens ({tok.name}), fewer than the {min_tokens} of "
                "one window; add text to it or pass a shorter --seq-len"
            )
        out[split] = TextSplit(tokens, len(data), source)
    return out


def _file_bytes(path: Path) -> bytes:
    fix = f"put the {path.stem} split there as UTF-8 text (a folder needs {', '.join(s + '.txt' for s in SPLITS)})"
    try:
        return read_bounded(path, MAX_SPLIT_BYTES)
    except FileNotFoundError:
        raise DataError(f"text file {path} is missing; {fix}") from None
    except FileTooLarge:
        raise DataError(
            f"text file {path} holds more than {MAX_SPLIT_BYTES // 2**20} MiB; use a shorter excerpt of the corpus"
        ) from None
    except OSError as error:
        raise DataError(f"text file {path} cannot be read ({error.strerror or error}); {fix}") from None


def _embedded_bytes(split: str) -> bytes:
    ref = resources.files("tpp.data").joinpath(*EMBEDDED_DIR, f"{split}.txt")
    try:
        return ref.read_bytes()
    except OSError as error:
        raise DataError(
            f"embedded text tpp/data/{'/'.join(EMBEDDED_DIR)}/{split}.txt cannot be read "
            f"({error.strerror or error}); reinstall tpp-pruning"
        ) from None


class TextLoader(EpochBatches):
    """Iterate ``(inputs, targets)`` int64 batches ``[B, T]`` of next-token windows over a token stream.

    The stream is cut into ``N = (len(tokens) - 1) // T`` non-overlapping windows of ``T + 1``
    tokens (stride ``T``; the last partial window is dropped); ``targets`` are ``inputs`` shifted
    by one token. The contract mirrors :class:`tpp.data.loader.TensorLoader`: each epoch's
    order is drawn from a generator seeded with ``(seed, epoch)`` and changes only through
    :meth:`set_epoch`; with ``world_size > 1`` every rank draws the same global order, pads it
    by repeating leading entries to a multiple of ``world_size`` and keeps
    ``order[rank::world_size]``, so all ranks see the same number of batches.

    Args:
        tokens: int64 token ids, 1-D.
        seq_len: ``T``, tokens per input row.
        batch_size: windows per batch.
        shuffle: permute the windows each epoch (training).
        drop_last: drop this rank's final incomplete batch.
        windows_per_epoch: draw this many windows per epoch at random (with ``shuffle``;
            drawn without replacement while it does not exceed ``N``, seeded by (seed, epoch));
            None: every window once.
        bytes_per_token: of the split (for bits-per-byte figures); kept as an attribute.
        device: where the tokens live and batches are produced.
        seed: base seed of the per-epoch order.
        rank: this process's rank.
        world_size: number of processes sharing an epoch.

    Attributes:
        seq_len, bytes_per_token, num_windows (``N``), tokens (target tokens one pass yields on
        this rank).
    """

    def __init__(
        self,
        tokens: torch.Tensor,
        *,
        seq_len: int,
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        windows_per_epoch: int | None = None,
        bytes_per_token: float = 1.0,
        device: str | torch.device = "cpu",
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not isinstance(tokens, torch.Tensor) or tokens.dim() != 1:
            raise DataError("TextLoader tokens must be a 1-D tensor of token ids; tokenise the text first")
        if int(seq_len) < 1 or int(batch_size) < 1:
            raise DataError(
                f"seq_len and batch_size must be >= 1, got {seq_len} and {batch_size}; pass positive values"
            )
        if int(world_size) < 1 or not 0 <= int(rank) < int(world_size):
            raise DataError(
                f"Need 0 <= rank < world_size, got rank={rank}, world_size={world_size}; "
                "check the launcher's environment."
            )
        if windows_per_epoch is not None and (not shuffle or int(windows_per_epoch) < 1):
            raise DataError(
                f"windows_per_epoch={windows_per_epoch} needs a shuffled (training) loader and a value "
                ">= 1; omit it to use every window once"
            )
        self.seq_len = int(seq_len)
        self.num_windows = (int(tokens.numel()) - 1) // self.seq_len
        if self.num_windows < 1:
            raise DataError(
                f"{tokens.numel()} tokens are fewer than one window of seq_len+1={self.seq_len + 1}; "
                "pass a shorter --seq-len or more text"
            )
        self.device = torch.device(device)
        self.data = tokens.to(self.device, torch.int64)
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.windows_per_epoch = None if windows_per_epoch is None else int(windows_per_epoch)
        self.bytes_per_token = float(bytes_per_token)
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.epoch = 0
        per_epoch = self.windows_per_epoch or self.num_windows
        self.num_samples = math.ceil(per_epoch / self.world_size)  # windows per rank per epoch
        self._offsets = torch.arange(self.seq_len + 1, device=self.device)

    @property
    def tokens(self) -> int:
        """Target tokens one pass over this rank's batches yields."""
        windows = len(self) * self.batch_size if self.drop_last else self.num_samples
        return windows * self.seq_len

    def indices(self) -> torch.Tensor:
        """This rank's window indices for the current epoch, in batch order (CPU int64)."""
        n = self.num_windows
        if not self.shuffle:
            order = torch.arange(n)
        else:
            gen = epoch_generator(self.seed, self.epoch)
            want = self.windows_per_epoch or n
            # whole permutations, concatenated: each window at most once while want <= n
            order = torch.cat([torch.randperm(n, generator=gen) for _ in range(math.ceil(want / n))])[:want]
        total = self.num_samples * self.world_size
        if total > len(order):  # repeat leading windows so every rank gets the same count
            order = order.repeat(math.ceil(total / len(order)))[:total]
        return order[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        idx = self.indices().to(self.device)
        for b in range(len(self)):
            starts = idx[b * self.batch_size : (b + 1) * self.batch_size] * self.seq_len
            windows = self.data[starts.unsqueeze(1) + self._offsets]  # [B, T+1] in one gather
            yield windows[:, :-1], windows[:, 1:]


def text_info(name: str, tokenizer: Tokenizer, seq_len: int, bytes_per_token: float = 0.0) -> DatasetInfo:
    """The :class:`DatasetInfo` of a text dataset: classes = vocabulary, ``image_size`` = ``seq_len``, one
    input channel (token ids), which is what a model built for it records."""
    return DatasetInfo(
        name,
        int(tokenizer.vocab_size),
        1,
        int(seq_len),
        (),
        (),
        False,
        kind="text",
        tokenizer=tokenizer.name,
        bytes_per_token=float(bytes_per_token),
    )


def build_text_loaders(
    data_dir: str | os.PathLike[str] | None,
    tokenizer: str | Tokenizer | None,
    *,
    seq_len: int = 256,
    batch_size: int,
    test_batch_size: int,
    eval_split: str = "test",
    device: str | torch.device = "cpu",
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    windows_per_epoch: int | None = None,
) -> tuple[TextLoader, TextLoader, DatasetInfo]:
    """``(train_loader, eval_loader, info)`` for the corpus in ``data_dir`` (None: the embedded one).

    The training loader is shuffled per epoch and sharded over ``world_size`` ranks; the
    evaluation loader (split ``eval_split``, ``valid`` or ``test``) yields every window once in
    order, keeps the last partial batch and is not sharded. ``info.name`` is ``text`` or
    ``text_tiny`` (embedded corpus); ``info.num_classes`` is the vocabulary size and
    ``info.bytes_per_token`` that of the evaluation split.

    Raises:
        DataError: a bad tokenizer, split name, file, or a split shorter than one window.
    """
    if eval_split not in ("valid", "test"):
        raise DataError(f"eval_split must be valid or test, got {eval_split!r}; pass one of them")
    if int(seq_len) < 1:
        raise DataError(f"seq_len must be >= 1, got {seq_len}; pass a positive sequence length")
    tok = load_tokenizer(tokenizer)
    splits = read_text_splits(data_dir, tok, ("train", eval_split), min_tokens=int(seq_len) + 1)
    train_split, eval_data = splits["train"], splits[eval_split]
    train = TextLoader(
        train_split.tokens,
        seq_len=seq_len,
        batch_size=batch_size,
        shuffle=True,
        windows_per_epoch=windows_per_epoch,
        bytes_per_token=train_split.bytes_per_token,
        device=device,
        seed=seed,
        rank=rank,
        world_size=world_size,
    )
    evaluate = TextLoader(
        eval_data.tokens,
        seq_len=seq_len,
        batch_size=test_batch_size,
        bytes_per_token=eval_data.bytes_per_token,
        device=device,
    )
    name = "text_tiny" if data_dir is None or str(data_dir) == "" else "text"
    return train, evaluate, text_info(name, tok, seq_len, eval_data.bytes_per_token)
