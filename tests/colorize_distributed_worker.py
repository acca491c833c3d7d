"""Run by tests/test_colorize_distributed.py under torchrun: colorize.py, every file each process writes recorded.

torchrun --standalone --nproc_per_node 2 tests/colorize_distributed_worker.py RECORD_DIR <colorize.py arguments>

Each process appends the paths it writes to ``RECORD_DIR/rank<RANK>.txt``, so the test can tell that
no file was written twice and that every process had a share.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import colorize


def main() -> int:
    record, argv = Path(sys.argv[1]), sys.argv[2:]
    log = record / f"rank{os.environ.get('RANK', '0')}.txt"
    write_image, write_ome_pyramid = colorize.write_image, colorize.write_ome_pyramid

    def noted(path: Path) -> None:
        with log.open("a", encoding="utf-8") as file:
            file.write(f"{path}\n")

    def recorded_image(path: Path, *arguments: Any, **options: Any) -> None:
        noted(path)
        write_image(path, *arguments, **options)

    def recorded_pyramid(path: Path, *arguments: Any, **options: Any) -> Any:
        noted(path)
        return write_ome_pyramid(path, *arguments, **options)

    colorize.write_image, colorize.write_ome_pyramid = recorded_image, recorded_pyramid
    return colorize.main(argv)


if __name__ == "__main__":
    sys.exit(main())
