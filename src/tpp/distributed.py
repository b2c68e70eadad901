"""Multi-process training on PyTorch's own engine: torchrun + DistributedDataParallel.

``torchrun --nproc_per_node N -m tpp train|prune ...`` sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``;
:func:`init_distributed` reads them and joins the process group (NCCL on CUDA, gloo on CPU). Without
them everything runs in one process and these helpers are no-ops. Example (one node, 4 GPUs)::

    torchrun --nproc_per_node 4 -m tpp prune --method tpp --model resnet56 --dataset cifar10 \\
        --checkpoint base.pt --ratio '*layer*.conv1:0.5' --batch-size 128 --amp bf16 --out runs/r56

What a DDP job does:

* ``--batch-size`` is the *global* batch: each rank takes ``batch_size // world_size`` examples of
  every global batch (the loaders shard like ``DistributedSampler``), so the optimisation equals a
  single process with the same batch (exactly for models without BatchNorm; BatchNorm statistics
  are per rank, as usual with DDP).
* The pruner broadcasts rank 0's filter choice, so every replica prunes the same filters; removal
  unwraps the model, prunes it and wraps the smaller model in a new DDP.
* Only rank 0 creates and writes the run folder (checkpoints, logs, report) and prints; the others
  wait for it (:func:`run_on_main`) and fail with the same one-line error if it could not.
* ``--resume`` makes every rank load the same checkpoint file, so the folder must be visible to
  all ranks (one node, or a shared file system).
* Every rank evaluates the whole test set (identical numbers, no collective needed).
* A rank that dies makes torchrun stop the others; a rank that is lost without torchrun noticing
  (e.g. a hung node) makes the others fail at their next collective after ``--dist-timeout``
  minutes (default 30) instead of hanging forever.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

import torch
import torch.distributed as dist
import torch.nn as nn

from tpp import errors
from tpp.errors import ConfigError, TPPError

T = TypeVar("T")


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_rank() -> int | None:
    """This process's rank when started by torchrun with more than one process, else None."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    return int(os.environ.get("RANK", "0"))


def init_distributed(device: torch.device, timeout_minutes: float = 30.0) -> DistributedContext:
    """Join the torchrun process group if launched by torchrun; returns this process's context.

    A lost rank makes the others fail at their next collective after ``timeout_minutes`` instead
    of hanging forever (torchrun's agent usually stops them sooner).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext(device=device)
    if not timeout_minutes > 0:
        raise ConfigError(f"--dist-timeout must be > 0 minutes, got {timeout_minutes}")
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if torch.cuda.device_count() <= local_rank:
            raise ConfigError(
                f"rank {rank} needs GPU {local_rank} but only {torch.cuda.device_count()} are visible; "
                "lower --nproc_per_node"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        if not dist.is_gloo_available():
            raise ConfigError(
                "multi-process CPU training needs torch.distributed's gloo backend, "
                "which this PyTorch build lacks; run a single process"
            )
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=timeout_minutes))
    return DistributedContext(rank, world_size, local_rank, device)


def wrap(model: nn.Module, context: DistributedContext) -> nn.Module:
    """DistributedDataParallel around ``model`` when running distributed, else ``model`` itself."""
    if not context.enabled:
        return model
    device_ids = [context.device.index] if context.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def prepare(model: nn.Module, context: DistributedContext, *, channels_last: bool = False) -> nn.Module:
    """The training form of ``model`` (bare or wrapped): channels_last if asked, then DDP when distributed.

    The memory format is changed on the bare module *before* wrapping: DDP must not see its
    parameters replaced afterwards. A DDP wrapper whose module needs no change is kept.
    """
    bare = model
    while isinstance(bare, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        bare = bare.module
    changed = False
    if channels_last and any(
        p.dim() == 4 and not p.is_contiguous(memory_format=torch.channels_last) for p in bare.parameters()
    ):
        bare.to(memory_format=torch.channels_last)
        changed = True
    if not context.enabled:
        return model
    if isinstance(model, nn.parallel.DistributedDataParallel) and not changed:
        return model
    return wrap(bare, context)


def barrier(context: DistributedContext) -> None:
    """Wait for every rank (no-op in one process)."""
    if context.enabled:
        dist.barrier()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def broadcast_object(value: T, src: int = 0) -> T:
    """Rank ``src``'s ``value`` on every rank (``value`` itself outside a process group)."""
    if not _active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place (no-op outside a process group); returns it."""
    if _active():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_parameters(module: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers to every rank (no-op outside a process group).

    DDP syncs replicas only when it is constructed; use this after changing weights outside
    training (e.g. a method's re-initialisation after pruning) so no replica drifts silently.
    """
    if not _active():
        return
    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=src)


def run_on_main(context: DistributedContext, fn: Callable[[], T]) -> T | None:
    """Run ``fn`` on rank 0 only (e.g. create the run folder) while the other ranks wait.

    Returns ``fn()``'s value on rank 0 and None elsewhere. If ``fn`` raised a user-facing error
    (:class:`TPPError` or ``OSError``) on rank 0, every rank raises the same one-line error, so no
    rank is left waiting for a folder that will never exist.
    """
    if not context.enabled:
        return fn()
    result, failure, message = None, None, None
    if context.is_main:
        try:
            result = fn()
        except (TPPError, OSError) as error:
            failure = error
            message = (type(error).__name__, " ".join(str(error).split()))
    message = broadcast_object(message)
    if failure is not None:
        failure.collective = True  # every rank reports it: see report_together
        raise failure
    if message is not None:
        kind = getattr(errors, message[0], None)
        error_class = kind if isinstance(kind, type) and issubclass(kind, TPPError) else TPPError
        error = error_class(f"rank 0: {message[1]}")
        error.collective = True
        raise error
    return result


def report_together(error: BaseException) -> None:
    """After a rank printed an error that every rank raised together (:func:`run_on_main`), wait for
    the others to print theirs: a rank that exits first makes torchrun stop the rest mid-sentence."""
    if getattr(error, "collective", False) and dist.is_available() and dist.is_initialized():
        try:
            dist.barrier()
        except Exception:  # noqa: BLE001 - a peer already gone: nothing left to wait for
            pass


def shutdown(context: DistributedContext) -> None:
    """Leave the process group cleanly (after a barrier, so no rank leaves while others still talk)."""
    if context.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def describe(context: DistributedContext) -> dict[str, Any]:
    """Plain fields for config.json/meta.json."""
    return {"world_size": context.world_size, "backend": dist.get_backend() if context.enabled else None}
