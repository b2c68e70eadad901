"""Checkpoint files: one format for every model tpp writes, read as data only.

A tpp checkpoint is a plain dict: ``format``, ``version``, ``model`` (the state_dict), ``tpp_spec``
(how to build the architecture), ``tpp_plan`` (for a pruned model: how to shrink it) and, for a
training run, the optimizer, epoch, RNG state and so on. Pruned models (:func:`save_pruned`) use
the same format. Files are read with ``torch.load(weights_only=True)`` after checks that name the
file and the problem in one line (:mod:`tpp.checkpoints.reading`).
"""

from tpp.checkpoints.format import (
    FORMAT,
    extract_state_dict,
    load_checkpoint,
    load_model_weights,
    make_payload,
    save_checkpoint,
)
from tpp.checkpoints.model_files import load_pruned, normalise, read_pruned, save_pruned

__all__ = [
    "FORMAT",
    "extract_state_dict",
    "load_checkpoint",
    "load_model_weights",
    "load_pruned",
    "make_payload",
    "normalise",
    "read_pruned",
    "save_checkpoint",
    "save_pruned",
]
