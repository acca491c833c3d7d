"""train.py end to end: outputs, exact resume, and every bad input answered in one clear line."""

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import train
from models import checkpoint
from models.cycle_gan_model import CycleGANModel
from tests.helpers import REPO_ROOT, train_arguments
from util.distributed import DistributedContext
from util.runtime import Runtime


def test_training_writes_checkpoints_logs_page_and_plot(trained_experiment: tuple[Path, str]) -> None:
    checkpoints, name = trained_experiment
    experiment = checkpoints / name
    for label in ("1", "2", "latest"):
        for network in ("G_A", "G_B", "D_A", "D_B"):
            assert (experiment / f"{label}_net_{network}.pth").is_file()
        assert (experiment / f"{label}_training_state.pth").is_file()
    assert json.loads((experiment / "train_opt.json").read_text())["ngf"] == 4
    assert "ngf: 4  [default: 64]" in (experiment / "train_opt.txt").read_text()
    rows = (experiment / "loss_log.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,iteration,progress,lr,seconds_per_iteration,D_A,G_A,cycle_A,idt_A")
    assert [row.split(",")[0] for row in rows[1:]] == ["1", "2"]  # one report at the end of each epoch
    assert "(epoch: 2, iters: 3," in (experiment / "loss_log.txt").read_text()
    with Image.open(experiment / "loss_curves.png") as plot:
        assert plot.format == "PNG"
    page = (experiment / "web" / "index.html").read_text()
    assert page.index("Epoch 2") < page.index("Epoch 1")  # newest first
    for image in ("epoch0001_real_A.png", "epoch0002_fake_B.png", "epoch0002_rec_A.png"):
        assert f"images/{image}" in page and (experiment / "web" / "images" / image).is_file()
    with Image.open(experiment / "web" / "images" / "epoch0002_fake_B.png") as fake:
        assert fake.mode == "RGB" and fake.size == (32, 32)  # a training-size crop


def _state(experiment: Path, label: str) -> dict[str, torch.Tensor]:
    tensors = {}
    for network in ("G_A", "G_B", "D_A", "D_B"):
        payload = torch.load(experiment / f"{label}_net_{network}.pth", weights_only=True)
        tensors.update({f"{network}.{key}": value for key, value in payload["state_dict"].items()})
    state = torch.load(experiment / f"{label}_training_state.pth", weights_only=True)
    for name, optimizer in state["optimizers"].items():
        for index, slots in optimizer["state"].items():
            tensors.update({f"{name}.{index}.{slot}": value for slot, value in slots.items()})
    return tensors


@pytest.mark.slow
@pytest.mark.parametrize("interrupted_epoch", [2, 3])
def test_interrupted_run_resumes_bit_for_bit(
    small_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, interrupted_epoch: int
) -> None:
    """3 epochs straight equal (interrupted_epoch - 1) epochs, a resume, and the rest, bit for bit."""
    schedule = ["--n_epochs", "1", "--n_epochs_decay", "2", "--deterministic", "--save_epoch_freq", "10"]
    assert train.main(train_arguments(small_root, tmp_path, "straight", *schedule)) == 0

    original_epoch = train.train_one_epoch

    def interrupt(*args: object, **kwargs: object) -> float:
        if args[3] == interrupted_epoch:
            raise KeyboardInterrupt
        return original_epoch(*args, **kwargs)

    monkeypatch.setattr(train, "train_one_epoch", interrupt)
    assert train.main(train_arguments(small_root, tmp_path, "interrupted", *schedule)) == 130
    monkeypatch.setattr(train, "train_one_epoch", original_epoch)
    # Resume with no flags but the experiment: options, architecture and schedule come from the checkpoint.
    resume = ["--name", "interrupted", "--checkpoints_dir", str(tmp_path), "--continue_train", "--num_threads", "1"]
    assert train.main(resume) == 0

    straight, resumed = _state(tmp_path / "straight", "latest"), _state(tmp_path / "interrupted", "latest")
    assert straight.keys() == resumed.keys() and len(straight) > 50
    different = [key for key in straight if not torch.equal(straight[key], resumed[key])]
    assert not different, f"resume changed {len(different)} tensors, e.g. {different[:3]}"
    straight_log = (tmp_path / "straight" / "loss_log.csv").read_text().splitlines()
    resumed_log = (tmp_path / "interrupted" / "loss_log.csv").read_text().splitlines()
    strip_time = [[row.split(",")[:4] + row.split(",")[5:] for row in log] for log in (straight_log, resumed_log)]
    assert strip_time[0] == strip_time[1]


class StepLossModel:
    """A stand-in model whose step ``n`` has losses G_A = n and D_A = 1 and objective 2n, on the CPU."""

    def __init__(self) -> None:
        self.loss_names = ["G_A", "D_A"]
        self.step = 0
        self.losses: dict[str, torch.Tensor] = {}
        self.generator_objective = torch.zeros(())
        self.runtime = Runtime(torch.device("cpu"), DistributedContext())
        self.device = self.runtime.device

    def train_mode(self) -> None:
        pass

    def set_input(self, batch: int) -> None:
        self.step = batch

    def optimize_parameters(self) -> None:
        self.losses = {"G_A": torch.tensor(float(self.step)), "D_A": torch.tensor(1.0)}
        self.generator_objective = torch.tensor(2.0 * self.step)

    def learning_rate(self) -> float:
        return 1e-3


class QuietSampler:
    def set_epoch(self, epoch: int) -> None:
        pass


class ReportList:
    def __init__(self) -> None:
        self.reports: list = []

    def log_losses(self, report: object) -> None:
        self.reports.append(report)


def test_loss_reports_are_means_since_the_previous_report() -> None:
    report = ReportList()
    mean_objective = train.train_one_epoch(StepLossModel(), [1, 2, 3, 4, 5], QuietSampler(), 2, 4, report, print_freq=2)
    assert mean_objective == pytest.approx(6.0)
    assert [r.losses["G_A"] for r in report.reports] == [1.5, 3.5, 5.0]  # means of 1,2 / 3,4 / 5
    assert [r.losses["D_A"] for r in report.reports] == [1.0, 1.0, 1.0]
    assert [r.iteration for r in report.reports] == [2, 4, 5]
    assert [r.progress for r in report.reports] == pytest.approx([1.4, 1.8, 2.0])


def test_finished_run_continues_only_when_extended(
    trained_experiment: tuple[Path, str], caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    checkpoints, name = trained_experiment
    shutil.copytree(checkpoints / name, tmp_path / name)
    assert train.main(["--name", name, "--checkpoints_dir", str(tmp_path), "--continue_train"]) == 0
    assert "epoch 2 of 2 is already done" in caplog.text
    assert train.main(["--name", name, "--checkpoints_dir", str(tmp_path), "--continue_train", "--n_epochs", "2"]) == 0
    assert (tmp_path / name / "3_net_G_A.pth").is_file()


def test_resume_with_a_contradicting_architecture_is_refused(
    trained_experiment: tuple[Path, str], caplog: pytest.LogCaptureFixture
) -> None:
    checkpoints, name = trained_experiment
    assert train.main(["--name", name, "--checkpoints_dir", str(checkpoints), "--continue_train", "--ngf", "8"]) == 1
    assert "--ngf 8 (the checkpoint has 4)" in caplog.text


def test_continue_without_checkpoint_and_restart_over_checkpoint_are_refused(
    trained_experiment: tuple[Path, str], small_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert train.main(train_arguments(small_root, tmp_path, "new", "--continue_train", "--epoch", "7")) == 1
    assert "no checkpoint" in caplog.text and "7_net_G_A.pth" in caplog.text
    checkpoints, name = trained_experiment
    assert train.main(train_arguments(small_root, checkpoints, name)) == 1
    assert "already has checkpoints" in caplog.text and "--continue_train" in caplog.text


def test_continue_from_a_numbered_epoch(
    trained_experiment: tuple[Path, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    checkpoints, name = trained_experiment
    shutil.copytree(checkpoints / name, tmp_path / name)
    assert train.main(["--name", name, "--checkpoints_dir", str(tmp_path), "--continue_train", "--epoch", "1"]) == 0
    assert "resumed from the end of epoch 1" in caplog.text
    assert torch.load(tmp_path / name / "latest_training_state.pth", weights_only=True)["epoch"] == 2


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ("missing_root", "does not exist. Expected layout"),
        ("missing_B", "trainB does not exist. Expected layout"),
        ("empty_B", "trainB contains no images"),
        ("corrupt_A", "cannot read image"),
    ],
)
def test_bad_data_gives_one_clear_line(
    small_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, layout: str, message: str
) -> None:
    root = tmp_path / "data"
    if layout != "missing_root":
        shutil.copytree(small_root / "trainA", root / "trainA")
    if layout in ("empty_B", "corrupt_A"):
        (root / "trainB").mkdir()
    if layout == "corrupt_A":
        shutil.copytree(small_root / "trainB", root / "trainB", dirs_exist_ok=True)
        (root / "trainA" / "fluo_r000_c000.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a PNG")
    arguments = train_arguments(root, tmp_path / "checkpoints", "bad", "--serial_batches", "--num_threads", "1")
    assert train.main(arguments) == 1
    errors = [record for record in caplog.records if record.levelname == "ERROR"]
    assert len(errors) == 1 and message in errors[0].getMessage() and "Traceback" not in errors[0].getMessage()
    if layout == "corrupt_A":
        assert "fluo_r000_c000.png" in errors[0].getMessage()


@pytest.mark.slow
def test_command_line_error_is_one_line_without_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "train.py", "--dataroot", str(tmp_path / "absent"), "--checkpoints_dir", str(tmp_path), "--gpu_ids", "-1"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    assert len(error_lines) == 1 and "absent does not exist" in error_lines[0]
    assert "Traceback" not in result.stderr


def poison_generator_losses(monkeypatch: pytest.MonkeyPatch, at_call: int) -> None:
    """Make cycle_A NaN in the ``at_call``-th training step (counted from 1)."""
    real_losses, calls = CycleGANModel.generator_losses, []

    def losses(self: CycleGANModel) -> dict[str, torch.Tensor]:
        terms = real_losses(self)
        calls.append(1)
        if len(calls) == at_call:
            terms["cycle_A"] = terms["cycle_A"] * float("nan")
        return terms

    monkeypatch.setattr(CycleGANModel, "generator_losses", losses)


def test_a_nan_loss_stops_training_naming_it_and_keeps_the_last_good_checkpoint(
    small_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    poison_generator_losses(monkeypatch, at_call=5)  # epoch 2 (3 steps per epoch), its 2nd step
    assert train.main(train_arguments(small_root, tmp_path, "nan", "--print_freq", "100")) == 1
    assert "loss cycle_A became NaN or infinite at iteration 2 of epoch 2" in caplog.text
    assert "--nan_policy skip" in caplog.text
    state = checkpoint.load_file(checkpoint.training_state_path(tmp_path / "nan", "latest"))
    assert state["epoch"] == 1  # epoch 2 was never saved
    weights = checkpoint.load_file(checkpoint.network_path(tmp_path / "nan", "latest", "G_A"))["state_dict"]
    assert all(torch.isfinite(tensor).all() for tensor in weights.values())


def test_nan_policy_skip_drops_the_step_and_trains_on(
    small_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    poison_generator_losses(monkeypatch, at_call=5)
    arguments = train_arguments(small_root, tmp_path, "skip", "--nan_policy", "skip")
    assert train.main(arguments) == 0
    assert "epoch 2, iterations 1-3: 1 step(s) skipped because cycle_A was NaN or infinite" in caplog.text
    weights = checkpoint.load_file(checkpoint.network_path(tmp_path / "skip", "2", "G_A"))["state_dict"]
    assert all(torch.isfinite(tensor).all() for tensor in weights.values())
    log = (tmp_path / "skip" / "loss_log.csv").read_text(encoding="utf-8")
    assert "nan" not in log.lower()  # reported means are over the finite steps


# -- the progress bar and TensorBoard ---------------------------------------------------------------
@pytest.mark.parametrize("postfix_interval", [0.0, 1.0])
def test_the_bar_shows_running_losses_on_an_epoch_shorter_than_print_freq(
    monkeypatch: pytest.MonkeyPatch, postfix_interval: float
) -> None:
    """5 iterations, --print_freq 100 (the demo has 48): the bar carries the losses anyway, summed by group."""
    from util import progress

    output, bars = io.StringIO(), []

    def bar_into_a_buffer(iterable: object, **options: object) -> object:
        options.update(file=output, mininterval=0)  # drawn at every step, into the buffer
        bars.append(progress.progress_bar(iterable, **options))
        return bars[-1]

    monkeypatch.setattr(train, "progress_bar", bar_into_a_buffer)
    monkeypatch.setattr(progress, "POSTFIX_INTERVAL", postfix_interval)
    report = ReportList()
    train.train_one_epoch(StepLossModel(), [1, 2, 3, 4, 5], QuietSampler(), 1, 1, report, print_freq=100)
    assert bars[0].postfix == "G=3, D=1"  # the epoch's report: means of 1..5 and of 1
    if postfix_interval == 0:  # between reports, drawn on the bar: the running means of the open window
        assert "G=1.5, D=1" in output.getvalue() and "G=2.5, D=1" in output.getvalue()
    assert [r.iteration for r in report.reports] == [5]  # the loss log keeps its --print_freq


@pytest.mark.slow
def test_tensorboard_gets_losses_rates_and_samples_and_a_resume_continues_the_curves(
    small_root: Path, tmp_path: Path
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert train.main(train_arguments(small_root, tmp_path, "board", "--tensorboard")) == 0  # 2 epochs of 3 steps
    assert not list(tmp_path.glob("board/tensorboard/evaluation"))
    # Resumed without the flag: it is kept from the saved options; a third epoch follows the first two.
    resume = ["--name", "board", "--checkpoints_dir", str(tmp_path), "--continue_train", "--n_epochs", "2"]
    assert train.main([*resume, "--num_threads", "0"]) == 0
    events = EventAccumulator(str(tmp_path / "board" / "tensorboard" / "train"), size_guidance={"images": 0})
    events.Reload()
    tags = events.Tags()
    expected = {"loss/G_A", "loss/cycle_A", "epoch/G_A", "epoch/generator_objective", "learning_rate/G"}
    assert expected | {"learning_rate/D", "epoch/epoch"} <= set(tags["scalars"])
    assert {"samples/real_A", "samples/fake_B", "samples/rec_A", "samples/real_B"} <= set(tags["images"])
    for tag in ("loss/G_A", "epoch/G_A", "epoch/epoch", "learning_rate/G"):
        assert [point.step for point in events.Scalars(tag)] == [3, 6, 9], tag  # one point per epoch end, once
    assert [point.step for point in events.Images("samples/fake_B")] == [3, 6, 9]
    rows = list(csv.DictReader((tmp_path / "board" / "loss_log.csv").open(encoding="utf-8")))
    logged = [float(row["cycle_A"]) for row in rows]
    assert [point.value for point in events.Scalars("epoch/cycle_A")] == pytest.approx(logged, rel=1e-4)
    rates = [float(row["lr"]) for row in rows]  # the rate each epoch trained with
    assert [point.value for point in events.Scalars("learning_rate/G")] == pytest.approx(rates, rel=1e-3)
    assert rates[0] == pytest.approx(2e-4) and rates[1] < rates[0]

    # Stain_Evaluation on this experiment adds its per-epoch scores beside the training curves.
    import test as test_driver
    from evaluation import Stain_Evaluation

    results = tmp_path / "results"
    tested = ["--name", "board", "--checkpoints_dir", str(tmp_path), "--results_dir", str(results)]
    assert test_driver.main([*tested, "--epoch", "all", "--gpu_ids", "-1"]) == 0
    assert Stain_Evaluation.main(["--results_dir", str(results / "board"), "--dataroot", str(small_root)]) == 0
    scores = EventAccumulator(str(tmp_path / "board" / "tensorboard" / "evaluation"))
    scores.Reload()
    assert [point.step for point in scores.Scalars("evaluation/val/nucleus_f1")] == [1, 2, 3]
