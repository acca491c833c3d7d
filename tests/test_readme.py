"""The README's commands match the code: every flag of every shell command it shows is one its script accepts."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import re
import shlex

import pytest

from options.test_options import TestOptions as InferenceOptions
from options.train_options import TrainOptions
from tests.helpers import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")


def shell_commands() -> list[list[str]]:
    """The commands of the README's bash blocks, continuation lines joined, comments dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words and "..." not in words:
                commands.append(words)
    return commands


def python_commands() -> list[tuple[str, list[str]]]:
    """(script, arguments) of every ``python SCRIPT ...`` and ``torchrun ... SCRIPT ...`` command."""
    found = []
    for words in shell_commands():
        if "scripts/docker_run.sh" in words:
            words = words[words.index("scripts/docker_run.sh") + 1 :]
        scripts = [index for index, word in enumerate(words) if word.endswith(".py")]
        if words and words[0] in ("python", "torchrun") and scripts:
            found.append((words[scripts[0]], words[scripts[0] + 1 :]))
    return found


def parser_of(script: str, arguments: list[str]) -> argparse.ArgumentParser:
    if script == "train.py":
        return TrainOptions().build_parser(arguments)
    if script == "test.py":
        return InferenceOptions().build_parser(arguments)
    return importlib.import_module(script.removesuffix(".py").replace("/", ".")).build_parser()


def test_the_readme_shows_the_main_commands() -> None:
    scripts = {script for script, _ in python_commands()}
    assert {"train.py", "test.py", "colorize.py", "evaluation/Stain_Evaluation.py"} <= scripts
    assert ["make", "demo"] in shell_commands() and ["make", "test"] in shell_commands()


@pytest.mark.parametrize(("script", "arguments"), python_commands(), ids=lambda value: str(value)[:60])
def test_every_flag_in_the_readme_is_accepted(script: str, arguments: list[str]) -> None:
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors):
        try:
            _, unknown = parser_of(script, arguments).parse_known_args(arguments)
        except SystemExit:
            pytest.fail(f"{script} refuses the README's arguments {arguments}: {errors.getvalue()}")
    assert not unknown, f"{script} does not know {unknown}"


def option_table_rows() -> list[tuple[str, str]]:
    """(flag, default as the README writes it) for every row of the README's flag tables whose default
    column starts with a value in backticks; a row of several flags pairs them with its defaults in order."""
    rows = []
    for table in re.findall(r"\| flag \| default \| meaning \|\n\| --- .*?\n((?:\|.*\n)+)", README):
        for line in table.splitlines():
            flags_cell, default_cell = line.split("|")[1:3]
            flags = re.findall(r"`(--\w+)`", flags_cell)
            defaults = re.findall(r"`([^`]*)`", default_cell)
            if not default_cell.strip().startswith("`"):
                continue  # "(required)", "all", "off", "calibrated on `trainB`": said in words
            if len(flags) == 1:
                defaults = defaults[:1]  # "`unaligned` (`improvedunaligned` with ...)": the first is the default
            elif len(defaults) != len(flags):
                pytest.fail(f"README row {line!r}: {len(flags)} flags but {len(defaults)} defaults")
            rows.extend(zip(flags, defaults, strict=True))
    return rows


def test_the_readme_reads_its_option_tables() -> None:
    flags = [flag for flag, _ in option_table_rows()]
    assert len(flags) >= 25 and {"--gt_temperature", "--lambda_gt", "--lr", "--crop_size"} <= set(flags)


@pytest.mark.parametrize(("flag", "written"), option_table_rows(), ids=lambda value: str(value))
def test_the_readme_option_defaults_are_the_parsers(flag: str, written: str) -> None:
    """The README's default of each flag is the training parser's: cycle_gan's, or that of the first model
    that has it (seg_cycle_gan, cut, seg_cut add flags of their own)."""
    default = None
    for model in ("seg_cut", "cut", "seg_cycle_gan", "cycle_gan"):
        parser = TrainOptions().build_parser(["--dataroot", "x", "--model", model])
        actions = {option: action for action in parser._actions for option in action.option_strings}
        default = actions[flag].default if flag in actions else default
    if isinstance(default, float) and not isinstance(default, bool):
        assert float(written) == pytest.approx(default), f"README says {flag} {written}, the parser {default}"
    else:
        assert written == str(default), f"README says {flag} {written}, the parser {default}"
