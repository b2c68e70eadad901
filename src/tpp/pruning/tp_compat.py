"""Two fail-soft guards around Torch-Pruning 1.6.1's channel-size inference.

Torch-Pruning treats every ``cat``/``split`` on dimension 1 as a channel concat/split. On token
tensors ``[B, N, C]`` (a class token joined to the patch tokens, as in CvT) dimension 1 is the token
axis, and two of its functions then raise instead of giving up on the index map:

* ``shape_infer.infer_channels_between`` indexes ``split_sizes`` past its end (``IndexError``);
* ``index_mapping.update_concat_index_mapping`` sums a size list that holds ``None`` (``TypeError``).

Both already give up (return ``None`` / leave the op unmapped) for the other cases they cannot size;
the guards make them do the same here. Behaviour only changes where Torch-Pruning would raise, and
tpp's trial removal checks the resulting groups anyway. :func:`apply_guards` is idempotent.
"""

from __future__ import annotations

import functools

from torch_pruning.dependency import index_mapping, shape_infer


def _fail_soft(function, errors):
    if getattr(function, "_tpp_guarded", False):
        return function

    @functools.wraps(function)
    def guarded(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except errors:
            return None

    guarded._tpp_guarded = True
    return guarded


def apply_guards() -> None:
    """Install both guards (once; later calls do nothing)."""
    shape_infer.infer_channels_between = _fail_soft(shape_infer.infer_channels_between, IndexError)
    index_mapping.update_concat_index_mapping = _fail_soft(index_mapping.update_concat_index_mapping, TypeError)
