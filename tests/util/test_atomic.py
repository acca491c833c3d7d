import os
import stat
from pathlib import Path

import pytest

from util.atomic import atomic_path, write_text_atomic


def test_write_replaces_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "file.txt"
    write_text_atomic(target, "first")
    write_text_atomic(target, "second")
    assert target.read_text() == "second"
    assert [path.name for path in target.parent.iterdir()] == ["file.txt"]


def test_failure_keeps_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "file.txt"
    target.write_text("complete old content")
    with pytest.raises(RuntimeError), atomic_path(target) as temporary:
        temporary.write_text("half of the new con")
        raise RuntimeError("crash while writing")
    assert target.read_text() == "complete old content"
    assert [path.name for path in tmp_path.iterdir()] == ["file.txt"]


def test_written_files_get_the_users_usual_permissions(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "shared.txt", "readable by the lab")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "shared.txt").stat().st_mode) == 0o644
