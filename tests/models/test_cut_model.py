"""cut and seg_cut: the paper's modes, PatchNCE's gradients, bad flags, masks, and the drivers end to end."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import default_collate

import colorize
import test as test_driver
import train
from data import create_dataset
from data.image_io import read_array
from models import create_model, improved_losses, model_names
from models.cut_model import CUTModel
from models.mask_guidance import MaskGuidedModel
from options.train_options import TrainOptions
from scripts import export_model
from tests.helpers import REPO_ROOT, losses_of, train_arguments
from util.errors import DatasetError, OptionError

#: Crops of 32 pixels have 8x8 = 64 places at the default layers' bottleneck: the paper's 256 would not fit.
TINY_CUT = ["--num_patches", "16"]


def make_model(dataroot: Path, checkpoints: Path, model: str = "cut", *extra: str) -> tuple[CUTModel, dict]:
    patches = TINY_CUT if model.endswith("cut") else []
    arguments = train_arguments(dataroot, checkpoints, "unit", "--model", model, "--batch_size", "2", *patches, *extra)
    opt = TrainOptions().parse(arguments)
    torch.manual_seed(0)
    built = create_model(opt)
    dataset = create_dataset(opt)
    built.calibrate(dataset)
    built.setup()
    batch = default_collate([dataset[(index, index)] for index in range(2)])
    return built, batch


def test_the_factory_finds_both_models_and_the_modes_set_the_papers_defaults(small_root: Path, tmp_path: Path) -> None:
    assert {"cut", "seg_cut"} <= set(model_names())
    cut, _ = make_model(small_root, tmp_path)
    assert (cut.opt.lambda_NCE, cut.opt.nce_idt, cut.opt.flip_equivariance) == (1.0, True, False)
    assert (cut.opt.nce_T, cut.opt.num_patches, cut.opt.netF_nc, cut.nce_layers) == (0.07, 16, 256, (0, 4, 7, 10, 14))
    assert set(cut.networks) == {"G_A", "F", "D_A"} and cut.loss_names == ["D_A", "G_A", "NCE", "NCE_idt"]
    fast, _ = make_model(small_root, tmp_path / "fast", "cut", "--cut_mode", "fastcut")
    assert (fast.opt.lambda_NCE, fast.opt.nce_idt, fast.opt.flip_equivariance) == (10.0, False, True)
    assert fast.loss_names == ["D_A", "G_A", "NCE"] and "idt_A" not in fast.visual_names
    given, _ = make_model(
        small_root, tmp_path / "given", "cut", "--cut_mode", "fastcut", "--nce_idt", "--lambda_NCE", "2"
    )
    assert (given.opt.lambda_NCE, given.opt.nce_idt, given.opt.flip_equivariance) == (2.0, True, True)


def test_one_step_trains_every_network_and_the_objective_is_the_sum_of_the_terms(
    small_root: Path, tmp_path: Path
) -> None:
    model, batch = make_model(small_root, tmp_path)
    before = {name: [p.detach().clone() for p in net.parameters()] for name, net in model.networks.items()}
    model.set_input(batch)
    model.optimize_parameters()
    for name, network in model.networks.items():
        assert any(not torch.equal(old, new) for old, new in zip(before[name], network.parameters(), strict=True)), name
    losses = losses_of(model)
    assert list(losses) == model.loss_names and all(math.isfinite(value) for value in losses.values())
    assert model.generator_objective.item() == pytest.approx(
        losses["G_A"] + losses["NCE"] + losses["NCE_idt"], rel=1e-5
    )
    visuals = model.current_visuals()
    assert list(visuals) == ["real_A", "fake_B", "real_B", "idt_A"]
    assert visuals["real_A"].shape[1] == 1 and visuals["fake_B"].shape[1] == 3 and visuals["idt_A"].shape[1] == 3


def test_a_zero_nce_weight_leaves_a_plain_gan_without_heads(small_root: Path, tmp_path: Path) -> None:
    model, batch = make_model(small_root, tmp_path, "cut", "--lambda_NCE", "0")
    assert set(model.networks) == {"G_A", "D_A"} and model.loss_names == ["D_A", "G_A"]
    model.set_input(batch)
    model.optimize_parameters()
    assert list(losses_of(model)) == ["D_A", "G_A"]


def test_patch_nce_gradients_reach_the_generator_and_every_head_but_not_the_discriminator(
    small_root: Path, tmp_path: Path
) -> None:
    model, batch = make_model(small_root, tmp_path)
    model.set_input(batch)
    model.translate_for_training()
    model.patch_nce(model.visuals["real_A"], model.generated[0]).backward()
    generator, heads = model.networks["G_A"], model.networks["F"]
    # The first convolution (the encoder, through both the output and the query features) and the last (the decoder).
    for layer in (generator.body[1], generator.body[-2]):
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    for parameter in heads.parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0
    assert all(parameter.grad is None for parameter in model.networks["D_A"].parameters())


def test_flip_equivariance_compares_the_mirrored_pass_with_the_input_and_keeps_the_visuals_aligned(
    small_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, batch = make_model(small_root, tmp_path, "cut", "--cut_mode", "fastcut")
    monkeypatch.setattr(torch, "rand", lambda *args, **kwargs: torch.zeros(()))  # always below 0.5: mirrored
    model.set_input(batch)
    model.translate_for_training()
    real_A, generator = model.visuals["real_A"], model.networks["G_A"]
    assert model.flipped
    assert torch.equal(model.generated[0], generator(real_A.flip(-1)))
    assert torch.equal(model.visuals["fake_B"], model.generated[0].flip(-1))  # aligned with real_A and its mask
    # Undoing the mirror of the query maps is what makes the loss about equivariance: without it, places mismatch.
    with torch.no_grad():
        torch.manual_seed(1)
        mirrored_back = float(model.patch_nce(real_A, model.generated[0]))
        model.flipped = False
        torch.manual_seed(1)  # the same patch places
        assert mirrored_back != pytest.approx(float(model.patch_nce(real_A, model.generated[0])), rel=1e-4)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--nce_layers", "0,4,16"],
            r"--nce_layers 0,4,16: 16 outside the encoder of --netG resnet_6blocks, "
            r"whose layers are 0\.\.15",
        ),
        (["--nce_layers", "0,4,7,10,14", "--netG", "resnet_9blocks"], None),
        (
            ["--num_patches", "65"],
            r"--num_patches 65 is more than encoder layer 7 has at --crop_size 32 "
            r"\(8x8 = 64 locations\); choose --num_patches in 1\.\.64",
        ),
        (["--netG", "unet_128"], r"reads the encoder of a ResNet generator, which --netG unet_128 is not"),
    ],
)
def test_layers_outside_the_generator_and_too_many_patches_are_refused_naming_the_valid_range(
    small_root: Path, tmp_path: Path, flags: list[str], message: str | None
) -> None:
    opt = TrainOptions().parse(train_arguments(small_root, tmp_path, "bad", "--model", "cut", *TINY_CUT, *flags))
    if message is None:
        assert create_model(opt).nce_layers == (0, 4, 7, 10, 14)
        return
    with pytest.raises(OptionError, match=message):
        create_model(opt)


def test_bad_nce_flags_are_refused_by_the_parser(
    small_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    for flag, value in (("--nce_layers", "0,x"), ("--nce_layers", "4,4"), ("--nce_T", "0"), ("--num_patches", "0")):
        with pytest.raises(SystemExit):
            TrainOptions().parse(train_arguments(small_root, tmp_path, "bad", "--model", "cut", flag, value))
        assert f"argument {flag}:" in capsys.readouterr().err


def test_a_bad_layer_is_one_line_from_train_py(
    small_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    arguments = train_arguments(small_root, tmp_path, "bad", "--model", "cut", "--nce_layers", "3,40")
    assert train.main(arguments) == 1
    assert "whose layers are 0..15" in caplog.text and "Traceback" not in caplog.text
    assert not (tmp_path / "bad" / "train_opt.json").exists()


# -- seg_cut ----------------------------------------------------------------------------------------------------
def test_seg_cut_adds_the_mask_guided_terms_that_need_no_cycle(small_root: Path, tmp_path: Path) -> None:
    model, batch = make_model(small_root, tmp_path, "seg_cut")
    assert isinstance(model, MaskGuidedModel) and isinstance(model, CUTModel)
    assert model.opt.dataset_mode == "improvedunaligned"
    assert model.loss_names == ["D_A", "G_A", "NCE", "NCE_idt", "GT_fake", "structure_fake", "color_fake"]
    model.set_input(batch)
    model.optimize_parameters()
    losses = losses_of(model)
    assert model.generator_objective.item() == pytest.approx(sum(v for k, v in losses.items() if k != "D_A"), rel=1e-5)
    # The terms are seg_cycle_gan's functions with its flags, on fake_B.
    v, opt = model.visuals, model.opt
    gt = opt.lambda_gt * improved_losses.gt_loss(
        v["fake_B"], model.real_A_GT, stain_inverse=model.stain_inverse, threshold=model.nucleus_threshold,
        temperature=opt.gt_temperature, border=opt.gt_border,
    )  # fmt: skip
    structure = opt.lambda_cv * improved_losses.structure_loss(v["fake_B"], v["real_A"])
    assert losses["GT_fake"] == pytest.approx(gt.item(), rel=1e-5)
    assert losses["structure_fake"] == pytest.approx(structure.item(), rel=1e-5)
    assert list(model.current_visuals())[:4] == ["real_A", "real_A_GT", "fake_B", "nuclei_fake_B"]


def test_seg_cut_refuses_data_without_masks_as_seg_cycle_gan_does(small_root: Path, tmp_path: Path) -> None:
    messages = {}
    for name in ("seg_cut", "seg_cycle_gan"):
        model, batch = make_model(small_root, tmp_path / name, name, "--dataset_mode", "unaligned")
        assert "A_GT" not in batch
        with pytest.raises(DatasetError, match=r"needs nucleus masks.*--dataset_mode improvedunaligned") as error:
            model.set_input(batch)
        messages[name] = str(error.value).replace(name, "MODEL")
    assert messages["seg_cut"] == messages["seg_cycle_gan"]


def test_mixed_precision_and_channels_last_train_a_step(small_root: Path, tmp_path: Path) -> None:
    results = []
    for index, flags in enumerate((["--amp", "bf16"], [], ["--channels_last"])):
        model, batch = make_model(small_root, tmp_path / str(index), "seg_cut", *flags)
        model.set_input(batch)
        model.optimize_parameters()
        losses = losses_of(model)
        assert all(math.isfinite(value) for value in losses.values()), (flags, losses)
        results.append(losses)
    assert model.visuals["fake_B"].is_contiguous(memory_format=torch.channels_last)
    for name, value in results[1].items():
        assert results[2][name] == pytest.approx(value, rel=1e-3, abs=1e-5), name


# -- the drivers end to end -------------------------------------------------------------------------------------
def _weights(experiment: Path, label: str) -> dict[str, torch.Tensor]:
    tensors = {}
    for network in ("G_A", "F", "D_A"):
        payload = torch.load(experiment / f"{label}_net_{network}.pth", weights_only=True)
        tensors.update({f"{network}.{key}": value for key, value in payload["state_dict"].items()})
    state = torch.load(experiment / f"{label}_training_state.pth", weights_only=True)
    for name, optimizer in state["optimizers"].items():
        for index, slots in optimizer["state"].items():
            tensors.update({f"{name}.{index}.{slot}": value for slot, value in slots.items()})
    return tensors


@pytest.mark.slow
def test_cut_trains_two_epochs_and_an_interrupted_run_resumes_bit_for_bit(
    small_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every random draw of a step (patch places, mirroring, pool) is in the saved state: 2 epochs straight equal
    epoch 1, an interruption, and --continue_train with nothing but the name."""
    schedule = ["--model", "cut", "--flip_equivariance", "--pool_size", "2", "--deterministic", *TINY_CUT]
    assert train.main(train_arguments(small_root, tmp_path, "straight", *schedule)) == 0
    original_epoch = train.train_one_epoch

    def interrupt_epoch_2(*args: object, **kwargs: object) -> float:
        if args[3] == 2:
            raise KeyboardInterrupt
        return original_epoch(*args, **kwargs)

    monkeypatch.setattr(train, "train_one_epoch", interrupt_epoch_2)
    assert train.main(train_arguments(small_root, tmp_path, "resumed", *schedule)) == 130
    monkeypatch.setattr(train, "train_one_epoch", original_epoch)
    assert train.main(["--name", "resumed", "--checkpoints_dir", str(tmp_path), "--continue_train"]) == 0

    straight, resumed = _weights(tmp_path / "straight", "latest"), _weights(tmp_path / "resumed", "latest")
    assert straight.keys() == resumed.keys() and any(key.startswith("F.") for key in straight)
    different = [key for key in straight if not torch.equal(straight[key], resumed[key])]
    assert not different, f"resume changed {len(different)} tensors, e.g. {different[:3]}"
    saved = json.loads((tmp_path / "resumed" / "train_opt.json").read_text())
    assert (saved["model"], saved["lambda_NCE"], saved["nce_idt"], saved["nce_layers"]) == (
        "cut",
        1.0,
        True,
        [0, 4, 7, 10, 14],
    )
    header = (tmp_path / "resumed" / "loss_log.csv").read_text().splitlines()[0]
    assert header.endswith("D_A,G_A,NCE,NCE_idt")


@pytest.mark.slow
def test_seg_cut_runs_through_test_colorize_and_export_like_cycle_gan(small_root: Path, tmp_path: Path) -> None:
    checkpoints, results = tmp_path / "checkpoints", tmp_path / "results"
    assert train.main(train_arguments(small_root, checkpoints, "seg", "--model", "seg_cut", *TINY_CUT)) == 0
    experiment = checkpoints / "seg"
    assert {path.name for path in experiment.glob("2_net_*.pth")} == {"2_net_G_A.pth", "2_net_F.pth", "2_net_D_A.pth"}
    page = (experiment / "web" / "index.html").read_text()
    assert "epoch0002_fake_B.png" in page and "epoch0002_nuclei_fake_B.png" in page
    with Image.open(experiment / "loss_curves.png") as plot:
        assert plot.format == "PNG"

    arguments = ["--name", "seg", "--checkpoints_dir", str(checkpoints)]
    assert test_driver.main([*arguments, "--results_dir", str(results), "--epoch", "all"]) == 0
    stems = sorted(path.stem for path in (small_root / "testA").iterdir())
    for epoch in ("1", "2"):
        names = {path.name for path in (results / "seg" / f"test_{epoch}" / "images").iterdir()}
        assert {f"{stem}_{visual}.png" for stem in stems for visual in ("real_A", "fake_B")} <= names
        assert not any("rec_A" in name for name in names)  # no cycle

    source = sorted((small_root / "testA").iterdir())[0]
    output = tmp_path / "colorized"
    colorize_arguments = ["--input", str(source), "--output", str(output), "--gpu_ids", "-1", "--tile", "64"]
    assert colorize.main([*arguments, "--epoch", "2", *colorize_arguments]) == 0
    stained = read_array(output / f"{source.stem}.png")
    assert stained.shape == (*read_array(source).shape, 3)

    exported = tmp_path / "g_a.pt"
    assert export_model.main([*arguments, "--epoch", "2", "--format", "torchscript", "--output", str(exported)]) == 0
    image = torch.from_numpy(read_array(source).astype(np.float32) / 127.5 - 1.0)[None, None]
    assert export_model.run_exported(exported, "torchscript", image).shape == (1, 3, *image.shape[-2:])


@pytest.mark.distributed
def test_two_processes_train_cut_to_identical_weights(small_root: Path, tmp_path: Path) -> None:
    """DDP: the encoder's PatchNCE gradients, taken outside DDP's forward, are averaged with the rest of G's."""
    checkpoints, dumps = tmp_path / "checkpoints", tmp_path / "dumps"
    dumps.mkdir()
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(REPO_ROOT / "tests" / "distributed_worker.py"), str(dumps),
        *train_arguments(small_root, checkpoints, "ddp", "--model", "cut", *TINY_CUT, "--n_epochs_decay", "0"),
    ]  # fmt: skip
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    finished = subprocess.run(command, cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    rank0, rank1 = (torch.load(dumps / f"rank{rank}.pt", weights_only=True) for rank in (0, 1))
    assert set(rank0) == {"G_A", "F", "D_A"}
    for name, weights in rank0.items():
        for key, tensor in weights.items():
            assert torch.equal(tensor, rank1[name][key]), f"{name}.{key} differs between the ranks"
