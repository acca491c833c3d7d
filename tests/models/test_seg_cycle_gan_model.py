"""seg_cycle_gan: the extra losses in the objective, their weights, visuals, and the drivers end to end."""

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

import test as test_driver
import train
from data import create_dataset
from data.image_io import read_array, write_image
from models import create_model, improved_losses
from models.cycle_gan_model import CycleGANModel
from models.seg_cycle_gan_model import SegCycleGANModel
from options.train_options import TrainOptions
from tests.helpers import losses_of, train_arguments
from util.errors import DatasetError

EXTRA_LOSSES = ["GT_fake", "GT_rec", "structure_fake", "structure_rec", "color_fake"]
WEIGHTS = {"GT": "lambda_gt", "structure": "lambda_cv", "color": "lambda_color"}


def make_model(dataroot: Path, checkpoints: Path, *extra: str) -> tuple[SegCycleGANModel, dict]:
    arguments = train_arguments(dataroot, checkpoints, "seg", "--model", "seg_cycle_gan", "--batch_size", "2", *extra)
    opt = TrainOptions().parse(arguments)
    torch.manual_seed(0)
    model = create_model(opt)
    dataset = create_dataset(opt)
    model.calibrate(dataset)
    model.setup()
    batch = default_collate([dataset[(index, index)] for index in range(2)])
    return model, batch


def test_defaults(small_root: Path, tmp_path: Path) -> None:
    model, _ = make_model(small_root, tmp_path)
    assert isinstance(model, CycleGANModel)
    opt = model.opt
    assert (opt.lambda_gt, opt.lambda_cv, opt.lambda_color, opt.gt_border, opt.gt_threshold) == (
        10.0,
        5.0,
        5.0,
        2,
        None,
    )
    assert opt.dataset_mode == "improvedunaligned"
    assert model.loss_names == ["D_A", "G_A", "cycle_A", "idt_A", "D_B", "G_B", "cycle_B", "idt_B", *EXTRA_LOSSES]
    assert model.stain_model is not None and "trainB" in model.stain_model.source
    assert model.nucleus_threshold == model.stain_model.nucleus_threshold  # calibrated, not a constant


def test_objective_is_the_sum_of_every_weighted_term(small_root: Path, tmp_path: Path) -> None:
    model, batch = make_model(small_root, tmp_path)
    model.set_input(batch)
    model.optimize_parameters()
    losses = losses_of(model)
    assert list(losses) == model.loss_names
    assert all(torch.isfinite(torch.tensor(value)) for value in losses.values())
    generator_terms = sum(value for name, value in losses.items() if not name.startswith("D_"))
    assert model.generator_objective.item() == pytest.approx(generator_terms, rel=1e-5)
    for name in EXTRA_LOSSES:
        assert losses[name] >= 0.0


def expected_terms(
    model: SegCycleGANModel, opt: object, reference: improved_losses.ColorReference
) -> dict[str, torch.Tensor]:
    """Every extra term computed by hand from the model's images, with the weights and settings of
    ``opt`` and the colour ``reference`` (which ``--color_projections`` and ``--color_samples`` decide)."""
    v, mask = model.visuals, model.real_A_GT
    threshold = opt.gt_threshold if opt.gt_threshold is not None else model.stain_model.nucleus_threshold
    torch.manual_seed(7)
    color = improved_losses.color_loss(v["fake_B"], mask, reference)
    return {
        "GT_fake": opt.lambda_gt
        * improved_losses.gt_loss(
            v["fake_B"],
            mask,
            stain_inverse=model.stain_inverse,
            threshold=threshold,
            temperature=opt.gt_temperature,
            border=opt.gt_border,
        ),
        "GT_rec": opt.lambda_gt
        * improved_losses.gt_reconstruction_loss(v["rec_A"], v["real_A"], mask, temperature=opt.gt_temperature),
        "structure_fake": opt.lambda_cv * improved_losses.structure_loss(v["fake_B"], v["real_A"]),
        "structure_rec": opt.lambda_cv * improved_losses.structure_loss(v["rec_B"], v["real_B"]),
        "color_fake": opt.lambda_color * color,
    }


@pytest.mark.parametrize(
    "flags",
    [
        [],
        ["--lambda_gt", "2", "--lambda_cv", "3", "--lambda_color", "0.5"],
        ["--gt_threshold", "0.8", "--gt_temperature", "0.2", "--gt_border", "0"],
        ["--lambda_hsv", "7", "--color_projections", "8", "--color_samples", "100"],
    ],
)
def test_every_flag_reaches_the_loss_it_names(small_root: Path, tmp_path: Path, flags: list[str]) -> None:
    """Each term equals the loss function called by hand with the flag's value; the defaults differ."""
    model, batch = make_model(small_root, tmp_path, *flags)
    model.set_input(batch)
    model.forward()
    torch.manual_seed(7)
    losses = model.generator_losses()
    expected = expected_terms(model, model.opt, model.color_reference)
    assert model.color_reference.nuclei.directions.shape == (model.opt.color_projections, 3)
    assert model.color_reference.tissue.levels == model.opt.color_samples
    for name, value in expected.items():
        assert losses[name].item() == pytest.approx(value.item(), rel=1e-5, abs=1e-7), name
    if flags:
        default_model, _ = make_model(small_root, tmp_path / "default")
        defaults = expected_terms(model, default_model.opt, default_model.color_reference)
        changed = [name for name in expected if defaults[name].item() != pytest.approx(expected[name].item(), rel=1e-6)]
        named = {
            "--lambda_gt": "GT_fake", "--lambda_cv": "structure_fake", "--lambda_color": "color_fake",
            "--lambda_hsv": "color_fake", "--gt_threshold": "GT_fake", "--gt_temperature": "GT_rec",
            "--color_projections": "color_fake", "--gt_border": "GT_fake", "--color_samples": "color_fake",
        }  # fmt: skip
        for flag in flags[::2]:
            if flag in named:
                assert named[flag] in changed, flag


@pytest.mark.parametrize("zeroed", ["lambda_gt", "lambda_cv", "lambda_color"])
def test_a_zero_weight_skips_computing_its_loss(
    small_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, zeroed: str
) -> None:
    skipped = {
        "lambda_gt": ("gt_loss", "gt_reconstruction_loss"),
        "lambda_cv": ("structure_loss",),
        "lambda_color": ("color_loss",),
    }[zeroed]

    def must_not_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("a loss with weight 0 was computed")

    for function in skipped:
        monkeypatch.setattr(improved_losses, function, must_not_run)
    model, batch = make_model(small_root, tmp_path, f"--{zeroed}", "0")
    model.set_input(batch)
    model.optimize_parameters()
    prefix = {weight: prefix for prefix, weight in WEIGHTS.items()}[zeroed]
    assert not any(name.startswith(prefix + "_") for name in model.loss_names)
    assert len(losses_of(model)) == 8 + len(EXTRA_LOSSES) - (2 if zeroed != "lambda_color" else 1)


def test_visuals_show_the_mask_and_what_the_gt_loss_sees(small_root: Path, tmp_path: Path) -> None:
    model, batch = make_model(small_root, tmp_path)
    model.set_input(batch)
    model.test()
    visuals = model.current_visuals()
    assert list(visuals)[:4] == ["real_A", "real_A_GT", "fake_B", "nuclei_fake_B"]
    assert torch.equal(visuals["real_A_GT"], batch["A_GT"] * 2 - 1)
    assert visuals["nuclei_fake_B"].shape == batch["A_GT"].shape
    assert -1.0 <= visuals["nuclei_fake_B"].min() <= visuals["nuclei_fake_B"].max() <= 1.0


def test_training_without_masks_is_a_clear_error(small_root: Path, tmp_path: Path) -> None:
    model, batch = make_model(small_root, tmp_path, "--dataset_mode", "unaligned")
    assert "A_GT" not in batch
    with pytest.raises(DatasetError, match=r"needs nucleus masks.*--dataset_mode improvedunaligned"):
        model.set_input(batch)
    model, _ = make_model(small_root, tmp_path / "no_gt", "--dataset_mode", "unaligned", "--lambda_gt", "0")
    model.set_input(batch)
    model.optimize_parameters()


@pytest.mark.slow
def test_train_then_test_every_epoch_end_to_end(small_root: Path, tmp_path: Path) -> None:
    checkpoints, results = tmp_path / "checkpoints", tmp_path / "results"
    arguments = train_arguments(small_root, checkpoints, "seg", "--model", "seg_cycle_gan")
    assert train.main(arguments) == 0
    experiment = checkpoints / "seg"
    header = (experiment / "loss_log.csv").read_text().splitlines()[0].split(",")
    assert header[-len(EXTRA_LOSSES) :] == EXTRA_LOSSES
    page = (experiment / "web" / "index.html").read_text()
    assert "epoch0002_real_A_GT.png" in page and "epoch0002_nuclei_fake_B.png" in page
    test_arguments = ["--name", "seg", "--checkpoints_dir", str(checkpoints), "--results_dir", str(results)]
    assert test_driver.main([*test_arguments, "--epoch", "all"]) == 0
    for epoch in ("1", "2"):
        names = {path.name for path in (results / "seg" / f"test_{epoch}" / "images").iterdir()}
        stem = sorted((small_root / "testA").iterdir())[0].stem
        assert {f"{stem}_real_A.png", f"{stem}_fake_B.png", f"{stem}_rec_A.png"} <= names


@pytest.mark.slow
def test_interrupted_run_resumes_without_flags_bit_for_bit(
    small_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2 epochs straight equal epoch 1, an interruption, and --continue_train with nothing but the name."""
    schedule = ["--model", "seg_cycle_gan", "--lambda_color", "7", "--deterministic", "--n_epochs_decay", "1"]
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
    for network in ("G_A", "G_B", "D_A", "D_B"):
        straight = torch.load(tmp_path / "straight" / f"latest_net_{network}.pth", weights_only=True)["state_dict"]
        resumed = torch.load(tmp_path / "resumed" / f"latest_net_{network}.pth", weights_only=True)["state_dict"]
        assert all(torch.equal(straight[key], resumed[key]) for key in straight), network
    log = (tmp_path / "resumed" / "loss_log.csv").read_text().splitlines()
    assert log[0].endswith(",".join(EXTRA_LOSSES)) and [row.split(",")[0] for row in log[1:]] == ["1", "2"]


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--gt_threshold", "3"), ("--gt_threshold", "0"), ("--color_samples", "0"), ("--lambda_gt", "-1")],
)
def test_out_of_range_loss_options_are_refused(
    small_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str
) -> None:
    with pytest.raises(SystemExit):
        TrainOptions().parse(train_arguments(small_root, tmp_path, "bad", "--model", "seg_cycle_gan", flag, value))
    assert re.search(f"argument {flag}: must be a (finite |whole )?number", capsys.readouterr().err)


def test_blank_or_gray_target_images_are_refused_naming_the_folder(
    small_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gray_root = tmp_path / "gray_data"
    shutil.copytree(small_root, gray_root)
    for path in (gray_root / "trainB").glob("*.png"):
        image = read_array(path)
        write_image(path, np.repeat(image.mean(axis=2, keepdims=True).astype(np.uint8), 3, axis=2))
    assert train.main(train_arguments(gray_root, tmp_path / "ckpt", "gray", "--model", "seg_cycle_gan")) == 1
    message = caplog.text
    assert f"cannot estimate stain vectors from {gray_root / 'trainB'}" in message and "real H&E" in message
    assert "Traceback" not in message


@pytest.mark.slow
def test_a_run_saved_before_the_stain_model_resumes_and_its_generator_tests(
    small_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Training states from before the stain model lack it: resuming calibrates it afresh; test.py needs G_A only."""
    arguments = train_arguments(small_root, tmp_path, "old", "--model", "seg_cycle_gan", "--n_epochs_decay", "0")
    assert train.main(arguments) == 0
    for label in ("1", "latest"):
        path = tmp_path / "old" / f"{label}_training_state.pth"
        state = torch.load(path, weights_only=True)
        assert state["extra"]["stain_model"]["nucleus_threshold"] > 0
        del state["extra"]["stain_model"], state["extra"]["color_reference"]
        torch.save(state, path)
    resumed = ["--name", "old", "--checkpoints_dir", str(tmp_path), "--continue_train", "--n_epochs", "2"]
    assert train.main(resumed) == 0
    assert "stain model from" in caplog.text
    results = ["--name", "old", "--checkpoints_dir", str(tmp_path), "--results_dir", str(tmp_path / "results")]
    assert test_driver.main(results) == 0
