"""util.distributed helpers that need no process group: batch norm synchronisation."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from models.networks import define_discriminator, define_generator
from util.distributed import DistributedContext, synchronize_batch_norm

TWO_PROCESSES = DistributedContext(rank=0, local_rank=0, world_size=2)


def _batch_norms(network: nn.Module) -> list[type]:
    return [type(module) for module in network.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)]


def test_on_gpus_batch_norm_becomes_sync_batch_norm_with_the_same_parameters_and_keys() -> None:
    generator = define_generator("resnet_6blocks", 1, 3, ngf=8, norm="batch")
    parameters = list(generator.parameters())
    keys = list(generator.state_dict())

    synced = synchronize_batch_norm({"G_A": generator}, torch.device("cuda", 0), TWO_PROCESSES)["G_A"]

    kinds = _batch_norms(synced)
    assert kinds and set(kinds) == {nn.SyncBatchNorm}
    # The optimizer built earlier still holds the parameters; checkpoints keep their keys.
    assert all(new is old for new, old in zip(synced.parameters(), parameters, strict=True))
    assert list(synced.state_dict()) == keys


def test_on_cpu_processes_batch_norm_stays_and_the_main_process_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    networks = {name: define_discriminator("basic", 3, ndf=8, norm="batch") for name in ("D_A", "D_B")}
    with caplog.at_level(logging.WARNING):
        same = synchronize_batch_norm(networks, torch.device("cpu"), TWO_PROCESSES)
        synchronize_batch_norm(networks, torch.device("cpu"), DistributedContext(1, 1, 2))
    assert same is networks and all(nn.SyncBatchNorm not in _batch_norms(network) for network in same.values())
    warnings = [record.getMessage() for record in caplog.records]
    assert warnings == ["--norm batch on 2 CPU processes: batch statistics stay per process "
                        "(PyTorch synchronises batch norm between GPUs only)"]  # fmt: skip


@pytest.mark.parametrize(
    ("norm", "context"),
    [("instance", TWO_PROCESSES), ("batch", DistributedContext())],
    ids=["instance-norm", "one-process"],
)
def test_nothing_changes_without_batch_norm_or_without_other_processes(norm: str, context: DistributedContext) -> None:
    generator = define_generator("resnet_6blocks", 1, 3, ngf=8, norm=norm)
    before = _batch_norms(generator)
    networks = {"G_A": generator}
    assert synchronize_batch_norm(networks, torch.device("cuda", 0), context) is networks
    assert _batch_norms(generator) == before
