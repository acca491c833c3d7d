"""What a training run shows: grouped and labelled loss plots, the captioned page, the progress bar's
running losses, and the TensorBoard events (training and evaluation)."""

from __future__ import annotations

import io
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import default_collate

from data import create_dataset
from models import create_model
from options.train_options import TrainOptions
from tests.helpers import train_arguments
from util import progress
from util.distributed import DistributedContext
from util.html import ColourBar, HTMLPage, PageImage
from util.loss_log import LossWeight, group_losses, loss_weights
from util.loss_window import LossWindow
from util.plots import loss_figure, running_mean
from util.tensorboard import TrainingBoard, experiment_of_results, write_evaluation_scores

SEG_LOSSES = [
    "D_A", "G_A", "cycle_A", "idt_A", "D_B", "G_B", "cycle_B", "idt_B",
    "GT_fake", "GT_rec", "structure_fake", "structure_rec", "color_fake",
]  # fmt: skip


def read_events(folder: Path) -> EventAccumulator:
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    return events


def scalars(events: EventAccumulator, tag: str) -> tuple[list[int], list[float]]:
    """(steps, values) of a scalar tag, as read back."""
    points = events.Scalars(tag)
    return [point.step for point in points], [point.value for point in points]


# -- loss weights and groups ------------------------------------------------------------------------
def first_step_losses(dataroot: Path, checkpoints: Path, *extra: str) -> dict[str, float]:
    """The generator terms of one forward pass from a fixed seed (the same weights and batch every call)."""
    opt = TrainOptions().parse(train_arguments(dataroot, checkpoints, "weights", *extra))
    torch.manual_seed(0)
    model = create_model(opt)
    dataset = create_dataset(opt)
    model.calibrate(dataset)
    model.setup()
    model.set_input(default_collate([dataset[(0, 0)]]))
    with torch.no_grad():
        model.forward()
        return {name: float(value) for name, value in model.generator_losses().items()}


@pytest.mark.slow
def test_the_weights_on_the_plots_are_the_ones_the_models_apply(small_root: Path, tmp_path: Path) -> None:
    """Doubling a flag doubles exactly the terms :func:`loss_weights` says it weighs, so the labels are true."""
    base_flags = ["--model", "seg_cycle_gan", "--lambda_A", "2", "--lambda_B", "3", "--lambda_identity", "0.5"]
    base = first_step_losses(small_root, tmp_path, *base_flags)
    opt = TrainOptions().parse(train_arguments(small_root, tmp_path, "weights", *base_flags))
    weights = loss_weights(vars(opt))
    assert weights["idt_A"] == LossWeight(1.5, "--lambda_identity × --lambda_B")
    assert set(weights) == set(base) - {"G_A", "G_B"}
    for flag in ("lambda_A", "lambda_B", "lambda_identity", "lambda_gt", "lambda_cv", "lambda_color"):
        doubled = [*base_flags, f"--{flag}", str(2 * getattr(opt, flag))]
        losses = first_step_losses(small_root, tmp_path, *doubled)
        for name, value in losses.items():
            expected = 2 * base[name] if name in weights and f"--{flag}" in weights[name].flags else base[name]
            assert value == pytest.approx(expected, rel=1e-5), f"--{flag} and {name}"


def test_groups_keep_related_losses_together_and_unknown_ones_apart() -> None:
    groups = group_losses(["D_A", "G_A", "cycle_A", "D_B", "G_B", "cycle_B", "GT_fake", "extra"])
    assert [(group.key, group.names) for group in groups] == [
        ("G", ("G_A", "G_B")), ("D", ("D_A", "D_B")), ("cycle", ("cycle_A", "cycle_B")), ("GT", ("GT_fake",)),
        ("extra", ("extra",)),
    ]  # fmt: skip


def test_loss_weights_follow_the_options_and_skip_absent_flags() -> None:
    weights = loss_weights({"lambda_A": 10.0, "lambda_B": 10.0, "lambda_identity": 0.5})
    assert weights["cycle_A"].label() == "×10 (--lambda_A)"
    assert weights["idt_B"].factor == 5.0
    assert "GT_fake" not in weights and "G_A" not in weights  # a cycle_gan run has no --lambda_gt


# -- the loss plot ----------------------------------------------------------------------------------
def loss_rows(count: int) -> list[dict[str, str]]:
    rows = []
    for step in range(count):
        row = {"progress": str((step + 1) / 4), "lr": "0.0002"}
        row.update({name: str(1.0 + index / 10 + 1 / (step + 1)) for index, name in enumerate(SEG_LOSSES)})
        rows.append(row)
    return rows


def test_loss_figure_has_few_labelled_panels_that_say_which_losses_are_weighted() -> None:
    weights = loss_weights({"lambda_A": 10, "lambda_B": 10, "lambda_identity": 0.5, "lambda_gt": 10})
    figure = loss_figure(loss_rows(60), SEG_LOSSES, "run: training losses", weights)
    panels = [axis for axis in figure.axes if axis.get_visible()]
    titles = [axis.get_title() for axis in panels]
    assert len(panels) == 8 and titles[-1] == "learning rate"  # 7 groups of 13 losses, and the learning rate
    assert all(axis.get_xlabel() == "epoch" and axis.get_ylabel() for axis in panels)
    by_title = dict(zip(titles, panels, strict=True))
    assert by_title["generators: adversarial"].get_ylabel() == "loss"  # G_A, G_B carry no weight
    cycle = by_title["cycle consistency (L1)"]
    assert cycle.get_ylabel() == "weighted loss"
    assert [text.get_text() for text in cycle.get_legend().get_texts()] == [
        "cycle_A ×10 (--lambda_A)", "cycle_B ×10 (--lambda_B)",
    ]  # fmt: skip
    assert all(tick.get_fontsize() >= 9 for tick in cycle.get_xticklabels())
    assert loss_figure([], SEG_LOSSES, "empty") is None


def test_running_mean_ignores_missing_values() -> None:
    values = np.array([1.0, np.nan, 3.0, 5.0])
    np.testing.assert_allclose(running_mean(values, 2), [1.0, 1.0, 3.0, 4.0])
    assert math.isnan(running_mean(np.array([np.nan, np.nan]), 2)[1])


# -- the page ---------------------------------------------------------------------------------------
def test_page_images_carry_a_title_a_caption_and_the_nucleus_map_a_colour_bar(tmp_path: Path) -> None:
    page = HTMLPage("Training")
    key = ColourBar(low="0: background", high="1: nucleus", middle="0.5", title="nucleus membership")
    page.add_images(
        [PageImage("images/n.png", "what the GT loss reads", "nuclei_fake_B", key), ("images/a.png", "real_A")], 128
    )
    html = page.save(tmp_path / "index.html").read_text()
    assert "<b>nuclei_fake_B</b>" in html and "what the GT loss reads" in html
    assert html.count('class="colourbar"') == 1 and "linear-gradient(to right, #000, #fff)" in html
    assert "0: background" in html and "1: nucleus" in html and "nucleus membership" in html
    assert '<img alt="real_A" src="images/a.png" style="width:128px">' in html  # plain pairs as before


# -- the progress bar -------------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_postfix_shows_group_sums_of_the_running_losses_at_most_once_per_interval() -> None:
    output = io.StringIO()
    clock = Clock()
    with progress.progress_bar(range(10), file=output, mininterval=0) as bar:
        postfix = progress.LossPostfix(bar, ["G_A", "G_B", "D_A"], interval=1.0, clock=clock)
        window = LossWindow(["G_A", "G_B", "D_A"], torch.device("cpu"))
        for step in (1, 2):
            window.add({"G_A": torch.tensor(float(step)), "G_B": torch.tensor(1.0), "D_A": torch.tensor(0.25)}, step)
            clock.now += 0.4
            postfix.maybe_show(window)
        assert bar.postfix is None  # 0.8 s: not yet
        clock.now += 0.4
        postfix.maybe_show(window)
        assert bar.postfix == "G=2.5, D=0.25"  # means so far: G_A 1.5 + G_B 1
        assert window.steps == 2  # peeking keeps the window for the loss report
        postfix.show({"G_A": 3.0, "G_B": 0.5, "D_A": 0.125}, refresh=True)
        assert bar.postfix == "G=3.5, D=0.125"
    assert "G=3.5, D=0.125" in output.getvalue()


def test_peek_gives_this_window_means_without_reading_it() -> None:
    window = LossWindow(["G_A", "D_A"], torch.device("cpu"))
    assert window.peek() == {}
    window.add({"G_A": torch.tensor(2.0)}, 1)
    window.add({"G_A": torch.tensor(float("nan"))}, 2)  # not finite: left out, as in the reports
    window.add({"G_A": torch.tensor(4.0)}, 3)
    assert window.peek() == {"G_A": 3.0}
    assert window.read(DistributedContext()).means == {"G_A": 3.0}


def test_bars_redraw_often_in_a_terminal_and_a_notebook_and_rarely_in_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal
    monkeypatch.delitem(sys.modules, "ipykernel.zmqshell", raising=False)
    assert progress.redraw_interval() == progress.FILE_INTERVAL == 30.0
    monkeypatch.setitem(sys.modules, "ipykernel.zmqshell", SimpleNamespace())
    assert progress.redraw_interval() == progress.NOTEBOOK_INTERVAL
    monkeypatch.setattr(sys, "stderr", SimpleNamespace(isatty=lambda: True))
    assert progress.redraw_interval() == progress.TERMINAL_INTERVAL


@pytest.mark.slow
def test_a_jupyter_kernel_gets_a_widget_bar_redrawn_often(tmp_path: Path) -> None:
    import nbformat
    from nbclient import NotebookClient

    from tests.helpers import REPO_ROOT

    code = (
        "import sys; sys.path.insert(0, '.')\n"
        "from util.progress import LossPostfix, progress_bar\n"
        "with progress_bar(range(3), leave=False) as bar:\n"
        "    postfix = LossPostfix(bar, ['G_A'])\n"
        "    for step in bar:\n"
        "        postfix.show({'G_A': step / 2}, refresh=True)\n"
        "print(bar.postfix, [c.__module__ for c in type(bar).__mro__], bar.mininterval)"
    )
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(REPO_ROOT)}}
    ).execute()
    printed = "".join(output.get("text", "") for output in notebook.cells[0].outputs)
    assert printed.startswith("G=1 ") and "tqdm.notebook" in printed  # the ipywidgets bar, not text every 30 s
    assert printed.strip().endswith(str(progress.NOTEBOOK_INTERVAL))


# -- TensorBoard ------------------------------------------------------------------------------------
def log_epochs(board: TrainingBoard, epochs: range, iterations: int, offset: float = 0.0) -> None:
    for epoch in epochs:
        for iteration in range(2, iterations + 1, 2):
            board.log_losses(epoch, iteration, {"G_A": epoch + iteration / 10 + offset}, 0.01)
        image = np.full((4, 4, 3), epoch, np.uint8)
        board.log_epoch(epoch, {"G_A": float(epoch) + offset}, {"G": 1e-3 / epoch}, {"fake_B": image})


def test_training_board_writes_losses_rates_and_images_at_iteration_steps(tmp_path: Path) -> None:
    board = TrainingBoard(tmp_path, first_epoch=1, iterations_per_epoch=4)
    board.describe_losses({"cycle_A": LossWeight(10.0, "--lambda_A")})
    log_epochs(board, range(1, 3), 4)
    board.close()
    events = read_events(tmp_path / "tensorboard" / "train")
    steps, values = scalars(events, "loss/G_A")
    assert steps == [2, 4, 6, 8] and values == pytest.approx([1.2, 1.4, 2.2, 2.4])
    assert scalars(events, "epoch/G_A") == ([4, 8], [1.0, 2.0])
    assert [e.value for e in events.Scalars("epoch/epoch")] == [1.0, 2.0]
    assert [e.value for e in events.Scalars("learning_rate/G")] == pytest.approx([1e-3, 5e-4])
    assert [(e.step, e.width, e.height) for e in events.Images("samples/fake_B")] == [(4, 4, 4), (8, 4, 4)]
    assert "losses/text_summary" in events.Tags()["tensors"]


def test_a_resumed_board_replaces_what_the_interrupted_epoch_wrote(tmp_path: Path) -> None:
    first = TrainingBoard(tmp_path, first_epoch=1, iterations_per_epoch=4)
    log_epochs(first, range(1, 3), 4)
    first.log_losses(3, 2, {"G_A": 99.0}, 0.01)  # epoch 3 interrupted after one report
    first.close()
    resumed = TrainingBoard(tmp_path, first_epoch=3, iterations_per_epoch=4)
    log_epochs(resumed, range(3, 4), 4, offset=0.5)
    resumed.close()
    events = read_events(tmp_path / "tensorboard" / "train")
    steps, values = scalars(events, "loss/G_A")
    assert steps == [2, 4, 6, 8, 10, 12]  # each step once: the stale 99 is purged
    assert values[-2:] == pytest.approx([3.7, 3.9])
    assert [e.step for e in events.Images("samples/fake_B")] == [4, 8, 12]


def evaluation_rows() -> list[dict[str, object]]:
    return [
        {"split": "val", "label": "5", "kind": "epoch", "chosen": False, "passes_guards": True, "nucleus_f1": 0.5,
         "nucleus_f1_ci_low": 0.4, "nucleus_f1_ci_high": 0.6, "fid": math.nan},
        {"split": "val", "label": "10", "kind": "epoch", "chosen": True, "passes_guards": True, "nucleus_f1": 0.7},
        {"split": "val", "label": "giacomelli", "kind": "baseline", "nucleus_f1": 0.9},
        {"split": "test", "label": "10", "kind": "epoch", "nucleus_f1": 0.65},
    ]  # fmt: skip


def test_evaluation_scores_go_to_their_own_run_at_epoch_steps_and_replace_the_last(tmp_path: Path) -> None:
    (tmp_path / "tensorboard").mkdir()
    folder = write_evaluation_scores(evaluation_rows(), tmp_path)
    assert folder == tmp_path / "tensorboard" / "evaluation"
    row = SimpleNamespace(label="15", split="val", kind="epoch", scores={"nucleus_f1": 0.8})  # a scoring.Row
    write_evaluation_scores([*evaluation_rows(), row], tmp_path)  # a second evaluation replaces the first
    events = read_events(folder)
    assert sorted(events.Tags()["scalars"]) == ["evaluation/test/nucleus_f1", "evaluation/val/nucleus_f1"]
    steps, values = scalars(events, "evaluation/val/nucleus_f1")
    assert steps == [5, 10, 15] and values == pytest.approx([0.5, 0.7, 0.8])
    steps, values = scalars(events, "evaluation/test/nucleus_f1")
    assert steps == [10] and values == pytest.approx([0.65])


def test_evaluation_scores_are_written_only_for_experiments_trained_with_tensorboard(tmp_path: Path) -> None:
    assert write_evaluation_scores(evaluation_rows(), tmp_path) is None
    assert write_evaluation_scores(evaluation_rows(), None) is None
    assert not (tmp_path / "tensorboard").exists()


def test_the_experiment_of_a_results_folder_comes_from_test_options(tmp_path: Path) -> None:
    results, experiment = tmp_path / "results" / "run", tmp_path / "checkpoints" / "run"
    results.mkdir(parents=True)
    assert experiment_of_results(results) is None
    experiment.mkdir(parents=True)
    (results / "test_opt.json").write_text(f'{{"checkpoints_dir": "{tmp_path / "checkpoints"}", "name": "run"}}')
    assert experiment_of_results(results) == experiment
