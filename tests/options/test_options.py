import json
from pathlib import Path

import pytest

from experiment import save_options, saved_defaults_reader
from options.test_options import TestOptions as InferenceOptions
from options.train_options import TrainOptions
from tests.helpers import parse_test_options
from util.errors import OptionError


def parse_train(tmp_path: Path, *extra: str):
    return TrainOptions().parse(["--dataroot", "data", "--checkpoints_dir", str(tmp_path), *extra])


def test_defaults_are_gray_to_rgb_cycle_gan(tmp_path: Path) -> None:
    opt = parse_train(tmp_path)
    assert (opt.model, opt.input_nc, opt.output_nc, opt.dataset_mode) == ("cycle_gan", 1, 3, "unaligned")
    assert opt.is_train and opt.no_dropout  # cycle_gan changes the default
    assert (opt.lambda_A, opt.lambda_B, opt.lambda_identity, opt.pool_size) == (10.0, 10.0, 0.5, 50)


def test_help_lists_model_and_dataset_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        TrainOptions().parse(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--lambda_identity" in text and "--pool_size" in text and "--n_epochs_decay" in text


def test_model_flags_exist_only_for_their_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        InferenceOptions().parse(
            ["--dataroot", "x", "--lambda_A", "3", "--model", "test", "--checkpoints_dir", str(tmp_path)]
        )
    assert "unrecognized arguments: --lambda_A" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flag", "value", "valid"),
    [
        ("--netG", "resnet_5blocks", "resnet_9blocks"),
        ("--norm", "group", "instance"),
        ("--gan_mode", "hinge", "lsgan"),
        ("--model", "pix2pix", "cycle_gan"),
        ("--dataset_mode", "aligned", "unaligned"),
        ("--preprocess", "zoom", "resize_and_crop"),
    ],
)
def test_unknown_values_list_the_valid_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str, valid: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_train(tmp_path, flag, value)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert f"argument {flag}: invalid choice: '{value}'" in error and valid in error


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--batch_size", "0"], "must be a whole number >= 1"),
        (["--crop_size", "-5"], "must be a whole number >= 1"),
        (["--lr", "0"], "must be a finite number > 0"),
        (["--lambda_A", "inf"], "must be a finite number >= 0"),
        (["--pool_size", "-1"], "must be a whole number >= 0"),
    ],
)
def test_out_of_range_numbers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    with pytest.raises(SystemExit):
        parse_train(tmp_path, *arguments)
    assert message in capsys.readouterr().err


def test_cross_option_checks(tmp_path: Path) -> None:
    with pytest.raises(OptionError, match="--dataroot is required"):
        TrainOptions().parse(["--checkpoints_dir", str(tmp_path)])
    with pytest.raises(OptionError, match="--crop_size 200 is larger than --load_size 143"):
        parse_train(tmp_path, "--preprocess", "resize_and_crop", "--crop_size", "200")
    with pytest.raises(OptionError, match="plain folder name"):
        parse_train(tmp_path, "--name", "../elsewhere")
    with pytest.raises(OptionError, match="--gpu_ids 'zero' is not valid"):
        parse_train(tmp_path, "--gpu_ids", "zero")
    with pytest.raises(OptionError, match="at least 1"):
        parse_train(tmp_path, "--n_epochs", "0", "--n_epochs_decay", "0")


def test_options_saved_as_text_and_json(tmp_path: Path) -> None:
    options = TrainOptions()
    opt = options.parse(["--dataroot", "data", "--checkpoints_dir", str(tmp_path), "--ngf", "8", "--name", "run"])
    save_options(tmp_path / "run", "train_opt", vars(opt), options.format_options(opt))
    text = (tmp_path / "run" / "train_opt.txt").read_text()
    assert "ngf: 8  [default: 64]" in text and "lambda_A: 10.0\n" in text
    saved = json.loads((tmp_path / "run" / "train_opt.json").read_text())
    assert saved["ngf"] == 8 and saved["model"] == "cycle_gan" and saved["max_dataset_size"] is None


def test_explicit_options_are_the_typed_ones() -> None:
    assert TrainOptions._explicit_options(["--ngf", "8", "--norm=batch", "--no_flip", "-1", "--"]) == {
        "ngf",
        "norm",
        "no_flip",
    }


def test_test_options_need_a_checkpoint(tmp_path: Path) -> None:
    from util.errors import CheckpointError

    with pytest.raises(CheckpointError, match="holds no checkpoint of G_A; train first"):
        parse_test_options(["--name", "nothing", "--checkpoints_dir", str(tmp_path), "--dataroot", "x"])


def test_a_seg_run_saved_before_the_stain_model_resumes_with_its_flags_read_as_they_mean_now(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = {"model": "seg_cycle_gan", "dataroot": "data", "gt_polarity": "dark", "gt_threshold": 0.5, "lambda_hsv": 7.0}
    save_options(tmp_path / "old", "train_opt", old, "")
    (tmp_path / "old" / "latest_net_G_A.pth").write_bytes(b"")  # parsing only looks at the options
    options = TrainOptions(saved_defaults_reader("train_opt"))
    opt = options.parse(["--name", "old", "--checkpoints_dir", str(tmp_path), "--continue_train"])
    assert opt.lambda_color == 7.0 and opt.gt_threshold is None
    assert "was a darkness" in caplog.text
