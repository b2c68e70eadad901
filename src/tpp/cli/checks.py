"""Checks that commands run before any real work, so that a bad input costs a second, not a run.

:func:`check_model_input` runs the model once on the ``meta`` device (shapes only: no memory,
no arithmetic) to find out whether it can take the input at all and how much memory its
activations would need; only where that is impossible (an operator without a meta kernel) does
it fall back to a real forward pass of one image.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Sequence

from tpp.errors import ConfigError, ModelError
from tpp.util.memory import SPARE_SHARE, available_memory
from tpp.util.memory import gigabytes as _gigabytes


def lr_schedule_option(text: str, flag: str) -> None:
    """Parse the LR schedule given to ``flag``; a malformed one is a ConfigError naming the flag."""
    from tpp.training import parse_lr_schedule

    try:
        parse_lr_schedule(text)
    except ConfigError as error:
        raise ConfigError(f"{flag}: {error}") from None


def resume_or_overwrite(args, what: str) -> None:
    """Refuse ``--resume`` together with ``--overwrite`` (``what``: "run", "job")."""
    if getattr(args, "resume", False) and getattr(args, "overwrite", False):
        raise ConfigError(f"--resume continues the {what} in --out and --overwrite starts it again; give one of them")


def model_name(model) -> str:
    """The name or spec a model was built with (``resnet56``, ``hf:...``), for messages."""
    spec = getattr(model, "tpp_spec", None) or {}
    return str(spec.get("name") or spec.get("spec") or type(model).__name__)


def refuse_saved_factory(args: Any) -> None:
    """Refuse a ``module:function`` model that only a run's ``config.json`` names (``--out DIR --resume``
    alone): a file may not make tpp import code, so the user names it, in the command printed.

    Raises:
        ConfigError: the saved model is a factory and ``--model`` is not on the command line.
    """
    saved = (getattr(args, "_saved_run", None) or {}).get("model")
    argv = getattr(args, "_argv", None) or []
    given = any(token == "--model" or token.startswith("--model=") for token in argv)
    if saved is None or given:
        return
    from tpp.models.specs import is_factory_spec

    if is_factory_spec(saved):
        raise ConfigError(
            f"{args.out}/config.json names the model factory {saved}, and a file may not make tpp "
            f"import code: resume with tpp {args.command} --out {args.out} --resume --model {saved}"
        )


def input_fix(info: Any, alternative: str = "") -> str:
    """What to change when a model cannot take ``info``'s images: the image size and channels for an
    image folder (the usual cause), else the dataset; ``alternative`` (e.g. "pick another --model")
    is offered last."""
    size = f"{info.in_channels}-channel {info.image_size}x{info.image_size}"
    if info.name == "imagefolder":
        fix = f"the images are {size}: pass the --image-size (and --channels) the model takes"
    else:
        fix = f"{info.name} gives {size} images: pass the --dataset it was trained on"
    return f"{fix}{', or ' + alternative if alternative else ''}"


def check_model_input(model, shape: Sequence[int], model_name: str, fix: str) -> None:
    """Refuse, with one line, an input ``shape`` (e.g. ``[1, 3, 32, 32]``) that ``model`` cannot
    take or whose forward pass would not fit in memory. ``fix`` tells the user what to change.

    Raises:
        ModelError: the model fails on this shape, or its activations need more memory than is free.
    """
    shape = [int(d) for d in shape]
    free = available_memory()
    budget = None if free is None else int(free * SPARE_SHARE)
    input_bytes = math.prod(shape) * 4
    if budget is not None and input_bytes > budget:
        raise ModelError(
            f"an input of shape {shape} alone needs {_gigabytes(input_bytes)}, more than this machine "
            f"can spare ({_gigabytes(free)} free); {fix}"
        )
    try:
        needed = _meta_forward(model, shape)
    except RuntimeError as error:
        needed = None
        if input_bytes <= 2**26:  # confirm on real numbers: some operators have no meta kernel
            _real_forward(model, shape, model_name, fix)
        else:
            raise _cannot_take(model_name, shape, error, fix) from None
    except Exception:  # noqa: BLE001 - no verdict from the meta pass: let the real work find out
        return
    if needed is not None and budget is not None and needed > budget:
        raise ModelError(
            f"{model_name} on an input of shape {shape} needs about {_gigabytes(needed)} for its "
            f"activations, more than this machine can spare ({_gigabytes(free)} free); {fix}"
        )


def _cannot_take(model_name: str, shape: list[int], error: BaseException, fix: str) -> ModelError:
    text = str(error).strip()
    first = text.splitlines()[0] if text else type(error).__name__
    return ModelError(f"{model_name} cannot take an input of shape {shape} ({first}); {fix}")


def _meta_forward(model, shape: list[int]) -> int:
    """Bytes of all leaf-module outputs of one forward pass on the meta device."""
    import torch

    probe = copy.deepcopy(model).to("meta").eval()
    total = 0

    def add(_module, _inputs, output) -> None:
        nonlocal total
        for tensor in output if isinstance(output, (tuple, list)) else (output,):
            if torch.is_tensor(tensor):
                total += tensor.numel() * tensor.element_size()

    handles = [m.register_forward_hook(add) for m in probe.modules() if not any(True for _ in m.children())]
    try:
        with torch.no_grad():
            probe(torch.empty(shape, device="meta"))
    finally:
        for handle in handles:
            handle.remove()
    return total


def _real_forward(model, shape: list[int], model_name: str, fix: str) -> None:
    import torch

    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(shape, device=device))
    except RuntimeError as error:
        raise _cannot_take(model_name, shape, error, fix) from None
    finally:
        model.train(was_training)


def check_language_model(model, ids, info) -> Any:
    """``ids`` (token ids ``[B, T]``), once ``model`` is seen to be a language model that predicts a
    token per position over a vocabulary at least as large as the tokenizer's (``info.num_classes``).

    Raises:
        ModelError: in one line, naming what to change.
    """
    import torch

    from tpp.util.inputs import call_without_cache, logits_of

    name, training = model_name(model), model.training
    try:
        with torch.no_grad():
            logits = logits_of(call_without_cache(model.eval(), ids))
    except Exception as error:  # noqa: BLE001 - any failure means it is no language model of these tokens
        reason = " ".join(str(error).split())[:160] or type(error).__name__
        raise ModelError(
            f"{name} does not take token ids of shape {list(ids.shape)} ({reason}); text data needs a "
            "causal language model, e.g. --model hf:DIR or hf:FILE.gguf"
        ) from None
    finally:
        model.train(training)
    if logits.dim() != 3 or logits.shape[:2] != ids.shape:
        raise ModelError(
            f"{name} returns logits of shape {list(logits.shape)} for token ids {list(ids.shape)}, not "
            "one prediction per token; text data needs a causal language model (…ForCausalLM)"
        )
    if logits.shape[-1] < info.num_classes:
        raise ModelError(
            f"{name} predicts {logits.shape[-1]} tokens but the tokenizer has {info.num_classes}; "
            "pass the model's own tokenizer (--tokenizer hf:DIR) or a model with a larger vocabulary"
        )
    return ids
