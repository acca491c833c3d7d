"""util.disk on real faults: a read-only file system, a path through a file, a full disk."""

from __future__ import annotations

import errno
import sys
from pathlib import Path

import pytest

from tests.helpers import run_on_small_disk
from util.disk import require_writable_folder, writing
from util.errors import OutputError


def test_a_folder_under_a_file_is_refused_naming_the_flag(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(
        OutputError, match=r"--results_dir .*file/out: cannot write there: a part of the path is a file"
    ):
        require_writable_folder(tmp_path / "file" / "out", "--results_dir")


def test_a_writable_folder_is_made_and_left_empty(tmp_path: Path) -> None:
    folder = require_writable_folder(tmp_path / "new" / "deeper", "--output")
    assert folder.is_dir() and not any(folder.iterdir())


def test_writing_names_what_and_what_was_kept() -> None:
    with (
        pytest.raises(
            OutputError, match=r"^cannot write the page x.html: the disk is full. The checkpoint is intact.$"
        ),
        writing("the page x.html", "The checkpoint is intact."),
    ):
        raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(ValueError), writing("anything"):
        raise ValueError("a bug stays a bug")


@pytest.mark.small_disk
def test_a_read_only_file_system_is_refused_for_real(tmp_path: Path) -> None:
    script = (
        "from util.disk import require_writable_folder\n"
        "from util.errors import OutputError\n"
        "try:\n"
        f"    require_writable_folder({str(tmp_path / 'ro' / 'out')!r}, '--output')\n"
        "except OutputError as error:\n"
        "    print(error)\n"
    )
    finished = run_on_small_disk(tmp_path / "ro", f'{sys.executable} -c "{script}"', read_only=True)
    assert "cannot write there: the file system is read-only; choose another --output" in finished.stdout, (
        finished.stderr
    )
