"""A pruned ``transformers`` model as a ``from_pretrained`` folder that loads without tpp.

:func:`save_pretrained` writes ``config.json`` (the pruned widths, see :mod:`tpp.deploy.hf_config`),
the weights as safetensors and the generation config with ``transformers``' own
``PreTrainedModel.save_pretrained``, plus the tokenizer files of the folder the model came from.
Nothing in the folder names tpp except a ``.tpp-export`` mark (a hidden JSON file ``from_pretrained``
never reads) that lets a later export replace the folder. The folder is built in a temporary
sibling, checked by loading it back with ``from_pretrained`` and comparing logits, and only then
renamed into place, so ``folder`` is either as it was or complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from tpp.deploy.hf_config import pruned_config
from tpp.errors import TPPError
from tpp.util.modules import unwrap
from tpp.util.owned import GENERATOR

MARK = ".tpp-export"
# files a tokenizer's save_pretrained writes (fast and slow tokenizers, chat templates)
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "vocab.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
    "chat_template.jinja",
    "chat_template.json",
)
VERIFY_TOLERANCE = 1e-6  # the same process, the same kernels: logits of the reloaded folder match to rounding


class HFExportError(TPPError):
    """A model cannot be written as a ``from_pretrained`` folder."""


def folder_is_ours(path: Path) -> bool:
    """Whether ``path`` is a folder tpp exported (its ``.tpp-export`` mark names tpp)."""
    try:
        data = json.loads((path / MARK).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and str(data.get("generator", "")).startswith(GENERATOR)


def _check_destination(folder: Path, overwrite: bool) -> None:
    if not os.path.lexists(folder):
        return
    if not folder.is_dir() or folder.is_symlink():
        raise HFExportError(f"cannot write {folder}: it exists and is not a folder; choose another --out")
    if overwrite or folder_is_ours(folder) or not any(folder.iterdir()):
        return
    raise HFExportError(
        f"{folder} exists and was not written by tpp; pass --overwrite (overwrite=True) to replace it, "
        "or choose another folder"
    )


def source_folder(model: nn.Module) -> Path | None:
    """The local folder ``model`` was loaded from (``hf:DIR`` or ``from_pretrained(DIR)``), if any."""
    spec = str((getattr(model, "tpp_spec", None) or {}).get("spec", ""))
    candidates = [spec[3:]] if spec.startswith("hf:") else []
    candidates += [getattr(model, "name_or_path", ""), getattr(getattr(model, "config", None), "_name_or_path", "")]
    for candidate in candidates:
        if candidate and Path(candidate).expanduser().is_dir():
            return Path(candidate).expanduser()
    return None


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:200]}" if lines else type(error).__name__


def _example_ids(model: nn.Module) -> torch.Tensor | None:
    vocab = getattr(model.config, "vocab_size", None)
    if not isinstance(vocab, int) or vocab < 4:
        return None
    generator = torch.Generator().manual_seed(0)
    return torch.randint(3, vocab, (2, 8), generator=generator)


def _logits(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            device = next((p.device for p in model.parameters()), torch.device("cpu"))
            return model(input_ids=ids.to(device), use_cache=False).logits.float().cpu()
    finally:
        model.train(was_training)


def _verify(model: nn.Module, folder: Path) -> float | None:
    """Load ``folder`` with ``from_pretrained`` and return the relative max difference of the logits."""
    ids = _example_ids(model)
    if ids is None:
        return None
    try:
        loaded = type(model).from_pretrained(
            str(folder),
            local_files_only=True,
            dtype=model.dtype,
            attn_implementation=getattr(model.config, "_attn_implementation", None),
        )
    except Exception as error:  # noqa: BLE001 - transformers raises many types for a folder it cannot load
        raise HFExportError(
            f"the exported folder does not load with from_pretrained ({_first_line(error)}); nothing was written"
        ) from None
    expected, got = _logits(model, ids), _logits(loaded, ids)
    if got.shape != expected.shape:
        raise HFExportError(
            f"the exported folder gives logits of shape {tuple(got.shape)}, the model "
            f"{tuple(expected.shape)}; nothing was written"
        )
    error = float((got - expected).abs().max() / expected.abs().max().clamp_min(1e-12))
    if not error <= VERIFY_TOLERANCE:
        raise HFExportError(
            f"the exported folder's logits differ from the model's by {error:.2e} (relative); nothing was written"
        )
    return error


def _write(model: nn.Module, cfg: Any, tmp: Path, tokenizer: Any) -> None:
    """``transformers``' own save_pretrained with ``cfg`` in place of the model's config."""
    saved = model.config, getattr(model, "hf_quantizer", None)
    model.config = cfg
    if saved[1] is not None:
        model.hf_quantizer = None  # a GGUF model is dequantised already: its weights are plain floats
    try:
        model.save_pretrained(str(tmp))
    finally:
        model.config = saved[0]
        if saved[1] is not None:
            model.hf_quantizer = saved[1]
    if tokenizer is not None:
        tokenizer.save_pretrained(str(tmp))
    else:
        source = source_folder(model)
        for name in TOKENIZER_FILES if source else ():
            if (source / name).is_file() and not (tmp / name).exists():
                shutil.copyfile(source / name, tmp / name)
    (tmp / MARK).write_text(json.dumps({"generator": GENERATOR, "class": type(model).__name__}) + "\n")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No progress bars from transformers ("Writing model shards", "Loading weights") meanwhile."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def save_pretrained(
    model: nn.Module, folder: str | os.PathLike, *, tokenizer: Any = None, overwrite: bool = False, verify: bool = True
) -> Path:
    """Write a (pruned) ``transformers`` model as a folder ``from_pretrained`` loads without tpp.

    Args:
        model: a ``transformers`` ``PreTrainedModel`` (e.g. from ``TPPPruner(...).prune()`` or
            ``tpp.load_pruned``); DDP wrappers are unwrapped.
        folder: the destination folder, created or replaced whole.
        tokenizer: saved into the folder with its own ``save_pretrained``; without it, the tokenizer
            files of the folder the model was loaded from (``hf:DIR``, ``from_pretrained(DIR)``) are copied.
        overwrite: replace an existing non-empty folder tpp did not write (one it wrote is always replaced).
        verify: load the written folder with ``from_pretrained`` and require the same logits on a few
            random token ids before it is moved into place.

    Raises:
        HFExportError: not a ``transformers`` model, a folder tpp did not write, a failed write or check.
        ConfigMismatchError: the pruned shapes need more than one configuration can say (layers of
            different widths); :func:`tpp.save_pruned` keeps them.
    """
    module = unwrap(model)
    if not (
        hasattr(module, "save_pretrained")
        and hasattr(module, "config")
        and type(module).__module__.startswith("transformers.")
    ):
        raise HFExportError(
            f"{type(module).__name__} is not a transformers model; the Hugging Face format holds "
            "transformers models only (use tpp.save_pruned or ONNX export for others)"
        )
    folder = Path(folder).expanduser()
    _check_destination(folder, overwrite)
    cfg = pruned_config(module)  # before anything is written
    parent = folder.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=parent))
    except OSError as error:
        raise HFExportError(
            f"cannot write {folder}: {error.strerror or type(error).__name__}; choose a writable location"
        ) from None
    old = None
    try:
        with _quiet():
            _write(module, cfg, tmp, tokenizer)
            if verify:
                _verify(module, tmp)
        if os.path.lexists(folder):  # rename cannot replace a non-empty folder: move the old one aside first
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".old", dir=parent))
            os.replace(folder, old / folder.name)
        os.replace(tmp, folder)
    except BaseException as error:  # Ctrl-C included: the previous folder goes back in place
        if old is not None and not os.path.lexists(folder) and os.path.lexists(old / folder.name):
            os.replace(old / folder.name, folder)
        if isinstance(error, TPPError) or not isinstance(error, Exception):
            raise
        reason = error.strerror if isinstance(error, OSError) and error.strerror else _first_line(error)
        raise HFExportError(
            f"cannot write {folder}: {reason}; nothing was changed (check the location's permissions and free space)"
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and os.path.lexists(folder):  # else the previous folder is still in `old`: keep it
            shutil.rmtree(old, ignore_errors=True)
    return folder


def export_pruned_hf(
    checkpoint: str | os.PathLike, out: str | os.PathLike, *, overwrite: bool = False, base_model: str | None = None
) -> Path:
    """``tpp export --format hf``: load a file written by ``tpp.save_pruned`` and :func:`save_pretrained` it."""
    from tpp.checkpoints import load_pruned

    _check_destination(Path(out).expanduser(), overwrite)  # before the checkpoint is read
    return save_pretrained(load_pruned(checkpoint, base_model), out, overwrite=overwrite)
