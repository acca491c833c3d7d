"""cycle_gan and test models: training step, identity across channel counts, checkpoints."""

import errno
import os
from pathlib import Path
from typing import BinaryIO

import pytest
import torch
from torch.utils.data import default_collate

from data import create_dataset
from models import checkpoint, create_model, model_names
from models.cycle_gan_model import CycleGANModel
from options.train_options import TrainOptions
from tests.helpers import losses_of, parse_test_options, train_arguments
from util.errors import CheckpointError, OptionError


def make_model(dataroot: Path, checkpoints: Path, *extra: str) -> tuple[CycleGANModel, dict]:
    opt = TrainOptions().parse(train_arguments(dataroot, checkpoints, "unit", *extra))
    torch.manual_seed(0)
    model = create_model(opt)
    dataset = create_dataset(opt)
    model.calibrate(dataset)
    model.setup()
    batch = default_collate([dataset[(index, index)] for index in range(2)])
    return model, batch


def test_factory_lists_valid_names() -> None:
    assert {"cycle_gan", "test"} <= set(model_names())
    with pytest.raises(SystemExit):
        TrainOptions().parse(["--dataroot", "x", "--model", "cyclegan"])


def test_one_step_changes_every_network_and_losses_are_finite(small_root: Path, tmp_path: Path) -> None:
    model, batch = make_model(small_root, tmp_path, "--batch_size", "2")
    before = {name: [p.detach().clone() for p in net.parameters()] for name, net in model.networks.items()}
    model.set_input(batch)
    model.optimize_parameters()
    for name, network in model.networks.items():
        changed = any(not torch.equal(old, new) for old, new in zip(before[name], network.parameters(), strict=True))
        assert changed, f"{name} did not change"
    losses = losses_of(model)
    assert list(losses) == model.loss_names
    assert all(torch.isfinite(torch.tensor(value)) for value in losses.values())
    assert model.generator_objective.item() == pytest.approx(
        sum(value for name, value in losses.items() if not name.startswith("D_")), rel=1e-5
    )


def test_identity_loss_bridges_one_and_three_channels(small_root: Path, tmp_path: Path) -> None:
    model, batch = make_model(small_root, tmp_path)
    model.set_input(batch)
    model.optimize_parameters()
    visuals = model.current_visuals()
    assert visuals["real_A"].shape[1] == 1 and visuals["real_B"].shape[1] == 3
    assert visuals["idt_A"].shape[1] == 3 and visuals["idt_B"].shape[1] == 1
    assert list(visuals) == ["real_A", "fake_B", "rec_A", "idt_B", "real_B", "fake_A", "rec_B", "idt_A"]


def test_identity_weight_zero_skips_identity(small_root: Path, tmp_path: Path) -> None:
    model, batch = make_model(small_root, tmp_path, "--lambda_identity", "0")
    model.set_input(batch)
    model.optimize_parameters()
    assert "idt_A" not in losses_of(model) and "idt_A" not in model.current_visuals()


@pytest.mark.parametrize("gan_mode", ["vanilla", "wgangp"])
def test_other_gan_modes_train(small_root: Path, tmp_path: Path, gan_mode: str) -> None:
    model, batch = make_model(small_root, tmp_path, "--gan_mode", gan_mode, "--norm", "batch", "--batch_size", "2")
    model.set_input(batch)
    model.optimize_parameters()
    assert all(torch.isfinite(torch.tensor(value)) for value in losses_of(model).values())


def test_save_then_load_gives_identical_outputs(small_root: Path, tmp_path: Path) -> None:
    model, batch = make_model(small_root, tmp_path)
    model.set_input(batch)
    model.optimize_parameters()
    model.save(epoch=3, numbered=True)
    for label in ("3", "latest"):
        for name in model.networks:
            assert checkpoint.network_path(model.save_dir, label, name).is_file()
        assert checkpoint.training_state_path(model.save_dir, label).is_file()
    arguments = ["--name", "unit", "--checkpoints_dir", str(tmp_path), "--epoch", "3", "--gpu_ids", "-1"]
    opt = parse_test_options([*arguments, "--dataroot", str(small_root), "--model", "cycle_gan"])
    assert opt.model == "cycle_gan" and opt.ngf == 4 and opt.netG == "resnet_6blocks"
    loaded = create_model(opt)
    loaded.setup()
    loaded.load_networks("3")
    model.eval_mode()
    loaded.eval_mode()
    images = batch["A"]
    with torch.no_grad():
        assert torch.equal(model.networks["G_A"](images), loaded.networks["G_A"](images))
        assert torch.equal(model.networks["G_B"](batch["B"]), loaded.networks["G_B"](batch["B"]))


def test_test_model_needs_only_G_A(small_root: Path, tmp_path: Path) -> None:
    model, batch = make_model(small_root, tmp_path)
    model.save(epoch=1, numbered=False)
    for name in ("G_B", "D_A", "D_B"):
        checkpoint.network_path(model.save_dir, "latest", name).unlink()
    (model.save_dir / "train_opt.json").unlink(missing_ok=True)
    opt = parse_test_options(
        ["--name", "unit", "--checkpoints_dir", str(tmp_path), "--gpu_ids", "-1", "--dataroot", "x"]
    )
    assert opt.model == "test"
    tester = create_model(opt)
    tester.setup()
    tester.load_networks("latest")
    tester.set_input(batch)
    tester.test()
    assert list(tester.current_visuals()) == ["real_A", "fake_B"]
    assert tester.current_visuals()["fake_B"].shape == (2, 3, 32, 32)
    with pytest.raises(OptionError, match="inference only"):
        TrainOptions().parse(["--dataroot", "x", "--model", "test"])


def test_a_full_disk_while_saving_keeps_the_previous_checkpoint_and_says_so(
    small_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, _ = make_model(small_root, tmp_path)
    model.save(epoch=1, numbered=True)
    before = {path.name: path.read_bytes() for path in model.save_dir.iterdir() if path.is_file()}
    real_save, calls = torch.save, []

    def fill_the_disk_on_the_third_file(obj: object, handle: BinaryIO) -> None:
        calls.append(handle)
        if len(calls) == 3:
            handle.write(b"half a file")
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(obj, handle)

    monkeypatch.setattr(torch, "save", fill_the_disk_on_the_third_file)
    with pytest.raises(
        CheckpointError, match=r"the disk is full\. Nothing was replaced: the previous checkpoint is intact"
    ):
        model.save(epoch=2, numbered=True)
    after = {path.name: path.read_bytes() for path in model.save_dir.iterdir() if path.is_file()}
    assert after == before  # latest and epoch 1 untouched, no epoch 2 file, nothing half-written
    assert not (model.save_dir / checkpoint.STAGING_FOLDER).exists()


def test_a_full_disk_at_the_first_save_does_not_promise_a_previous_checkpoint(
    small_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, _ = make_model(small_root, tmp_path)

    def full_disk(obj: object, handle: BinaryIO) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(
        CheckpointError, match=r"the disk is full\. No epoch has been saved yet\. Free some space, then start"
    ):
        model.save(epoch=1, numbered=True)
    assert not any(model.save_dir.glob("*.pth"))


def test_a_save_interrupted_after_its_commit_is_completed_and_one_before_is_discarded(
    small_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, _ = make_model(small_root, tmp_path)
    model.save(epoch=1, numbered=False)
    real_replace, moved = os.replace, []

    def crash_after_two_moves(source: object, target: object) -> None:
        if len(moved) == 2:
            raise KeyboardInterrupt  # the process dies half way through moving the files into place
        moved.append(target)
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", crash_after_two_moves)
    with pytest.raises(KeyboardInterrupt):
        model.save(epoch=2, numbered=False)
    monkeypatch.setattr(os, "replace", real_replace)
    epochs = {checkpoint.load_file(path)["epoch"] for path in model.save_dir.glob("latest_*.pth")}
    assert epochs == {1, 2}  # mixed on disk until training restarts...
    assert checkpoint.recover_interrupted_save(model.save_dir) == "completed"
    epochs = {checkpoint.load_file(path)["epoch"] for path in model.save_dir.glob("latest_*.pth")}
    assert epochs == {2}  # ...which finishes the committed save
    (model.save_dir / checkpoint.STAGING_FOLDER).mkdir()
    (model.save_dir / checkpoint.STAGING_FOLDER / "latest_net_G_A.pth").write_bytes(b"uncommitted")
    assert checkpoint.recover_interrupted_save(model.save_dir) == "discarded"
    assert checkpoint.load_file(checkpoint.network_path(model.save_dir, "latest", "G_A"))["epoch"] == 2


def test_inconsistent_latest_is_detected_on_resume(small_root: Path, tmp_path: Path) -> None:
    model, _ = make_model(small_root, tmp_path)
    model.save(epoch=1, numbered=True)
    model.save(epoch=2, numbered=False)
    # Simulate a crash between files: G_B of epoch 2, but the rest of epoch 1.
    for name in ("G_A", "D_A", "D_B"):
        latest = checkpoint.network_path(model.save_dir, "latest", name)
        latest.write_bytes(checkpoint.network_path(model.save_dir, "1", name).read_bytes())
    checkpoint.training_state_path(model.save_dir, "latest").write_bytes(
        checkpoint.training_state_path(model.save_dir, "1").read_bytes()
    )
    fresh, _ = make_model(small_root, tmp_path / "other")
    fresh.save_dir = model.save_dir
    with pytest.raises(
        CheckpointError, match=r"inconsistent: latest_net_G_B.pth is from epoch 2 .*available epochs.*1, latest"
    ):
        fresh.resume("latest")
