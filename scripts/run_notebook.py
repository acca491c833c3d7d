"""Run demo.ipynb top to bottom and store it with its outputs, so readers on a code host see the pictures.

    python scripts/run_notebook.py --fresh    # what `make notebook` runs: the notebook's own defaults
    python scripts/run_notebook.py --work /tmp/notebook_run --timeout 3600

The notebook runs in a fresh kernel in the project folder, with the parameters stored in its
parameters cell; everything it writes goes to its ``WORK`` folder (``--work`` overrides it). The
notebook continues what it finds there (a second run of its cells does not train again), so the
stored outputs come from a clean run only with an empty ``WORK``: ``--fresh`` deletes it first, and
without it an existing ``WORK`` is refused. The executed notebook replaces ``demo.ipynb`` only when
every cell succeeded. Its metadata records a
digest of the code cells (``tests/test_demo_notebook.py`` checks that the stored outputs belong to
the stored code), the time taken and the machine, and the notebook's size is kept small by
plotting at a modest resolution.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import platform
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project's packages, from any working folder

import nbformat
from nbformat import NotebookNode

from util.arg_types import positive_int
from util.atomic import write_text_atomic
from util.cli import HelpFormatter, run_script
from util.errors import CellCycleGANError
from util.log import setup_logging

logger = logging.getLogger("run_notebook")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = PROJECT_ROOT / "demo.ipynb"
#: Where the run is recorded in the notebook's metadata.
METADATA_KEY = "cell_cyclegan"


def code_digest(notebook: NotebookNode) -> str:
    """SHA-256 of the code cells' sources, in order: what the stored outputs were produced from."""
    digest = hashlib.sha256()
    for cell in notebook.cells:
        if cell.cell_type == "code":
            digest.update(cell.source.encode("utf-8") + b"\0")
    return digest.hexdigest()


def parameter(notebook: NotebookNode, name: str) -> object:
    """The value the parameters cell gives ``name`` (the cell is plain assignments)."""
    values: dict[str, object] = {}
    cell = next(cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", []))
    exec(cell.source, {}, values)
    return values[name]


def run_notebook(path: Path, work: str | None, timeout: int, fresh: bool = False) -> float:
    """Execute ``path`` in place (see the module docstring); return the seconds it took."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    notebook = nbformat.read(path, as_version=4)
    digest = code_digest(notebook)
    folder = PROJECT_ROOT / str(work if work is not None else parameter(notebook, "WORK"))
    if folder.exists():
        if not fresh:
            raise CellCycleGANError(
                f"{folder} exists: the notebook would continue its runs there; pass --fresh to delete it first"
            )
        shutil.rmtree(folder)
    executed = nbformat.from_dict(notebook)
    if work is not None:
        parameters = next(cell for cell in executed.cells if "parameters" in cell.metadata.get("tags", []))
        parameters.source += f"\nWORK = {work!r}"
    started = time.perf_counter()
    try:
        NotebookClient(
            executed, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(PROJECT_ROOT)}}
        ).execute()
    except CellExecutionError as error:
        last_line = str(error).strip().splitlines()[-1] if str(error).strip() else "a cell failed"
        raise CellCycleGANError(f"{path.name} stopped at a failing cell ({last_line}); it was not replaced") from None
    seconds = time.perf_counter() - started
    if work is not None:  # store the notebook's own parameters, not the override
        parameters.source = next(
            cell.source for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])
        )
    executed.metadata[METADATA_KEY] = {
        "code_digest": digest,
        "seconds": round(seconds),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "command": "make notebook",
    }
    write_text_atomic(path, nbformat.writes(executed) + "\n")
    return seconds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter, allow_abbrev=False)
    parser.add_argument("--notebook", type=Path, default=NOTEBOOK, help="the notebook to run and store")
    parser.add_argument("--work", default=None, help="the notebook's output folder (default: its WORK parameter)")
    parser.add_argument("--timeout", type=positive_int, default=3600, help="seconds one cell may take")
    parser.add_argument("--fresh", action="store_true", help="delete the notebook's WORK folder before running")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    setup_logging()
    args = build_parser().parse_args(argv)

    def job() -> None:
        logger.info("running %s (a few minutes on a CPU)", args.notebook)
        seconds = run_notebook(args.notebook, args.work, args.timeout, args.fresh)
        logger.info("%s ran in %.0f s and is stored with its outputs", args.notebook, seconds)

    return run_script(job)


if __name__ == "__main__":
    sys.exit(main())
