"""The text-data options of a command (``--dataset text``): the tokenizer a model implies, and what a
run records of its text so that eval and a resume read the same windows."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tpp.errors import ConfigError

DEFAULT_SEQ_LEN = 256


def text_dataset(args: argparse.Namespace, name: str, config: dict[str, Any] | None) -> tuple[Any, dict[str, Any]]:
    """``(info, data)`` of a text dataset; unset options come from ``config`` (what a run recorded).
    Image options were refused by the caller (:func:`tpp.cli.common.dataset_from_args`)."""
    from tpp.data.text import load_tokenizer, text_info

    config = config or {}

    def option(key: str, default: Any = None) -> Any:
        value = getattr(args, key, None)
        return value if value is not None else config.get(key, default)

    data_dir = option("data_dir") if name == "text" else None
    if name == "text" and not data_dir:
        raise ConfigError(
            "--dataset text needs --data-dir DIR holding train.txt, valid.txt and test.txt "
            "(or use --dataset text_tiny, the built-in corpus)"
        )
    source = option("tokenizer") or tokenizer_of_model(getattr(args, "model", None) or config.get("model"))
    tokenizer = load_tokenizer(source)
    data = {
        "data_dir": data_dir,
        "seq_len": int(option("seq_len", DEFAULT_SEQ_LEN)),
        "tokenizer": tokenizer,
        "eval_split": option("eval_split", "test"),
        "windows_per_epoch": option("windows_per_epoch"),
    }

    return text_info(name, tokenizer, data["seq_len"]), data


def tokenizer_of_model(spec: str | None) -> str:
    """The tokenizer a model spec implies: its own for an ``hf:`` folder or GGUF file, else bytes."""
    if isinstance(spec, str) and spec.startswith("hf:"):
        target = Path(spec[3:]).expanduser()
        if target.suffix == ".gguf" or (
            target.is_dir()
            and any((target / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model"))
        ):
            return spec
    return "bytes"


def text_settings(data: dict[str, Any]) -> dict[str, Any]:
    """What a run records of its text data (plain values), so that eval and a resume read the same."""
    tokenizer = data.get("tokenizer")
    return {
        "seq_len": data.get("seq_len"),
        "tokenizer": getattr(tokenizer, "name", None),
        "eval_split": data.get("eval_split"),
        "windows_per_epoch": data.get("windows_per_epoch"),
    }
