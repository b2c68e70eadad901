"""Tokenizers of text data: ``bytes`` (the UTF-8 bytes, 256 symbols, needs nothing) or a
``transformers`` tokenizer read from local files only (``hf:DIR`` or ``hf:PATH/FILE.gguf``)."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from tpp.errors import DataError

_TOKENIZER_FIX = "pass --tokenizer bytes or --tokenizer hf:DIR with a folder holding tokenizer files"


@runtime_checkable
class Tokenizer(Protocol):
    """What the text loaders need of a tokenizer."""

    name: str
    vocab_size: int

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no special tokens added)."""
        ...


class ByteTokenizer:
    """The UTF-8 bytes of the text as tokens (vocabulary 256); needs no files."""

    name = "bytes"
    vocab_size = 256

    def encode(self, text: str) -> list[int]:
        """The UTF-8 bytes of ``text``."""
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int]) -> str:
        """The text of byte ids (invalid UTF-8 replaced by U+FFFD)."""
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")

    def __repr__(self) -> str:
        return "ByteTokenizer()"


class HFTokenizer:
    """A ``transformers`` tokenizer behind the :class:`Tokenizer` interface.

    Attributes:
        name: the source string it was loaded from (``hf:...``).
        vocab_size: ``len(tokenizer)`` (base vocabulary plus added tokens).
        tokenizer: the wrapped ``transformers`` tokenizer.
    """

    def __init__(self, tokenizer: Any, name: str) -> None:
        self.tokenizer = tokenizer
        self.name = name
        self.vocab_size = int(len(tokenizer))

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens.

        One call on the whole text (a fast tokenizer does the 290 KB python-docs train split in
        ~0.2 s): cutting it into chunks could split tokens that span the cut, e.g. ``"\\n\\n"``.
        """
        # verbose=False: no "longer than the maximum sequence length" warning (windows are cut later)
        return [int(i) for i in self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]]

    def decode(self, ids: Sequence[int]) -> str:
        """The text of token ids."""
        return str(self.tokenizer.decode([int(i) for i in ids]))

    def __repr__(self) -> str:
        return f"HFTokenizer({self.name!r}, vocab_size={self.vocab_size})"


def load_tokenizer(source: str | Tokenizer | None) -> Tokenizer:
    """The tokenizer ``source`` names.

    Args:
        source: None or ``"bytes"`` (:class:`ByteTokenizer`); ``"hf:DIR"`` (a folder with
            tokenizer files, read with ``local_files_only=True``); ``"hf:PATH/FILE.gguf"`` (the
            tokenizer inside a GGUF file, needs the ``gguf`` package); or a tokenizer object,
            returned as it is.

    Raises:
        DataError: the source cannot give a tokenizer (the message says what to pass instead).
    """
    if source is None:
        return ByteTokenizer()
    if not isinstance(source, str):
        if isinstance(source, Tokenizer):
            return source
        raise DataError(
            f"tokenizer {source!r} is neither a name nor an object with name, vocab_size and encode(); {_TOKENIZER_FIX}"
        )
    text = source.strip()
    if text.lower() == "bytes":
        return ByteTokenizer()
    if not text.startswith("hf:") or not text[3:].strip():
        raise DataError(f"unknown tokenizer {source!r}; {_TOKENIZER_FIX}")
    path = Path(text[3:].strip()).expanduser()
    if path.is_file() and path.suffix.lower() == ".gguf":
        folder, options = path.parent, {"gguf_file": path.name}
    elif path.is_dir():
        folder, options = path, {}
    else:
        raise DataError(f"tokenizer {source}: {path} is neither a folder nor a .gguf file; {_TOKENIZER_FIX}")
    transformers = _import_transformers()
    if options and importlib.util.find_spec("gguf") is None:
        raise DataError(f"tokenizer {source}: reading .gguf files needs the gguf package; pip install gguf")
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True, **options)
    except Exception as error:  # transformers raises many kinds (OSError, ValueError, KeyError ...)
        raise DataError(
            f"tokenizer {source}: cannot load a tokenizer from {path} ({_first_line(error)}); {_TOKENIZER_FIX}"
        ) from None
    return HFTokenizer(tokenizer, text)


def _import_transformers() -> Any:
    """``transformers``, or a one-line DataError. (tpp.models.external.require would do, but the
    layer contract keeps tpp.data from importing tpp.models.)"""
    try:
        return importlib.import_module("transformers")
    except Exception as error:  # missing, or broken against this torch
        raise DataError(
            f"tokenizer hf:... needs transformers, which cannot be imported ({_first_line(error)}); "
            "pip install 'tpp-pruning[transformers]', or pass --tokenizer bytes"
        ) from None


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
