"""What a pruner does for the other processes of a distributed job and for parallel wrappers."""

from __future__ import annotations

import torch
import torch.nn as nn


def broadcast_from_rank0(chosen: list[torch.Tensor]) -> list[torch.Tensor]:
    """Under torch.distributed, every rank takes rank 0's choice, so all replicas prune alike."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return chosen
    payload = [[c.tolist() for c in chosen]]
    torch.distributed.broadcast_object_list(payload, src=0)
    return [torch.as_tensor(c, dtype=torch.long) for c in payload[0]]


def rewrap(wrapper: nn.Module, module: nn.Module) -> nn.Module:
    """DDP holds buckets of the old parameters, so it is rebuilt; DataParallel reads .module each call."""
    if isinstance(wrapper, nn.parallel.DistributedDataParallel):
        return nn.parallel.DistributedDataParallel(
            module,
            device_ids=wrapper.device_ids,
            output_device=wrapper.output_device,
            find_unused_parameters=wrapper.find_unused_parameters,
        )
    return wrapper
