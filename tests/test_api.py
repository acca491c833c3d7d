"""api.py: the commands as keyword functions, raising what they report."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest

import api
from tests.helpers import REPO_ROOT, TINY_MODEL


def test_keywords_become_the_commands_flags() -> None:
    arguments = api.command_line(
        name="x", n_epochs=3, lr=0.5, continue_train=True, verbose=False, epoch=None, dataroot=Path("d"), amp=["none"]
    )
    assert arguments == ["--name", "x", "--n_epochs", "3", "--lr", "0.5", "--continue_train", "--dataroot", "d",
                         "--amp", "none"]  # fmt: skip


def test_a_reported_error_is_raised_with_its_line(tmp_path: Path) -> None:
    with pytest.raises(api.CommandError, match=r"train\.py failed \(exit status 1\): .*does not exist"):
        api.train(dataroot=tmp_path / "missing", name="x", checkpoints_dir=tmp_path / "ck", gpu_ids="-1")
    with pytest.raises(api.CommandError, match=r"exit status 2\): a flag was refused"):
        api.train(dataroot=tmp_path, name="x", checkpoints_dir=tmp_path / "ck", n_epochs=-1)


def test_the_project_test_py_is_run_even_when_the_standard_library_test_package_is_loaded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    impostor = types.ModuleType("test")
    impostor.__file__ = "/usr/lib/python3/test/__init__.py"
    monkeypatch.setitem(sys.modules, "test", impostor)
    assert Path(api._driver("test").__file__) == REPO_ROOT / "test.py"


@pytest.mark.slow
def test_train_test_evaluate_colorize_end_to_end(small_root: Path, tmp_path: Path) -> None:
    """The notebook's path through the API, on real crops: each step returns where its outputs are."""
    checkpoints, results = tmp_path / "ck", tmp_path / "results"
    tiny = dict(zip(TINY_MODEL[::2], TINY_MODEL[1::2], strict=True))
    flags = {key.removeprefix("--"): value for key, value in tiny.items()}
    experiment = api.train(
        dataroot=small_root, name="api", checkpoints_dir=checkpoints, crop_size=32, n_epochs=1, n_epochs_decay=1,
        save_epoch_freq=1, **flags,
    )  # fmt: skip
    assert experiment == checkpoints / "api" and (experiment / "2_net_G_A.pth").is_file()
    folder = api.test(name="api", checkpoints_dir=checkpoints, results_dir=results, epoch="all", gpu_ids="-1")
    assert folder == results / "api" and (folder / "test_2" / "index.html").is_file()
    evaluation = api.evaluate(results_dir=folder, dataroot=small_root)
    assert evaluation.report.is_file() and evaluation.test_epoch in {"1", "2"}
    assert evaluation.row("baseline: Beer-Lambert")["split"] == "test"
    with pytest.raises(KeyError, match="baseline: Beer-Lambert"):
        evaluation.row("7")
    output = api.colorize(
        name="api", checkpoints_dir=checkpoints, epoch=evaluation.test_epoch, input=small_root / "testA",
        output=tmp_path / "colorized", gpu_ids="-1",
    )  # fmt: skip
    assert sorted(path.name for path in output.glob("*.png")) == sorted(
        path.name for path in (small_root / "testA").glob("*.png")
    )


def test_false_turns_off_a_flag_with_a_no_form_and_lists_repeat_a_flag_given_once_per_value() -> None:
    from evaluation.Stain_Evaluation import build_parser as evaluation_parser
    from options.train_options import TrainOptions

    parser = TrainOptions().build_parser(["--dataroot", "d"])
    assert api.command_line(parser, tensorboard=False, continue_train=False) == ["--no-tensorboard"]
    arguments = api.command_line(evaluation_parser(), compare=["a", "b"], guard_f1_margin=0.1)
    assert arguments == ["--compare", "a", "--compare", "b", "--guard_f1_margin", "0.1"]
    assert evaluation_parser().parse_args(arguments).compare == [Path("a"), Path("b")]


def test_evaluate_reads_the_default_results_folder_when_none_is_given(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from evaluation import Stain_Evaluation

    def fake_main(argv: list[str]) -> int:
        assert argv == []
        (tmp_path / "evaluation").mkdir()
        (tmp_path / "evaluation" / "selection.json").write_text('{"chosen": "4", "test_epoch": "4"}')
        (tmp_path / "evaluation" / "scores.json").write_text('[{"label": "4", "split": "test", "nucleus_f1": 0.5}]')
        return 0

    monkeypatch.setattr(Stain_Evaluation, "DEFAULT_RESULTS", tmp_path)
    monkeypatch.setattr(Stain_Evaluation, "main", fake_main)
    evaluation = api.evaluate()
    assert evaluation.folder == tmp_path / "evaluation" and evaluation.row("4")["nucleus_f1"] == 0.5


def test_a_command_run_through_the_api_logs_as_on_the_command_line(tmp_path: Path) -> None:
    """A fresh interpreter, as in a notebook: the command's INFO and ERROR lines reach stderr."""
    script = (
        "import api\n"
        "try:\n"
        f"    api.train(dataroot={str(tmp_path / 'missing')!r}, name='x', checkpoints_dir={str(tmp_path)!r})\n"
        "except api.CommandError as error:\n"
        "    print('raised:', error)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert "raised: train.py failed (exit status 1)" in result.stdout
    assert "ERROR " in result.stderr and "INFO " in result.stderr and "does not exist" in result.stderr
