"""One process at a time in a folder: an exclusive lock that names its holder and ends with it.

Two trainings of the same experiment would interleave their loss logs and overwrite each other's
checkpoints. The lock is ``fcntl.flock`` on ``<folder>/.lock``: the kernel releases it when the
holding process ends, however it ends (``kill -9`` included), so a run that was killed never
blocks the next one. The file records the holder (process id, host, start time) so that a
refused process can say who is working there, and so that taking over after a killed run can
be reported. On systems without ``fcntl`` (Windows) there is no lock.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from util.disk import writing
from util.errors import BusyError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

logger = logging.getLogger(__name__)

LOCK_FILE = ".lock"
#: How long a process waiting for the lock tries before it names the holder.
PATIENCE_SECONDS = 1.0


def describe_holder(holder: dict[str, Any]) -> str:
    """ "process 123 on host gpu1 (started 2026-12-02 08:00:00)" from what a holder recorded."""
    if not holder:
        return "another process"
    return f"process {holder.get('pid')} on host {holder.get('host')} (started {holder.get('started')})"


@contextlib.contextmanager
def exclusive_lock(folder: str | os.PathLike, what: str, remedy: str) -> Iterator[None]:
    """Hold ``<folder>/.lock`` for the block; another holder is a :class:`BusyError` naming it.

    ``what`` names the folder's content in the message ("experiment 'demo'"), ``remedy`` says
    what to do instead ("choose another --name"). The folder is created if needed.
    """
    folder = Path(folder)
    path = folder / LOCK_FILE
    with contextlib.ExitStack() as stack:
        with writing(f"the lock file {path}"):
            folder.mkdir(parents=True, exist_ok=True)
            handle = stack.enter_context(open(path, "a+", encoding="utf-8"))
        if fcntl is None:  # pragma: no cover - Windows
            yield
            return
        if not _try_lock(handle, fcntl.LOCK_EX, patience=PATIENCE_SECONDS):
            raise BusyError(
                f"{what} is in use by {describe_holder(read_holder(handle))}, whose lock is {path}; "
                f"wait for it to finish or stop it, or {remedy}"
            )
        # Forked children (DataLoader workers) inherit the open file, and a flock lasts until every copy
        # is closed: without this, workers orphaned by a kill -9 would hold the experiment a while longer.
        os.register_at_fork(after_in_child=handle.close)
        previous = read_holder(handle)
        if previous:
            logger.warning(
                "%s was left locked by %s, which ended without releasing it (killed or crashed); taken over",
                what,
                describe_holder(previous),
            )
        _write_holder(handle)
        try:
            yield
        finally:
            # Released cleanly: the next holder has nothing to report. On a file system that has just
            # turned read-only this fails, and must not replace the error that is on its way out.
            with contextlib.suppress(OSError):
                handle.truncate(0)


def is_locked(folder: str | os.PathLike) -> bool:
    """True while a live process holds ``<folder>/.lock`` (False where it cannot be checked)."""
    path = Path(folder) / LOCK_FILE
    if fcntl is None or not path.is_file():
        return False
    try:
        with open(path, encoding="utf-8") as handle:
            return not _try_lock(handle, fcntl.LOCK_SH, patience=0.0)
    except OSError:
        return False


def _try_lock(handle: IO[str], kind: int, patience: float) -> bool:
    """Take a flock of ``kind`` on ``handle``, trying for ``patience`` seconds; False if another holds it.

    The patience covers brief holds that are no real holder: :func:`is_locked` in a reader takes a
    shared lock for an instant.
    """
    deadline = time.monotonic() + patience
    while True:
        try:
            fcntl.flock(handle, kind | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)


def read_holder(handle: IO[str]) -> dict[str, Any]:
    """What the lock file's last holder recorded (empty after a clean release or when unreadable)."""
    handle.seek(0)
    try:
        holder = json.loads(handle.read() or "{}")
    except json.JSONDecodeError:
        return {}
    return holder if isinstance(holder, dict) else {}


def _write_holder(handle: IO[str]) -> None:
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps(holder) + "\n")
    handle.flush()
