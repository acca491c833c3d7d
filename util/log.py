"""Logging set-up for the command-line drivers."""

from __future__ import annotations

import logging


def setup_logging(verbose: bool = False) -> None:
    """Log to stderr as short lines at ``INFO`` (``DEBUG`` with ``verbose``).

    Calling it again only changes the level, and handlers installed by a host (a notebook,
    pytest) are kept.
    """
    level = logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(format="%(levelname)s %(message)s")
    logging.getLogger().setLevel(level)
    # Third-party libraries chat at INFO (matplotlib font cache, PIL plugins, the ONNX optimiser): keep them quiet.
    for noisy in ("matplotlib", "PIL", "urllib3", "visdom", "websocket", "onnxscript", "onnx_ir"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
