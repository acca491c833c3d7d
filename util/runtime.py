"""Where and how a model runs: device, precision, processes, compilation, random state.

The driver builds one :class:`Runtime` from the options and hands it to the model, which keeps
its networks, optimizers, losses and training step and asks the runtime for everything about
the machine: the device and memory layout of its tensors, the autocast and gradient scaler of
``--amp``, the DistributedDataParallel wrapping under ``torchrun``, ``--compile``, and the random
state saved with a checkpoint.
"""

from __future__ import annotations

import argparse
import inspect
import logging
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from util import distributed
from util.device import compile_unavailable_reason, configure_compute_threads, select_device
from util.distributed import DistributedContext

logger = logging.getLogger(__name__)

#: ``--amp`` values and the autocast dtype of each (None: full float32).
AMP_DTYPES: dict[str, torch.dtype | None] = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
AMP_MODES = tuple(AMP_DTYPES)

#: DDP's flag for "do not sync buffers every forward": renamed in torch 2.14, the old name deprecated.
_NO_BUFFER_SYNC = (
    {"forward_sync_buffers": False}
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
    else {"broadcast_buffers": False}
)


def unwrap(network: nn.Module) -> nn.Module:
    """The network itself, without a DistributedDataParallel wrapper (whose state_dict keys differ)."""
    return network.module if isinstance(network, DistributedDataParallel) else network


@dataclass
class Runtime:
    """The machine side of a run (see the module docstring)."""

    device: torch.device
    context: DistributedContext = field(default_factory=DistributedContext)
    amp: str = "none"
    channels_last: bool = False
    compile: bool = False
    scaler: torch.amp.GradScaler = field(init=False)

    def __post_init__(self) -> None:
        # Loss scaling keeps small fp16 gradients from flushing to zero; bf16 has float32's range.
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp == "fp16")

    @classmethod
    def from_options(cls, opt: argparse.Namespace) -> Runtime:
        """From ``--gpu_ids``, ``--amp``, ``--channels_last``, ``--compile`` and torchrun's environment;
        sets this process's CPU compute threads (``--compute_threads``, ``--num_threads``)."""
        context = DistributedContext(opt.rank, opt.local_rank, opt.world_size)
        device = select_device(opt.gpu_ids, context.local_rank)
        configure_compute_threads(
            getattr(opt, "compute_threads", None), opt.num_threads, distributed.processes_per_machine()
        )
        return cls(device, context, opt.amp, opt.channels_last, opt.compile)

    @property
    def amp_dtype(self) -> torch.dtype | None:
        return AMP_DTYPES[self.amp]

    # -- tensors ---------------------------------------------------------------------------------
    def autocast(self) -> AbstractContextManager:
        """The ``--amp`` autocast context for forward passes (a no-op with ``--amp none``)."""
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

    def to_device(self, images: torch.Tensor) -> torch.Tensor:
        """A batch (N, C, H, W) on the device, in the networks' memory layout."""
        images = images.to(self.device, non_blocking=True)
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images

    # -- networks --------------------------------------------------------------------------------
    def place(self, networks: dict[str, nn.Module]) -> None:
        """Move networks to the device, in the chosen memory layout."""
        memory_format = torch.channels_last if self.channels_last else torch.preserve_format
        for network in networks.values():
            network.to(self.device, memory_format=memory_format)

    def prepare(self, networks: dict[str, nn.Module], training: bool) -> dict[str, nn.Module]:
        """The networks as they run: batch norm synchronised and DDP-wrapped across training processes, compiled
        with ``--compile``. Weights and state_dict keys of the networks themselves are unchanged."""
        if training:
            networks = distributed.synchronize_batch_norm(networks, self.device, self.context)
        if self.compile:
            reason = compile_unavailable_reason(self.device)
            if reason is not None:
                logger.warning("--compile ignored: %s; training runs uncompiled", reason)
            else:
                for network in networks.values():
                    network.compile()
                logger.info("networks compiled: the first iterations are slow while the kernels are built")
        if training and self.context.is_distributed:
            # Each process holds a replica; DDP averages the gradients in backward (and starts every
            # replica from rank 0's weights). Buffers are not broadcast: instance norm has none, and a
            # broadcast would make rank 0's lone preview forward wait for the others.
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            networks = {
                name: DistributedDataParallel(network, device_ids=device_ids, **_NO_BUFFER_SYNC)
                for name, network in networks.items()
            }
        return networks

    def all_agree(self, flag: bool) -> bool:
        """True only if ``flag`` is True in every process (every process must take the same step)."""
        return distributed.all_processes_agree(flag, self.context, self.device)

    # -- state saved with a checkpoint -----------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The gradient scaler and the random states (CPU and every GPU), for an exact resume."""
        state: dict[str, Any] = {"grad_scaler": self.scaler.state_dict(), "torch_rng_state": torch.get_rng_state()}
        if torch.cuda.is_available():
            state["cuda_rng_states"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("grad_scaler"):
            self.scaler.load_state_dict(state["grad_scaler"])
        torch.set_rng_state(state["torch_rng_state"])
        if "cuda_rng_states" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng_states"])
