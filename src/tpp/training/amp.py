"""Mixed precision and the other speed options of the training loop (channels_last, torch.compile).

``--amp bf16`` runs the forward pass and the loss under ``torch.autocast`` in bfloat16 (CPU and
CUDA). bfloat16 keeps float32's exponent range, so no loss scaling is needed. ``--amp fp16``
(CUDA only) adds a :class:`torch.amp.GradScaler`; one training step is then::

    with autocast: loss = CE(model(x), y)
    loss = loss + penalty                   # regulariser terms in float32, outside autocast
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)              # .grad now holds the true gradients
    hooks.after_backward()                  # TPP's growing L2 adds lambda * w to *unscaled* grads
    scaler.step(optimizer); scaler.update() # the step is skipped if a gradient is inf/NaN
    hooks.after_step()

Unscaling before ``after_backward`` matters: a regulariser writing ``.grad`` on scaled gradients
would be divided by the loss scale (2^16 at first) when the scaler unscales them later.
The scaler's state is saved in checkpoints so that a resumed fp16 run continues exactly.
Evaluation always runs in float32.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Mapping

import torch
from torch import nn

from tpp.errors import ConfigError

AMP_MODES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class SpeedOptions:
    """Per-run speed options of :class:`tpp.training.Trainer`.

    Attributes:
        amp: None (float32), ``"bf16"`` or ``"fp16"`` (CUDA only).
        channels_last: feed 4-D inputs in channels_last memory format (convert the model too, see
            :func:`tpp.distributed.prepare`; the Trainer converts a model that is not DDP-wrapped).
        compile: ``torch.compile`` the model for the duration of :meth:`Trainer.fit`, falling back
            to eager execution with a one-line warning if compilation fails.
    """

    amp: str | None = None
    channels_last: bool = False
    compile: bool = False


def check_amp(mode: str | None, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype of ``mode`` on ``device`` (None when off).

    Raises:
        ConfigError: unknown mode, or fp16 on a CPU (CPU autocast supports bf16 only).
    """
    if mode in (None, "", "none", "off"):
        return None
    if mode not in AMP_MODES:
        raise ConfigError(f"unknown --amp {mode!r}; choose bf16 or fp16")
    device = torch.device(device)
    if mode == "fp16" and device.type != "cuda":
        raise ConfigError(f"--amp fp16 needs a CUDA device (this run uses {device.type}); use --amp bf16 on CPU")
    return AMP_MODES[mode]


class MixedPrecision:
    """Autocast around the forward pass, and the loss scaler of fp16, for one device type.

    Args:
        dtype: autocast dtype, or None for plain float32.
        device_type: ``"cpu"`` or ``"cuda"`` (the model's device type).
        scaler: a GradScaler (fp16); None for bf16/float32.
    """

    def __init__(self, dtype: torch.dtype | None, device_type: str, scaler: torch.amp.GradScaler | None = None):
        self.dtype = dtype
        self.device_type = device_type
        self.scaler = scaler

    @classmethod
    def from_mode(cls, mode: str | None, device: torch.device | str) -> "MixedPrecision":
        """Validate ``mode`` (see :func:`check_amp`) and build the matching autocast/scaler pair."""
        dtype = check_amp(mode, device)
        device_type = torch.device(device).type
        scaler = torch.amp.GradScaler(device_type) if dtype == torch.float16 else None
        return cls(dtype, device_type, scaler)

    @property
    def mode(self) -> str | None:
        """``"bf16"``, ``"fp16"`` or None."""
        return next((name for name, dtype in AMP_MODES.items() if dtype == self.dtype), None)

    def autocast(self) -> ContextManager[Any]:
        """Context for the forward pass and the loss."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Backward pass; with a scaler, the gradients are unscaled afterwards (see module docstring)."""
        if self.scaler is None:
            loss.backward()
            return
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """Optimizer step (skipped by the scaler when a gradient overflowed) and scale update."""
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        """Plain data for checkpoints: the mode and the scaler's state (scale, growth tracker)."""
        return {"mode": self.mode, "scaler": self.scaler.state_dict() if self.scaler is not None else None}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the scaler's state (ignored when this run or the saved one has no scaler)."""
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(dict(state["scaler"]))


def to_channels_last(inputs: torch.Tensor) -> torch.Tensor:
    """``inputs`` in channels_last memory format if it is a 4-D image batch."""
    return inputs.contiguous(memory_format=torch.channels_last) if inputs.dim() == 4 else inputs


class CompiledForward:
    """``module`` compiled in place with ``nn.Module.compile`` (same object, same state_dict keys).

    Compiling in place keeps the module the pruner traced and the checkpoints read untouched,
    and :meth:`restore` returns it to eager execution (Torch-Pruning cannot trace compiled
    graphs, so a module is compiled only while it trains). If a compiled call fails, the module
    goes back to eager mode, a one-line warning is printed, and the call is retried eagerly.
    """

    def __init__(self, module: nn.Module, *, warn: bool = True, print_fn: Callable[[str], None] | None = None):
        self.module = module
        self.warn = warn
        self.print_fn = print_fn or (lambda text: print(text, file=sys.stderr))
        self.compiled = False
        if not hasattr(module, "compile"):  # torch < 2.2
            self._fall_back("this PyTorch has no nn.Module.compile")
            return
        try:
            module.compile()
            self.compiled = True
        except Exception as error:  # noqa: BLE001 - any failure means: run eagerly
            self._fall_back(_first_line(error))

    def __call__(self, *args: Any) -> Any:
        if not self.compiled:
            return self.module(*args)
        try:
            return self.module(*args)
        except torch.OutOfMemoryError:
            raise
        except Exception as error:  # noqa: BLE001 - compilation errors surface at the first call
            self.restore()
            self._fall_back(_first_line(error))
            return self.module(*args)  # a genuine error in the model shows up again here

    def restore(self) -> None:
        """Back to eager execution."""
        if self.compiled:
            self.module._compiled_call_impl = None
            self.compiled = False

    def _fall_back(self, reason: str) -> None:
        if self.warn:
            self.print_fn(f"tpp: warning: torch.compile failed ({reason}); training in eager mode")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    line = text.splitlines()[0] if text else type(error).__name__
    return line[:200]
