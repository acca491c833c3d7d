"""What every command-line driver does around its job: logging, options, clean errors."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from tqdm.contrib.logging import logging_redirect_tqdm

from util.distributed import context_from_environment
from util.errors import CellCycleGANError, user_message
from util.log import setup_logging

logger = logging.getLogger(__name__)


class OptionsParser(Protocol):
    def parse(self, argv: Sequence[str] | None = None) -> argparse.Namespace: ...
    def format_options(self, opt: argparse.Namespace) -> str: ...
    def save_options(self, opt: argparse.Namespace, directory: Path, stem: str) -> None: ...


def run_command(
    options: OptionsParser,
    argv: Sequence[str] | None,
    job: Callable[[argparse.Namespace], Any],
    options_folder: Callable[[argparse.Namespace], Path],
    options_stem: str,
    interrupted_hint: str = "interrupted",
) -> int:
    """Parse options, log and save them, run ``job``; return the exit status.

    A :class:`CellCycleGANError` (a problem the user can fix) becomes one ``ERROR`` line and
    status 1; Ctrl-C becomes ``interrupted_hint`` and status 130. Other exceptions are bugs
    and keep their traceback.
    """
    setup_logging()
    # Under torchrun only the main process (rank 0) talks and writes; the others log warnings only.
    is_main = context_from_environment().is_main
    try:
        opt = options.parse(argv)
        setup_logging(opt.verbose)
        if not is_main:
            logging.getLogger().setLevel(logging.WARNING)
        logger.info("options\n%s", options.format_options(opt))
        if is_main:
            options.save_options(opt, options_folder(opt), options_stem)
        with logging_redirect_tqdm():
            job(opt)
    except CellCycleGANError as error:
        logger.error("%s", user_message(error))
        return 1
    except KeyboardInterrupt:
        logger.warning("%s", interrupted_hint)
        return 130
    return 0
