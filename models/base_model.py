"""What every model shares: networks and optimizers by name, checkpoints, schedules, visuals, losses.

Where and how the model runs (device, precision, processes, compilation, random state) is the
:class:`util.runtime.Runtime` the driver hands it.
"""

from __future__ import annotations

import argparse
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer, lr_scheduler

from models import checkpoint
from models.networks import define_scheduler
from util.errors import CheckpointError
from util.runtime import Runtime, unwrap

logger = logging.getLogger(__name__)


class BaseModel(ABC):
    """Base class of the models picked by ``--model``.

    A subclass fills ``self.networks`` (name -> module), and for training ``self.optimizers``
    (name -> optimizer); lists ``loss_names`` and ``visual_names``; and implements
    :meth:`set_input`, :meth:`forward` and :meth:`optimize_parameters`. Losses live in
    ``self.losses`` and images in ``self.visuals``, both keyed by name.
    """

    def __init__(self, opt: argparse.Namespace, runtime: Runtime | None = None) -> None:
        self.opt = opt
        self.is_train: bool = opt.is_train
        self.runtime = runtime if runtime is not None else Runtime.from_options(opt)
        self.save_dir = Path(opt.checkpoints_dir) / opt.name
        self.networks: dict[str, nn.Module] = {}
        self.optimizers: dict[str, Optimizer] = {}
        self.schedulers: list[lr_scheduler.LRScheduler | lr_scheduler.ReduceLROnPlateau] = []
        self.loss_names: list[str] = []
        self.visual_names: list[str] = []
        self.losses: dict[str, torch.Tensor] = {}
        self.visuals: dict[str, torch.Tensor] = {}
        self.image_paths: list[str] = []
        #: The full generator objective of the last step (detached); drives the plateau schedule.
        self.generator_objective = torch.zeros(())

    @staticmethod
    def modify_commandline_options(parser: argparse.ArgumentParser, is_train: bool) -> argparse.ArgumentParser:
        """Add model-specific flags or change defaults; the base model adds none."""
        return parser

    # -- to implement --------------------------------------------------------------------------
    def set_input(self, batch: dict[str, Any]) -> None:
        """Take ``A`` and/or ``B`` (N, C, H, W) in [-1, 1] from a loader's batch onto the device as
        ``real_A``/``real_B``; inference may give only one domain."""
        self.visuals = {}
        for side in ("A", "B"):
            if side in batch:
                self.visuals[f"real_{side}"] = self.to_device(batch[side])
        self.image_paths = list(batch.get("A_paths", batch.get("B_paths", [])))

    @abstractmethod
    def forward(self) -> None:
        """Compute the translated images (and fill ``self.visuals``)."""

    def optimize_parameters(self) -> None:
        """One training step; inference-only models do not train."""
        raise NotImplementedError(f"{type(self).__name__} is for inference only")

    # -- set-up ----------------------------------------------------------------------------------
    def calibrate(self, dataset: Any) -> None:
        """Learn what the model needs of the training data before the first step (once, before :meth:`setup`).

        The base model needs nothing; ``seg_cycle_gan`` estimates its stain model here.
        """

    def setup(self) -> int:
        """Place the networks, create the schedules, and prepare the networks to run; return the last finished epoch.

        Training starts at 0, or with ``--continue_train`` restores the whole training state of
        ``--epoch``. Inference models load weights with :meth:`load_networks` afterwards.
        """
        self.runtime.place(self.networks)
        last_epoch = 0
        if self.is_train:
            opt = self.opt
            self.schedulers = [
                define_scheduler(optimizer, opt.lr_policy, opt.n_epochs, opt.n_epochs_decay, opt.lr_step_size)
                for optimizer in self.optimizers.values()
            ]
            if opt.continue_train:
                last_epoch = self.resume(opt.epoch)
        self.log_network_sizes()
        self.networks = self.runtime.prepare(self.networks, self.is_train)
        return last_epoch

    @property
    def device(self) -> torch.device:
        return self.runtime.device

    def to_device(self, images: torch.Tensor) -> torch.Tensor:
        """A batch (N, C, H, W) on the model's device, in the networks' memory layout."""
        return self.runtime.to_device(images)

    def should_step(self, loss: torch.Tensor) -> bool:
        """False for a non-finite loss under ``--nan_policy skip`` (its update is dropped).

        Under ``stop`` (the default) no check is made here, so the step needs no host-device sync;
        the training loop notices the loss and stops before the next checkpoint.
        """
        if self.opt.nan_policy != "skip":
            return True
        # Under torchrun every process must take the same decision, or the gradient averaging would wait forever.
        return self.runtime.all_agree(bool(torch.isfinite(loss)))

    # -- the two halves of a GAN step --------------------------------------------------------------
    def generator_losses(self) -> dict[str, torch.Tensor]:
        """The weighted terms of the generators' objective, by name (their sum is minimised)."""
        raise NotImplementedError(f"{type(self).__name__} has no generator losses")

    def step_generators(self, forward: Callable[[], None], discriminators: list[nn.Module]) -> bool:
        """The generators' half of a training step, shared by the GAN models.

        ``discriminators`` frozen, ``forward()`` and :meth:`generator_losses` under the ``--amp``
        autocast (their sum in float32), the losses recorded, optimizer ``G`` stepped through the
        runtime's gradient scaler, the discriminators unfrozen. False, with no step, when
        ``--nan_policy skip`` drops a non-finite objective: the fakes are not finite either, so the
        caller skips the discriminators too.
        """
        self.set_requires_grad(discriminators, False)
        self.optimizers["G"].zero_grad(set_to_none=True)
        with self.runtime.autocast():
            forward()
            terms = self.generator_losses()
            objective = torch.stack([term.float() for term in terms.values()]).sum()
        self.losses = {name: value.detach() for name, value in terms.items()}
        self.generator_objective = objective.detach()
        if not self.should_step(objective):
            return False
        self.runtime.scaler.scale(objective).backward()
        self.runtime.scaler.step(self.optimizers["G"])
        self.set_requires_grad(discriminators, True)
        return True

    def step_discriminators(self, loss: torch.Tensor) -> None:
        """The discriminators' half: ``loss`` (computed under autocast) back-propagated and optimizer ``D``
        stepped unless ``--nan_policy skip`` drops it; the gradient scaler updated once per step."""
        if self.should_step(loss):
            self.runtime.scaler.scale(loss).backward()
            self.runtime.scaler.step(self.optimizers["D"])
        self.runtime.scaler.update()

    def unwrapped(self, name: str) -> nn.Module:
        """Network ``name`` without its DDP wrapper: for forwards whose gradients need no averaging."""
        return unwrap(self.networks[name])

    def log_network_sizes(self) -> None:
        for name, network in self.networks.items():
            count = sum(parameter.numel() for parameter in network.parameters())
            logger.info("network %s: %s, %.3f M parameters", name, type(unwrap(network)).__name__, count / 1e6)

    # -- modes -----------------------------------------------------------------------------------
    def train_mode(self) -> None:
        for network in self.networks.values():
            network.train()

    def eval_mode(self) -> None:
        for network in self.networks.values():
            network.eval()

    def test(self) -> None:
        """Forward without building a graph (inference, previews)."""
        with torch.no_grad(), self.runtime.autocast():
            self.forward()

    @staticmethod
    def set_requires_grad(networks: list[nn.Module], requires_grad: bool) -> None:
        """Freeze or unfreeze networks (the discriminators while the generators learn)."""
        for network in networks:
            for parameter in network.parameters():
                parameter.requires_grad_(requires_grad)

    # -- reporting -------------------------------------------------------------------------------
    def current_visuals(self) -> dict[str, torch.Tensor]:
        """The images of the last forward pass, in ``visual_names`` order, (N, C, H, W) in [-1, 1]."""
        return {name: self.visuals[name] for name in self.visual_names if name in self.visuals}

    def learning_rate(self) -> float:
        first = next(iter(self.optimizers.values()))
        return float(first.param_groups[0]["lr"])

    def update_learning_rate(self, epoch_objective: float) -> float:
        """Step every schedule at the end of an epoch and return the new learning rate."""
        for scheduler in self.schedulers:
            if isinstance(scheduler, lr_scheduler.ReduceLROnPlateau):
                scheduler.step(epoch_objective)
            else:
                scheduler.step()
        return self.learning_rate()

    # -- checkpoints -----------------------------------------------------------------------------
    def save(self, epoch: int, numbered: bool) -> None:
        """Save the networks and the training state as ``latest`` (and as ``<epoch>`` if ``numbered``).

        All files of the epoch are written as one (:func:`checkpoint.save_together`): a crash or a
        full disk at any moment leaves the previous checkpoint complete, or the new one once
        training restarts. Every file also records its epoch, so a set mixed by hand is detected.
        """
        labels = ([str(epoch)] if numbered else []) + ["latest"]
        architecture = checkpoint.architecture_of(self.opt)
        state = self.training_state(epoch)
        payloads = {}
        for label in labels:
            for name, network in self.networks.items():
                payloads[checkpoint.network_file_name(label, name)] = checkpoint.network_payload(
                    unwrap(network), architecture, epoch
                )
            payloads[checkpoint.training_state_file_name(label)] = state
        checkpoint.save_together(self.save_dir, payloads)

    def load_networks(self, label: str) -> None:
        """Load every network of this model from the checkpoint ``label``."""
        architecture = checkpoint.architecture_of(self.opt)
        epochs = {}
        for name in self.networks:
            path = checkpoint.require_checkpoint(self.save_dir, label, name)
            epochs[name] = checkpoint.load_network(path, unwrap(self.networks[name]), architecture, self.device)
        checkpoint.require_one_epoch(self.save_dir, label, epochs)
        logger.info("loaded epoch %s from %s", label, self.save_dir)

    def training_state(self, epoch: int) -> dict[str, Any]:
        """Everything besides the weights that an exact resume needs."""
        return {
            "format_version": checkpoint.FORMAT_VERSION,
            "epoch": epoch,
            "optimizers": {name: optimizer.state_dict() for name, optimizer in self.optimizers.items()},
            "schedulers": [scheduler.state_dict() for scheduler in self.schedulers],
            **self.runtime.state_dict(),
            "extra": self.extra_training_state(),
        }

    def extra_training_state(self) -> dict[str, Any]:
        """Model-specific state to save (e.g. image pools); override with :meth:`load_extra_training_state`."""
        return {}

    def load_extra_training_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`extra_training_state` saved."""

    def resume(self, label: str) -> int:
        """Restore networks and training state of checkpoint ``label``; return its epoch."""
        state_path = checkpoint.training_state_path(self.save_dir, label)
        if not state_path.is_file():
            raise CheckpointError(
                f"cannot continue: no training state {state_path.name} for epoch {label!r}; "
                f"{checkpoint.describe_available(self.save_dir, next(iter(self.networks)))}"
            )
        state = checkpoint.load_file(state_path, "cpu")
        epoch = int(state["epoch"])
        architecture = checkpoint.architecture_of(self.opt)
        for name in self.networks:
            path = checkpoint.require_checkpoint(self.save_dir, label, name)
            network_epoch = checkpoint.load_network(path, self.networks[name], architecture, self.device)
            if network_epoch != epoch:
                raise CheckpointError(
                    f"checkpoint {label!r} is inconsistent: {path.name} is from epoch {network_epoch} but the "
                    f"training state is from epoch {epoch} (was a save interrupted?); resume from a numbered "
                    f"epoch with --epoch; {checkpoint.describe_available(self.save_dir, name)}"
                )
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        for scheduler, scheduler_state in zip(self.schedulers, state["schedulers"], strict=True):
            scheduler.load_state_dict(scheduler_state)
        self.runtime.load_state_dict(state)
        self.load_extra_training_state(state["extra"])
        logger.info("resumed from the end of epoch %d (%s)", epoch, state_path)
        return epoch
