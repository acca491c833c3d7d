"""seg_cycle_gan: the extra losses in the objective, their weights, visuals, and the drivers end to end."""

import re
from pathlib import Path

import pytest
import torch
from torch.utils.data import default_collate

import test as test_driver
import train
from data import create_dataset
from models import create_model, improved_losses
from models.cycle_gan_model import CycleGANModel
from models.seg_cycle_gan_model import SegCycleGANModel
from options.train_options import TrainOptions
from tests.helpers import train_arguments
from util.errors import DatasetError

EXTRA_LOSSES = ["GT_fake", "GT_rec", "CV_fake", "CV_rec", "HSV_fake", "HSV_rec"]


def make_model(dataroot: Path, checkpoints: Path, *extra: str) -> tuple[SegCycleGANModel, dict]:
    arguments = train_arguments(dataroot, checkpoints, "seg", "--model", "seg_cycle_gan", "--batch_size", "2", *extra)
    opt = TrainOptions().parse(arguments)
    torch.manual_seed(0)
    model = create_model(opt)
    model.setup()
    batch = default_collate([create_dataset(opt)[(index, index)] for index in range(2)])
    return model, batch


def test_defaults_follow_the_published_formula(small_root: Path, tmp_path: Path) -> None:
    model, _ = make_model(small_root, tmp_path)
    assert isinstance(model, CycleGANModel)
    opt = model.opt
    assert (opt.lambda_gt, opt.lambda_cv, opt.lambda_hsv) == (5.0, 5.0, 10.0)
    assert opt.dataset_mode == "improvedunaligned"
    assert model.loss_names == ["D_A", "G_A", "cycle_A", "idt_A", "D_B", "G_B", "cycle_B", "idt_B", *EXTRA_LOSSES]


def test_objective_is_the_sum_of_every_weighted_term(small_root: Path, tmp_path: Path) -> None:
    model, batch = make_model(small_root, tmp_path)
    model.set_input(batch)
    model.optimize_parameters()
    losses = model.current_losses()
    assert list(losses) == model.loss_names
    assert all(torch.isfinite(torch.tensor(value)) for value in losses.values())
    generator_terms = sum(value for name, value in losses.items() if not name.startswith("D_"))
    assert model.generator_objective.item() == pytest.approx(generator_terms, rel=1e-5)
    for name in EXTRA_LOSSES:  # each weighted term lies in [0, weight]
        weight = {"GT": 5.0, "CV": 5.0, "HSV": 10.0}[name.split("_")[0]]
        assert 0.0 <= losses[name] <= weight


def test_terms_use_the_documented_image_pairs(small_root: Path, tmp_path: Path) -> None:
    model, batch = make_model(small_root, tmp_path)
    model.set_input(batch)
    model.forward()
    losses = model.generator_losses()
    v, mask = model.visuals, model.real_A_GT
    expected = {
        "GT_fake": 5.0 * improved_losses.gt_loss(v["fake_B"], mask),
        "GT_rec": 5.0 * improved_losses.gt_reconstruction_loss(v["rec_A"], v["real_A"], mask),
        "CV_fake": 5.0 * improved_losses.color_variation_loss(v["fake_B"], v["real_A"]),
        "CV_rec": 5.0 * improved_losses.color_variation_loss(v["rec_B"], v["real_B"]),
        "HSV_fake": 10.0 * improved_losses.hsv_loss(v["fake_B"], v["real_B"]),
        "HSV_rec": 10.0 * improved_losses.hsv_loss(v["rec_B"], v["real_B"]),
    }
    for name, value in expected.items():
        assert losses[name].item() == pytest.approx(value.item(), rel=1e-5, abs=1e-7), name


@pytest.mark.parametrize("zeroed", ["lambda_gt", "lambda_cv", "lambda_hsv"])
def test_a_zero_weight_skips_computing_its_loss(
    small_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, zeroed: str
) -> None:
    skipped = {
        "lambda_gt": ("gt_loss", "gt_reconstruction_loss"),
        "lambda_cv": ("color_variation_loss",),
        "lambda_hsv": ("soft_hsv_histogram",),
    }[zeroed]

    def must_not_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("a loss with weight 0 was computed")

    for function in skipped:
        monkeypatch.setattr(improved_losses, function, must_not_run)
    model, batch = make_model(small_root, tmp_path, f"--{zeroed}", "0")
    model.set_input(batch)
    model.optimize_parameters()
    prefix = {"lambda_gt": "GT", "lambda_cv": "CV", "lambda_hsv": "HSV"}[zeroed]
    assert not any(name.startswith(prefix + "_") for name in model.loss_names)
    assert len(model.current_losses()) == 8 + 4


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


def test_train_then_test_every_epoch_end_to_end(small_root: Path, tmp_path: Path) -> None:
    checkpoints, results = tmp_path / "checkpoints", tmp_path / "results"
    arguments = train_arguments(small_root, checkpoints, "seg", "--model", "seg_cycle_gan")
    assert train.main(arguments) == 0
    experiment = checkpoints / "seg"
    header = (experiment / "loss_log.csv").read_text().splitlines()[0].split(",")
    assert header[-6:] == EXTRA_LOSSES
    page = (experiment / "web" / "index.html").read_text()
    assert "epoch0002_real_A_GT.png" in page and "epoch0002_nuclei_fake_B.png" in page
    test_arguments = ["--name", "seg", "--checkpoints_dir", str(checkpoints), "--results_dir", str(results)]
    assert test_driver.main([*test_arguments, "--epoch", "all"]) == 0
    for epoch in ("1", "2"):
        names = {path.name for path in (results / "seg" / f"test_{epoch}" / "images").iterdir()}
        stem = sorted((small_root / "testA").iterdir())[0].stem
        assert {f"{stem}_real_A.png", f"{stem}_fake_B.png", f"{stem}_rec_A.png"} <= names


def test_interrupted_run_resumes_without_flags_bit_for_bit(
    small_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2 epochs straight equal epoch 1, an interruption, and --continue_train with nothing but the name."""
    schedule = ["--model", "seg_cycle_gan", "--lambda_hsv", "7", "--deterministic", "--n_epochs_decay", "1"]
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
    [("--gt_threshold", "1.2"), ("--gt_threshold", "0"), ("--hsv_bandwidth", "2"), ("--lambda_gt", "-1")],
)
def test_out_of_range_loss_options_are_refused(
    small_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str
) -> None:
    with pytest.raises(SystemExit):
        TrainOptions().parse(train_arguments(small_root, tmp_path, "bad", "--model", "seg_cycle_gan", flag, value))
    assert re.search(f"argument {flag}: must be a (finite )?number", capsys.readouterr().err)
