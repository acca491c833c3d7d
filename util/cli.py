"""What every command-line driver does around its job: logging, options, clean errors."""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import sys
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, NoReturn, Protocol

from tqdm.contrib.logging import logging_redirect_tqdm

from util.disk import describe_os_error, is_machine_error
from util.distributed import context_from_environment
from util.errors import CellCycleGANError, user_message
from util.log import setup_logging

logger = logging.getLogger(__name__)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """``--help`` of every command: the module docstring as written, and each flag's default where it
    says something (not for required flags, switches that are off, or "none")."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or action.required
            or default is None
            or default is False
            or default == argparse.SUPPRESS
        ):
            return text
        return f"{text} (default: %(default)s)"


class OptionsParser(Protocol):
    explicit: set[str]

    def parse(self, argv: Sequence[str] | None = None) -> argparse.Namespace: ...
    def format_options(self, opt: argparse.Namespace) -> str: ...


def exit_quickly(status: int) -> NoReturn:
    """End a command-line process with ``status``, without the final garbage collection over every
    object the process made (about a second after importing torch): the work is done, its files are
    closed, and the operating system takes the memory back anyway. Only for ``__main__``: in a
    long-lived process (a notebook) freezing the heap would keep its garbage forever."""
    gc.freeze()
    sys.exit(status)


def run_script(job: Callable[[], object], interrupted_hint: str | None = None) -> int:
    """Run a command's ``job`` and return the exit status: an int the job returns (e.g. 1 when
    some inputs were skipped), else 0.

    A :class:`CellCycleGANError` (a problem the user can fix) becomes one ``ERROR`` line and
    status 1, and so does a failure of the machine that no step caught on its own (a full disk,
    a read-only folder: :mod:`util.disk`). With ``interrupted_hint``, Ctrl-C becomes that warning
    and status 130. Other exceptions are bugs and keep their traceback.
    """
    try:
        status = job()
    except CellCycleGANError as error:
        logger.error("%s", user_message(error))
        return 1
    except OSError as error:
        if not is_machine_error(error):
            raise
        where = error.filename or "a file"
        logger.error("cannot write or read %s: %s", where, describe_os_error(error))
        return 1
    except KeyboardInterrupt:
        if interrupted_hint is None:
            raise
        logger.warning("%s", interrupted_hint)
        return 130
    return status if isinstance(status, int) else 0


def run_command(
    options: OptionsParser,
    argv: Sequence[str] | None,
    job: Callable[[argparse.Namespace, str], Any],
    prepare: Callable[[argparse.Namespace, set[str]], None],
    hold: Callable[[argparse.Namespace], AbstractContextManager[Any]] | None = None,
    interrupted_hint: str = "interrupted",
) -> int:
    """Parse options; holding ``hold(opt)`` (e.g. the experiment's lock), ``prepare`` them (e.g. adopt a
    checkpoint's architecture, given the flags typed), log them and run ``job(opt, options_text)``.

    The job saves the options itself once it has checked them (the model built, the checkpoint
    loaded): options that fail are never recorded. Returns the exit status (see :func:`run_script`).
    """
    setup_logging()
    # Under torchrun only the main process (rank 0) talks and writes; the others log warnings only.
    is_main = context_from_environment().is_main

    def parse_and_run() -> None:
        opt = options.parse(argv)
        setup_logging(opt.verbose)
        if not is_main:
            logging.getLogger().setLevel(logging.WARNING)
        with hold(opt) if hold is not None and is_main else contextlib.nullcontext():
            prepare(opt, options.explicit)
            text = options.format_options(opt)
            logger.info("options\n%s", text)
            with logging_redirect_tqdm():
                job(opt, text)

    return run_script(parse_and_run, interrupted_hint)
