"""Outputs on a failing machine: a folder checked before the work starts, a failed write told in one line.

A full disk, a read-only file system or a path that runs through a file reach Python as
``OSError`` (from PIL, matplotlib, json, shutil...) with a traceback that hides what was being
written. The drivers check their output folders up front (:func:`require_writable_folder`) and
wrap the writes of long jobs in :func:`writing`, which turns such an error into an
:class:`~util.errors.OutputError`: what was written, why it failed, and what was kept.
"""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

from util.errors import OutputError

#: Failures of the machine or of the place, not of the program: told in one line, never as a traceback.
MACHINE_ERRNOS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EEXIST: "a file of that name stands where a folder is needed",
    errno.EISDIR: "a folder stands where a file is needed",
    errno.EIO: "input/output error (a failing disk or a lost network mount)",
    errno.ENAMETOOLONG: "the file name is too long",
}


def is_machine_error(error: BaseException) -> bool:
    """True for an ``OSError`` caused by the disk or the place (full, read-only, not a folder...)."""
    return isinstance(error, OSError) and error.errno in MACHINE_ERRNOS


def describe_os_error(error: OSError) -> str:
    """Why ``error`` happened, in words: "the disk is full", "the file system is read-only", ..."""
    return MACHINE_ERRNOS.get(error.errno, error.strerror or str(error))


def require_writable_folder(folder: str | os.PathLike, flag: str) -> Path:
    """Create ``folder`` if needed and prove a file can be made there; return it.

    Raises :class:`OutputError` naming ``flag`` (e.g. ``--results_dir``) before any work is done
    when the folder cannot be made (a file in its path) or written (read-only, no permission).
    """
    folder = Path(folder)
    probe = folder / f".write-check-{uuid.uuid4().hex[:12]}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.close(handle)
        probe.unlink()
    except OSError as error:
        raise OutputError(
            f"{flag} {folder}: cannot write there: {describe_os_error(error)}; choose another {flag}"
        ) from error
    return folder


@contextlib.contextmanager
def writing(what: str, kept: str = "") -> Iterator[None]:
    """Turn a machine failure (see :data:`MACHINE_ERRNOS`) inside the block into one :class:`OutputError` line.

    ``what`` names the output ("the loss plot /x/loss_curves.png"); ``kept`` says what the user
    still has and how to go on ("the checkpoint of epoch 3 is intact; ..."). Other errors pass.
    """
    try:
        yield
    except OSError as error:
        if not is_machine_error(error):
            raise
        message = f"cannot write {what}: {describe_os_error(error)}"
        raise OutputError(f"{message}. {kept}".strip() if kept else message) from error
