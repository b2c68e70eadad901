"""The data a model was trained on, recorded in its files: dataset, input size, channels,
normalisation, classes (text: tokenizer and window length).

A model is only right on inputs prepared as in training: evaluated on 224-pixel crops, a net
trained on 32-pixel images reports chance without an error. So every checkpoint tpp writes keeps
``tpp_data`` (:func:`data_record`), commands that read a model take their data options from it,
and :func:`record_mismatch` finds an option that would prepare the inputs differently.

The record uses the command-line option names (``image_size``, ``channels``, ``mean``, ...), so a
command reads it as it reads a run's ``config.json``.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from tpp.data.description import DatasetInfo
from tpp.errors import DataError

RECORD_KEY = "tpp_data"  # the checkpoint entry (tpp.checkpoints.format.make_payload)
_IMAGE_KEYS = ("image_size", "resize", "channels", "mean", "std")
_TEXT_KEYS = ("tokenizer", "seq_len", "eval_split")


def data_record(info: DatasetInfo, data: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The plain-data record of ``info`` and the loader arguments ``data`` (``data_dir``,
    ``image_options`` or the text settings) that :func:`tpp.data.build_loaders` received."""
    data = data or {}
    record: dict[str, Any] = {"dataset": info.name, "num_classes": int(info.num_classes)}
    if data.get("data_dir"):
        record["data_dir"] = str(data["data_dir"])
    if info.kind == "text":
        tokenizer = data.get("tokenizer")
        return {
            **record,
            "tokenizer": getattr(tokenizer, "name", tokenizer) or info.tokenizer,
            "seq_len": int(data.get("seq_len") or info.image_size),
            "eval_split": data.get("eval_split", "test"),
        }
    if data.get("val_split") is not None:  # the carve its training never saw (tpp.data.builders.validation_indices)
        record["val_split"] = float(data["val_split"])
    options = data.get("image_options")
    resize = getattr(options, "resize", None)
    record.update(
        image_size=int(info.image_size),
        channels=int(info.in_channels),
        mean=[float(m) for m in info.mean],
        std=[float(s) for s in info.std],
    )
    if resize is not None:
        record["resize"] = int(resize)
    if info.classes:
        record["classes"] = list(info.classes)
    return record


def recorded_data(payload: Mapping[str, Any], source: str = "the checkpoint") -> dict[str, Any]:
    """The data record of a checkpoint dict: its ``tpp_data``, else what its run's ``config``
    says (files written before the record existed); ``{}`` when neither names a dataset.

    Raises:
        DataError: a record whose entries are not what tpp writes (a damaged or hand-made file),
            naming ``source`` and the entry.
    """
    record = payload.get(RECORD_KEY)
    if isinstance(record, Mapping) and isinstance(record.get("dataset"), str):
        record = dict(record)
    else:
        config = payload.get("config")
        if not isinstance(config, Mapping) or not isinstance(config.get("dataset"), str):
            return {}
        keys = ("dataset", "data_dir", "normalize", "val_split", *_IMAGE_KEYS, *_TEXT_KEYS)
        record = {k: config[k] for k in keys if config.get(k) is not None}
    for key, value in record.items():
        check = _CHECKS.get(key)
        if check is not None and not check(value):
            raise DataError(
                f"{source} records a malformed data entry {key}={_show(value)[:80]}, so it is damaged "
                "or was not written by tpp; re-create it with tpp train or tpp prune"
            )
    return record


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 1 << 20


def _numbers(value: Any) -> bool:
    return (
        isinstance(value, (list, tuple))
        and 1 <= len(value) <= 3
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    )


def _texts(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)


# what each entry of a record may hold (a file is not trusted to be one tpp wrote)
_CHECKS = {
    "num_classes": _count,
    "image_size": _count,
    "channels": lambda v: v in (1, 3) and not isinstance(v, bool),
    "resize": _count,
    "mean": _numbers,
    "std": _numbers,
    "classes": _texts,
    "seq_len": _count,
    "data_dir": lambda v: isinstance(v, str),
    "normalize": lambda v: isinstance(v, str),
    "tokenizer": lambda v: isinstance(v, str),
    "eval_split": lambda v: v in ("valid", "test"),
    "val_split": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 0.5,
}


# what each compared entry is, in words
_WORDS = {
    "val_split": "validation carve",
    "num_classes": "classes",
    "tokenizer": "tokenizer",
    "image_size": "input size",
    "channels": "channels",
    "resize": "resize",
    "mean": "normalisation mean",
    "std": "normalisation std",
    "classes": "class names",
}


def record_mismatch(record: Mapping[str, Any], info: DatasetInfo, data: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(key, words)`` of the first entry that would prepare the inputs otherwise than ``record``
    says (``("image_size", "input size 32 in the record, 224 now")``), or None.

    Compares the resolved ``info``/``data`` of a command with the record: input size, channels,
    resize, normalisation and classes for images; the tokenizer and vocabulary for text. A window
    length or split other than the recorded one is a legitimate choice, not a mismatch."""
    if not record:
        return None
    now = data_record(info, data)
    keys = ["num_classes"] + (
        ["tokenizer"] if info.kind == "text" else ["image_size", "channels", "resize", "mean", "std", "classes"]
    )
    if info.kind != "text" and "val_split" in now and record.get("val_split") != now["val_split"]:
        # another carve (or one of a model trained on every image) holds images its training saw
        if record.get("val_split") is None:
            return "val_split", "it was trained on every training image, so a validation carve holds images it has seen"
        return "val_split", f"validation carve {_show(record.get('val_split'))} in the record, {now['val_split']:g} now"
    for key in keys:
        if key not in record or key not in now:
            continue  # e.g. a built-in dataset names no classes (their number was compared), no resize given
        if not _same(record[key], now[key]):
            return key, f"{_WORDS[key]} {_show(record[key])} in the record, {_show(now[key])} now"
    return None


def describe_record(record: Mapping[str, Any]) -> str:
    """``"mnist (1-channel 32x32 images, 10 classes)"``: a record in words, for messages."""
    name = record.get("dataset", "?")
    if "tokenizer" in record:
        return f"{name} (tokenizer {record['tokenizer']}, {record.get('seq_len', '?')}-token windows)"
    size = record.get("image_size", "?")
    return (
        f"{name} ({record.get('channels', '?')}-channel {size}x{size} images, {record.get('num_classes', '?')} classes)"
    )


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        try:
            return abs(float(a) - float(b)) <= 1e-6 * max(1.0, abs(float(a)))
        except (TypeError, ValueError):
            return False
    return a == b


def _show(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        shown = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value[:6])
        return f"[{shown}{',...' if len(value) > 6 else ''}]"
    return "none" if value is None else str(value)
