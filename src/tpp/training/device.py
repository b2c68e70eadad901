"""Device selection from the user's ``--device`` text."""

from __future__ import annotations

import platform

import torch

from tpp.errors import ConfigError


def resolve_device(text: str | torch.device | None = "auto") -> torch.device:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` into a :class:`torch.device`.

    ``"auto"`` (or None) picks CUDA when available, else CPU.

    Raises:
        ConfigError: unknown text, or CUDA requested on a machine without a usable GPU.
    """
    if isinstance(text, torch.device):
        text = str(text)
    value = "auto" if text is None else str(text).strip().lower()
    if value == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if value == "cpu":
        return torch.device("cpu")
    if value == "cuda" or value.startswith("cuda:"):
        index_text = value.partition(":")[2]
        if index_text and not index_text.isdigit():
            raise ConfigError(f"invalid device {text!r}; use auto, cpu, cuda or cuda:N")
        if not torch.cuda.is_available():
            raise ConfigError(f"device {text!r} requested but CUDA is not available here; use --device cpu or auto")
        if index_text and int(index_text) >= torch.cuda.device_count():
            raise ConfigError(f"device {text!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
        return torch.device(value)
    raise ConfigError(f"invalid device {text!r}; use auto, cpu, cuda or cuda:N")


def device_name(device: torch.device) -> str:
    """Human-readable name of ``device`` (GPU model, or the CPU's description)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:  # Linux: the marketing name is more useful than "x86_64"
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"
