"""Data-parallel training across processes started by ``torchrun``: who am I, and the few collectives needed.

``torchrun --nproc_per_node N train.py ...`` starts N copies of ``train.py`` and tells each its
place through the environment (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``). A plain ``python
train.py`` sees none of them and is a world of one, where every helper here does nothing.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistributedContext:
    """This process's place among the training processes."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """The one process that writes checkpoints, logs and pages."""
        return self.rank == 0


def context_from_environment() -> DistributedContext:
    """The context ``torchrun`` describes in the environment; a world of one without it."""
    return DistributedContext(
        rank=int(os.environ.get("RANK", "0")),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        world_size=int(os.environ.get("WORLD_SIZE", "1")),
    )


def processes_per_machine() -> int:
    """How many processes torchrun started on this machine (``LOCAL_WORLD_SIZE``); 1 without torchrun."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


def init_process_group(context: DistributedContext, device: torch.device) -> None:
    """Join the other processes: NCCL between GPUs, gloo on CPUs. Nothing in a world of one."""
    if not context.is_distributed or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(
        backend,
        rank=context.rank,
        world_size=context.world_size,
        timeout=datetime.timedelta(minutes=30),  # rank 0 may spend minutes writing checkpoints and pages
        device_id=device if device.type == "cuda" else None,
    )


def destroy_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    """The sum of ``tensor`` over all processes (``tensor`` itself in a world of one)."""
    if not context.is_distributed:
        return tensor
    summed = tensor.detach().clone()
    dist.all_reduce(summed)
    return summed


def all_processes_agree(flag: bool, context: DistributedContext, device: torch.device) -> bool:
    """True only if ``flag`` is True in every process (``flag`` itself in a world of one)."""
    if not context.is_distributed:
        return flag
    value = torch.tensor(float(flag), device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value)


def barrier(context: DistributedContext) -> None:
    """Wait until every process arrives here."""
    if context.is_distributed:
        dist.barrier()


def synchronize_batch_norm(
    networks: dict[str, nn.Module], device: torch.device, context: DistributedContext
) -> dict[str, nn.Module]:
    """The networks with their batch norms computing statistics over every process's batch, where possible.

    Without this each process normalises by its own share of the batch (often one image), so
    ``--norm batch`` would behave as if the batch were ``world_size`` times smaller. PyTorch syncs
    batch norm between GPUs only; on CPU processes the statistics stay per process, with a warning.
    The parameters and buffers are reused, so optimizers and checkpoints are unaffected.
    """
    has_batch_norm = any(
        isinstance(module, nn.modules.batchnorm._BatchNorm)
        for network in networks.values()
        for module in network.modules()
    )
    if not context.is_distributed or not has_batch_norm:
        return networks
    if device.type != "cuda":
        if context.is_main:
            logger.warning(
                "--norm batch on %d CPU processes: batch statistics stay per process "
                "(PyTorch synchronises batch norm between GPUs only)",
                context.world_size,
            )
        return networks
    return {name: nn.SyncBatchNorm.convert_sync_batchnorm(network) for name, network in networks.items()}
