"""The four commands as Python functions, for notebooks and your own scripts.

    import api

    experiment = api.train(dataroot="datasets/demo", name="demo", model="seg_cycle_gan", n_epochs=10)
    results = api.test(name="demo", epoch="all")
    evaluation = api.evaluate(results_dir=results, dataroot="datasets/demo")
    api.colorize(name="demo", epoch="best", input="frame.tif", output="colorized")

Keyword arguments are the command-line flags without their dashes (``n_epochs=10`` is
``--n_epochs 10``; ``continue_train=True`` is the switch; ``None`` leaves a flag out, and so does
``False``, except for a flag with a ``--no-`` form, which it turns off: ``tensorboard=False`` is
``--no-tensorboard``; a list gives a flag several values, or repeats a flag given once per value,
such as ``compare=[...]``), so the flags, their defaults and their checks are exactly those of
``python train.py --help`` and the other commands: each function runs its command's ``main``, which
logs as on the command line. A problem the command reports in one line (a missing folder, a bad
option) is raised here as :class:`CommandError` with that line, instead of an exit status.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from util.errors import CellCycleGANError
from util.log import setup_logging

ROOT = Path(__file__).resolve().parent

#: A keyword argument's value: a flag's value, a switch (bool), a flag left out (None), or several values.
FlagValue = str | int | float | bool | Path | Sequence[str | int | float | Path] | None


class CommandError(CellCycleGANError):
    """A command ended with a non-zero exit status; the message is what it reported."""


@dataclass(frozen=True)
class Evaluation:
    """What ``Stain_Evaluation.py`` wrote: its folder, the choice (``selection.json``) and every row of
    ``scores.json`` (baselines and epochs, validation and test)."""

    folder: Path
    selection: dict[str, Any]
    rows: list[dict[str, Any]] = field(repr=False)

    @property
    def report(self) -> Path:
        return self.folder / "report.html"

    @property
    def chosen_epoch(self) -> str | None:
        """The epoch that passed the faithfulness guards and is most realistic (None if none passed)."""
        return self.selection["chosen"]

    @property
    def test_epoch(self) -> str | None:
        """The epoch whose test scores are reported: the chosen one, else the closest to the guards."""
        return self.selection["test_epoch"]

    def row(self, label: str, split: str = "test") -> dict[str, Any]:
        """The scores of one row on ``split``: an epoch number, or a baseline's label as the report shows it
        (``baseline: Beer-Lambert``)."""
        for row in self.rows:
            if row["label"] == label and row["split"] == split:
                return row
        known = sorted({row["label"] for row in self.rows if row["split"] == split})
        raise KeyError(f"no row {label!r} on the {split} split; rows: {', '.join(known)}")


def command_line(parser: argparse.ArgumentParser | None = None, **flags: FlagValue) -> list[str]:
    """Keyword arguments as command-line arguments (see the module docstring). ``parser`` (the
    command's) tells which flags have a ``--no-`` form and which are repeated once per value."""
    actions = {option: action for action in parser._actions for option in action.option_strings} if parser else {}
    arguments: list[str] = []
    for name, value in flags.items():
        flag = f"--{name}"
        action = actions.get(flag)
        if value is None:
            continue
        if value is False:
            if isinstance(action, argparse.BooleanOptionalAction):
                arguments.append(f"--no-{name}")
        elif value is True:
            arguments.append(flag)
        elif isinstance(value, str | Path | int | float):
            arguments += [flag, str(value)]
        elif isinstance(action, argparse._AppendAction):
            for item in value:
                arguments += [flag, str(item)]
        else:
            arguments += [flag, *(str(item) for item in value)]
    return arguments


def train(**flags: FlagValue) -> Path:
    """``train.py`` with these flags; the experiment folder (``<checkpoints_dir>/<name>``)."""
    from options.train_options import TrainOptions

    _run(_driver("train").main, "train.py", flags, lambda argv: TrainOptions().build_parser(argv))
    return Path(flags.get("checkpoints_dir") or "checkpoints") / str(flags.get("name") or "experiment")


def test(**flags: FlagValue) -> Path:
    """``test.py`` with these flags; the results folder (``<results_dir>/<name>``)."""
    from options.test_options import TestOptions

    _run(_driver("test").main, "test.py", flags, lambda argv: TestOptions().build_parser(argv))
    return Path(flags.get("results_dir") or "results") / str(flags.get("name") or "experiment")


def evaluate(**flags: FlagValue) -> Evaluation:
    """``evaluation/Stain_Evaluation.py`` with these flags; what it chose and scored."""
    from evaluation import Stain_Evaluation

    _run(Stain_Evaluation.main, "Stain_Evaluation.py", flags, lambda _: Stain_Evaluation.build_parser())
    results = Path(str(flags.get("results_dir") or Stain_Evaluation.DEFAULT_RESULTS))
    folder = Path(str(flags["out"])) if flags.get("out") else results / "evaluation"
    selection = json.loads((folder / "selection.json").read_text(encoding="utf-8"))
    rows = json.loads((folder / "scores.json").read_text(encoding="utf-8"))
    return Evaluation(folder, selection, rows)


def colorize(**flags: FlagValue) -> Path:
    """``colorize.py`` with these flags; the output folder. An input that could not be colorized
    (named in the log) raises :class:`CommandError` after the others were written."""
    driver = _driver("colorize")
    _run(driver.main, "colorize.py", flags, lambda _: driver.build_parser())
    return Path(str(flags["output"]))


def _run(
    main: Callable[[list[str]], int],
    command: str,
    flags: dict[str, FlagValue],
    parser: Callable[[list[str]], argparse.ArgumentParser],
) -> None:
    """Run a command's ``main``; a non-zero status becomes :class:`CommandError` with the errors it logged.
    ``parser(argv)`` builds the command's parser (for :func:`command_line`)."""
    setup_logging()  # before our handler, which would otherwise stop the console handler being installed
    errors = _ErrorLines()
    logging.getLogger().addHandler(errors)
    try:
        status = main(command_line(parser(command_line(**flags)), **flags))
    except SystemExit as stop:  # argparse refused a flag; it printed why and the usage
        status = stop.code if isinstance(stop.code, int) else 2
        errors.lines.append("a flag was refused: see the message printed above")
    finally:
        logging.getLogger().removeHandler(errors)
    if status:
        said = " | ".join(errors.lines) or "see the log above"
        raise CommandError(f"{command} failed (exit status {status}): {said}")


class _ErrorLines(logging.Handler):
    """Keeps the messages of ERROR records (the commands' one-line reports)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _driver(name: str) -> ModuleType:
    """The command module ``<name>.py`` of this folder. Loaded by its path, because ``test`` is also the
    name of a package of Python's standard library, which may come first on ``sys.path``."""
    path = ROOT / f"{name}.py"
    for loaded in (sys.modules.get(name), sys.modules.get(f"cell_cyclegan_{name}")):
        if loaded is not None and Path(getattr(loaded, "__file__", None) or "").resolve() == path:
            return loaded
    spec = importlib.util.spec_from_file_location(f"cell_cyclegan_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
