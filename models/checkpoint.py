"""The checkpoint format: one file per network per epoch, plus one training-state file.

``checkpoints/<name>/<label>_net_<network>.pth`` holds a network's weights together with the
architecture options it was built with, so inference needs no repeated flags and a mismatch
is reported in words. ``<label>_training_state.pth`` holds everything else needed to continue
training exactly (optimizers, schedulers, image pools, RNG states, the epoch counter).
``<label>`` is an epoch number or ``latest``. An epoch's files are written as one set
(:func:`save_together`): a crash leaves the previous set or the new one, never a mix.
"""

from __future__ import annotations

import argparse
import errno
import io
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from util.atomic import fsync_directory, write_text_durably
from util.disk import describe_os_error
from util.errors import CheckpointError

FORMAT_VERSION = 1
#: Where :func:`save_together` stages an epoch's files, and the list that commits them.
STAGING_FOLDER = ".saving"
COMMIT_LIST = "COMMITTED"

#: Options that fix the shape of the networks (and the meaning of their channels). They are
#: stored in every network file and enforced when a checkpoint is loaded.
ARCHITECTURE_OPTIONS = (
    "input_nc",
    "output_nc",
    "netG",
    "ngf",
    "netD",
    "ndf",
    "n_layers_D",
    "norm",
    "no_dropout",
    "direction",
)


def architecture_of(opt: argparse.Namespace) -> dict[str, Any]:
    """The architecture options of ``opt`` as a plain dict."""
    return {key: getattr(opt, key) for key in ARCHITECTURE_OPTIONS}


def network_file_name(label: str, network_name: str) -> str:
    return f"{label}_net_{network_name}.pth"


def training_state_file_name(label: str) -> str:
    return f"{label}_training_state.pth"


def network_path(directory: Path, label: str, network_name: str) -> Path:
    return Path(directory) / network_file_name(label, network_name)


def training_state_path(directory: Path, label: str) -> Path:
    return Path(directory) / training_state_file_name(label)


def load_file(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Load a checkpoint file safely (tensors and plain data only: no code runs)."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} does not exist")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as error:
        raise CheckpointError(
            f"cannot read checkpoint {path}: {error}. The file is damaged or is not a PyTorch checkpoint."
        ) from error


def network_payload(network: nn.Module, architecture: dict[str, Any], epoch: int) -> dict[str, Any]:
    """What a network file holds: the weights, the architecture and the epoch they finished."""
    return {
        "format_version": FORMAT_VERSION,
        "epoch": epoch,
        "architecture": dict(architecture),
        "state_dict": network.state_dict(),
    }


def save_together(directory: Path, payloads: dict[str, dict[str, Any]]) -> None:
    """Write several files into ``directory`` as one: after a crash, all of them are in place or none.

    Every file is first written and flushed into ``<directory>/.saving/``; then a ``COMMITTED``
    list is written there, and the files are moved into place in that order. A crash before the
    list leaves the old files untouched (the staging folder is discarded later); a crash after it
    is finished by :func:`recover_interrupted_save` when training restarts. A full disk or any
    other write error stops the save before anything in place is touched, and the staging folder
    is removed so that it does not keep the disk full.
    """
    directory = Path(directory)
    staging = directory / STAGING_FOLDER
    if staging.exists():
        shutil.rmtree(staging)  # a crash before its commit: never in use
    try:
        staging.mkdir(parents=True)
        for name, payload in payloads.items():
            # Serialized in memory first: torch.save reports a failed write to a file as a RuntimeError
            # without its cause, a plain write says "no space left" as an OSError.
            buffer = io.BytesIO()
            torch.save(payload, buffer)
            with open(staging / name, "wb") as handle:
                handle.write(buffer.getbuffer())
                handle.flush()
                os.fsync(handle.fileno())
        write_text_durably(staging / COMMIT_LIST, "\n".join(payloads) + "\n")
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        remedy = "Free some space" if error.errno in (errno.ENOSPC, errno.EDQUOT) else "Fix that"
        if any(directory.glob("*_net_*.pth")):
            kept = (
                f"Nothing was replaced: the previous checkpoint is intact. {remedy}, then resume with --continue_train."
            )
        else:
            kept = f"No epoch has been saved yet. {remedy}, then start the training again."
        raise CheckpointError(
            f"cannot save checkpoint files in {directory}: {describe_os_error(error)}. {kept}"
        ) from error
    _move_committed(staging, directory)


def recover_interrupted_save(directory: Path) -> str | None:
    """Finish a save that was committed when a crash stopped it, or discard one that was not.

    Returns what was done ("completed" or "discarded"), or None when no save was interrupted.
    Call it only where no other process is saving into ``directory`` (training start-up).
    """
    staging = Path(directory) / STAGING_FOLDER
    if not staging.is_dir():
        return None
    if (staging / COMMIT_LIST).is_file():
        _move_committed(staging, Path(directory))
        return "completed"
    shutil.rmtree(staging)
    return "discarded"


def _move_committed(staging: Path, directory: Path) -> None:
    """Move the committed files into place; files moved before a crash are skipped, so it can be repeated."""
    for name in (staging / COMMIT_LIST).read_text(encoding="utf-8").split():
        if (staging / name).exists():
            os.replace(staging / name, directory / name)
    fsync_directory(directory)
    shutil.rmtree(staging)


def read_architecture(path: Path) -> dict[str, Any] | None:
    """The architecture stored in a network file (None for a bare state dict)."""
    payload = load_file(path)
    return payload.get("architecture") if "state_dict" in payload else None


def load_network(path: Path, network: nn.Module, architecture: dict[str, Any], device: torch.device) -> int | None:
    """Load weights from ``path`` into ``network``; return the stored epoch (None if unknown).

    A file from another architecture is refused with the differing options named. Bare state
    dicts (e.g. from the original CycleGAN code) are accepted when their tensors fit.
    """
    payload = load_file(path, device)
    if "state_dict" in payload:
        stored = payload.get("architecture", {})
        differences = [
            f"--{key} {stored[key]!r} in the checkpoint vs {architecture[key]!r} now"
            for key in architecture
            if key in stored and stored[key] != architecture[key]
        ]
        if differences:
            raise CheckpointError(
                f"checkpoint {path} was trained with another architecture: {'; '.join(differences)}. "
                "Use the checkpoint's values (test.py applies them automatically) or another --name."
            )
        state_dict, epoch = payload["state_dict"], payload.get("epoch")
    else:
        state_dict, epoch = payload, None
    try:
        network.load_state_dict(state_dict)
    except RuntimeError as error:
        raise CheckpointError(_describe_mismatch(path, network, state_dict)) from error
    return epoch


def require_one_epoch(directory: Path, label: str, epochs: dict[str, int | None]) -> None:
    """Refuse a checkpoint whose network files (``{network: stored epoch}``) come from different epochs.

    Saves never leave such a set (:func:`save_together`), but files copied together by hand, or read
    while another process moves a save into place, can be one.
    """
    known = {name: epoch for name, epoch in epochs.items() if epoch is not None}
    if len(set(known.values())) > 1:
        listed = ", ".join(f"{name} {epoch}" for name, epoch in known.items())
        raise CheckpointError(
            f"the files of checkpoint {label!r} in {directory} come from different epochs ({listed}); "
            "a save was interrupted or files were mixed by hand: load a numbered epoch, or resume training once "
            "to finish the save"
        )


def _describe_mismatch(path: Path, network: nn.Module, state_dict: dict[str, torch.Tensor]) -> str:
    expected = network.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    reshaped = [
        f"{key} {tuple(state_dict[key].shape)} vs {tuple(expected[key].shape)}"
        for key in expected
        if key in state_dict and state_dict[key].shape != expected[key].shape
    ]
    details = []
    if missing:
        details.append(f"{len(missing)} missing tensors (e.g. {missing[0]})")
    if unexpected:
        details.append(f"{len(unexpected)} unexpected tensors (e.g. {unexpected[0]})")
    if reshaped:
        details.append(f"{len(reshaped)} tensors of another shape (e.g. {reshaped[0]})")
    return (
        f"checkpoint {path} does not fit this network ({', '.join(details)}); it was made with other "
        "--netG/--ngf/--norm/--input_nc/--output_nc values or by other code"
    )


def saved_epochs(directory: Path, network_name: str) -> list[int]:
    """The epoch numbers that have a ``<epoch>_net_<network_name>.pth`` file, ascending."""
    pattern = re.compile(rf"(\d+)_net_{re.escape(network_name)}\.pth")
    found = (pattern.fullmatch(path.name) for path in Path(directory).glob(f"*_net_{network_name}.pth"))
    return sorted(int(match.group(1)) for match in found if match)


def describe_available(directory: Path, network_name: str) -> str:
    """A sentence listing the saved epochs, for error messages."""
    epochs = saved_epochs(directory, network_name)
    labels = [str(epoch) for epoch in epochs]
    if network_path(directory, "latest", network_name).is_file():
        labels.append("latest")
    if not labels:
        return f"{directory} holds no checkpoint of {network_name}; train first with train.py --name {Path(directory).name}"
    return f"available epochs in {directory}: {', '.join(labels)}"


def require_checkpoint(directory: Path, label: str, network_name: str) -> Path:
    """The path of ``<label>_net_<network_name>.pth``; an error listing what exists otherwise."""
    path = network_path(directory, label, network_name)
    if not path.is_file():
        raise CheckpointError(
            f"no checkpoint for epoch {label!r} ({path.name}); {describe_available(directory, network_name)}"
        )
    return path
