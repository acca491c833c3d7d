"""run_script: the exit status every command shares, and one clean line for a user's error."""

from __future__ import annotations

import errno

import pytest

from util.cli import run_script
from util.errors import DatasetError


def test_a_users_error_is_one_line_and_status_1(caplog: pytest.LogCaptureFixture) -> None:
    def job() -> None:
        raise DatasetError("folder x is missing")

    assert run_script(job) == 1
    assert caplog.records[-1].levelname == "ERROR" and caplog.records[-1].getMessage() == "folder x is missing"


def test_the_jobs_own_status_is_kept_and_other_results_mean_success() -> None:
    assert run_script(lambda: None) == 0
    assert run_script(lambda: "report.html") == 0
    assert run_script(lambda: 1) == 1


def test_ctrl_c_becomes_the_hint_and_130_only_when_a_hint_is_given(caplog: pytest.LogCaptureFixture) -> None:
    def interrupted() -> None:
        raise KeyboardInterrupt

    assert run_script(interrupted, interrupted_hint="run it again to resume") == 130
    assert "run it again to resume" in caplog.text
    with pytest.raises(KeyboardInterrupt):
        run_script(interrupted)


def test_bugs_keep_their_traceback() -> None:
    with pytest.raises(ZeroDivisionError):
        run_script(lambda: 1 // 0)


def test_a_full_disk_nobody_caught_is_one_line_naming_the_file(caplog: pytest.LogCaptureFixture) -> None:
    def job() -> None:
        raise OSError(errno.ENOSPC, "No space left on device", "/runs/x/loss_curves.png")

    assert run_script(job) == 1
    assert caplog.records[-1].getMessage() == "cannot write or read /runs/x/loss_curves.png: the disk is full"


def test_other_os_errors_are_bugs_and_keep_their_traceback() -> None:
    def job() -> None:
        raise OSError(errno.EBADF, "Bad file descriptor")

    with pytest.raises(OSError):
        run_script(job)


def test_help_shows_every_default_that_says_something() -> None:
    import argparse

    from util.cli import HelpFormatter

    parser = argparse.ArgumentParser(formatter_class=HelpFormatter)
    parser.add_argument("--seed", type=int, default=0, help="seed")
    parser.add_argument("--rate", type=float, default=0.0, help="rate")
    parser.add_argument("--mode", default="fast", help="mode")
    parser.add_argument("--limit", default=None, help="limit")
    parser.add_argument("--quiet", action="store_true", help="quiet")
    parser.add_argument("--name", required=True, help="name")
    text = " ".join(parser.format_help().split())
    assert "seed (default: 0)" in text and "rate (default: 0.0)" in text and "mode (default: fast)" in text
    assert "limit (default" not in text and "quiet (default" not in text and "name (default" not in text


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        ("train.py", "(default: 0)"),  # --seed
        ("test.py", "(default: results)"),
        ("colorize.py", "(default: 512)"),  # --tile
        ("evaluation/Stain_Evaluation.py", "(default: 0.05)"),  # a guard
        ("scripts/prepare_ctc.py", "(default: gold)"),  # --truth
        ("scripts/make_demo_dataset.py", "(default:"),
    ],
)
def test_every_command_s_help_shows_defaults(command: str, shown: str) -> None:
    import subprocess
    import sys

    from tests.helpers import REPO_ROOT

    result = subprocess.run(
        [sys.executable, command, "--help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and shown in " ".join(result.stdout.split()), result.stdout[-500:]
