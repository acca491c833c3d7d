from pathlib import Path

import pytest
import torch
from torch import nn

from models import checkpoint
from models.networks import define_generator
from util.errors import CheckpointError

ARCHITECTURE = {"netG": "resnet_6blocks", "ngf": 4, "input_nc": 1, "output_nc": 3}


def generator(ngf: int = 4) -> nn.Module:
    return define_generator("resnet_6blocks", 1, 3, ngf=ngf)


def save_generator(directory: Path, label: str, network: torch.nn.Module, architecture: dict, epoch: int) -> None:
    payload = checkpoint.network_payload(network, architecture, epoch)
    checkpoint.save_together(directory, {checkpoint.network_file_name(label, "G_A"): payload})


def test_round_trip_and_epoch_listing(tmp_path: Path) -> None:
    network = generator()
    for epoch in (10, 2, 5):
        save_generator(tmp_path, str(epoch), network, ARCHITECTURE, epoch)
    assert checkpoint.saved_epochs(tmp_path, "G_A") == [2, 5, 10]
    other = generator()
    assert checkpoint.load_network(tmp_path / "5_net_G_A.pth", other, ARCHITECTURE, torch.device("cpu")) == 5
    assert all(
        torch.equal(a, b) for a, b in zip(network.state_dict().values(), other.state_dict().values(), strict=True)
    )
    assert checkpoint.read_architecture(tmp_path / "5_net_G_A.pth") == ARCHITECTURE


def test_missing_epoch_lists_what_exists(tmp_path: Path) -> None:
    for label in ("1", "2", "latest"):
        save_generator(tmp_path, label, generator(), ARCHITECTURE, 1)
    with pytest.raises(CheckpointError, match=r"no checkpoint for epoch '7'.*available epochs in .*: 1, 2, latest"):
        checkpoint.require_checkpoint(tmp_path, "7", "G_A")
    with pytest.raises(CheckpointError, match="holds no checkpoint of G_A; train first"):
        checkpoint.require_checkpoint(tmp_path / "empty", "latest", "G_A")


def test_other_architecture_is_named_not_a_state_dict_traceback(tmp_path: Path) -> None:
    path = tmp_path / "latest_net_G_A.pth"
    save_generator(tmp_path, "latest", generator(ngf=8), {**ARCHITECTURE, "ngf": 8}, 1)
    with pytest.raises(CheckpointError, match=r"another architecture: --ngf 8 in the checkpoint vs 4 now"):
        checkpoint.load_network(path, generator(ngf=4), ARCHITECTURE, torch.device("cpu"))


def test_bare_state_dicts_load_when_they_fit_and_explain_when_not(tmp_path: Path) -> None:
    path = tmp_path / "foreign.pth"
    torch.save(generator(ngf=8).state_dict(), path)
    assert checkpoint.load_network(path, generator(ngf=8), ARCHITECTURE, torch.device("cpu")) is None
    with pytest.raises(CheckpointError, match=r"does not fit this network \(\d+ tensors of another shape"):
        checkpoint.load_network(path, generator(ngf=4), ARCHITECTURE, torch.device("cpu"))


def test_damaged_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "latest_net_G_A.pth"
    save_generator(tmp_path, "latest", generator(), ARCHITECTURE, 1)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match=r"cannot read checkpoint .*latest_net_G_A\.pth"):
        checkpoint.load_network(path, generator(), ARCHITECTURE, torch.device("cpu"))


class _RunsCodeWhenUnpickled:
    """A pickle that would create a file if unpickling ran code, as a malicious checkpoint could."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (open, (str(self.marker), "w"))


def test_a_checkpoint_that_would_run_code_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "code_ran"
    path = tmp_path / "latest_net_G_A.pth"
    torch.save({"state_dict": _RunsCodeWhenUnpickled(marker)}, path)
    with pytest.raises(CheckpointError, match=r"cannot read checkpoint .*latest_net_G_A\.pth"):
        checkpoint.load_network(path, generator(), ARCHITECTURE, torch.device("cpu"))
    assert not marker.exists()
