"""The data options of a command that reads a model file: what the file records, unless a flag says
otherwise, and a one-line refusal for a flag that would prepare the inputs differently than in
training (see :mod:`tpp.data.record`)."""

from __future__ import annotations

import argparse
from typing import Any, Mapping

from tpp.errors import ConfigError, DataError

# the options that set each compared entry of the record, for the refusal to name
_FLAGS = {
    "image_size": ("image_size",),
    "channels": ("channels",),
    "resize": ("resize",),
    "mean": ("normalize", "mean"),
    "std": ("normalize", "std"),
    "classes": ("data_dir",),
    "tokenizer": ("tokenizer",),
    "num_classes": ("dataset",),
    "val_split": ("val_split",),
}
_IMAGE_FOLDER_KEYS = ("image_size", "resize", "channels", "mean", "std")


def recorded_dataset(args: argparse.Namespace, payload: Mapping[str, Any], source: str) -> tuple[Any, dict[str, Any]]:
    """``(info, data)`` of the command's data, as :func:`tpp.cli.common.dataset_from_args` returns
    them: ``--dataset`` and the data flags where given, the file's record (``tpp_data``) elsewhere.

    Raises:
        ConfigError: no ``--dataset`` and the file records none.
        DataError: a flag (or another dataset) that contradicts the record, naming what to drop or pass.
    """
    from tpp.cli.common import dataset_from_args
    from tpp.data.info import canonical_name
    from tpp.data.record import describe_record, record_mismatch, recorded_data

    record = recorded_data(payload, source)
    asked = getattr(args, "dataset", None)
    if not asked and not record:
        raise ConfigError(f"{source} does not record the data it was trained on; pass --dataset (and its options)")
    dataset = canonical_name(asked or record["dataset"])
    same = dataset == canonical_name(record.get("dataset", dataset))
    spec = payload.get("tpp_spec") if isinstance(payload.get("tpp_spec"), Mapping) else {}
    config: dict[str, Any] = {"model": spec.get("spec") or spec.get("name")}
    if same:
        config.update(record)
    elif dataset == "imagefolder":  # the user's images, prepared as the model's training data was
        config.update({k: record[k] for k in _IMAGE_FOLDER_KEYS if k in record})
    config["dataset"] = dataset
    if getattr(args, "normalize", None) is not None and getattr(args, "mean", None) is None:
        config.pop("mean", None), config.pop("std", None)  # the user's preset, not the recorded values
    info, data = dataset_from_args(args, dataset, config)
    if same and not data.get("data_dir") and record.get("data_dir"):
        data = {**data, "data_dir": record["data_dir"]}
    problem = record_mismatch(record, info, data)
    if problem:
        given = [name for name in _FLAGS[problem[0]] if getattr(args, name, None) is not None]
        flag = "--" + (given[0] if given else "dataset").replace("_", "-")
        raise DataError(
            f"{source} was trained on {describe_record(record)}, and {flag} gives other inputs "
            f"({problem[1]}); drop or fix {flag}"
        )
    return info, data


def recorded_image(args: argparse.Namespace, record: Mapping[str, Any] | None, source: str) -> dict[str, Any]:
    """The image part of a data ``record`` (``{}`` for none, or for text): what shapes a model's example
    input (``image_size``, ``channels``, ``num_classes``) when the command has no data to read.

    Raises:
        DataError: ``--image-size``, ``--in-channels`` or ``--num-classes`` other than the recorded one.
    """
    from tpp.data.record import describe_record

    if not record or "tokenizer" in record:
        return {}
    for flag, key in (("image_size", "image_size"), ("in_channels", "channels"), ("num_classes", "num_classes")):
        given = getattr(args, flag, None)
        if given is not None and key in record and int(record[key]) != int(given):
            option = "--" + flag.replace("_", "-")
            raise DataError(f"{source} was trained on {describe_record(record)}, not {option} {given}; drop {option}")
    return dict(record)
