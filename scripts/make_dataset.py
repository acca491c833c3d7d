"""Assemble one CycleGAN dataroot from a prepared domain-A side and a prepared domain-B side, and check it.

    python scripts/make_dataset.py --a_side datasets/hela_A --b_side datasets/he_tiles --output datasets/hela2he
    python scripts/make_dataset.py --check datasets/hela2he

The A side (from ``scripts/prepare_ctc.py``) brings ``trainA testA trainA_GT testA_GT`` and, when it
has them, ``valA valA_GT``; the B side (from ``scripts/prepare_slide.py``) ``trainB testB`` and ``valB``. Files are hard-linked where the file system
allows (no space used), otherwise copied; each side's manifest and settings come along
(``manifest_A.csv``, ``manifest_B.csv``, ``preparation.json``). Before anything is written, and
with ``--check`` alone, the layout is verified: every folder present and not empty, every image
readable and of one size, gray in A and colour in B, and every A image paired with a mask of its
name and size. A table of the folders is printed.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project's packages, from any working folder

from data.image_io import list_images, read_array
from data.preparation import MANIFEST_NAME, link_or_copy, read_settings, staged_output, write_settings
from util.cli import run_script
from util.errors import DatasetError
from util.log import setup_logging
from util.progress import progress_bar

logger = logging.getLogger("make_dataset")

A_FOLDERS = ("trainA", "testA", "trainA_GT", "testA_GT")
B_FOLDERS = ("trainB", "testB")
#: The validation split: taken along when a side has it (Stain_Evaluation chooses the epoch on it).
VAL_A_FOLDERS = ("valA", "valA_GT")
VAL_B_FOLDERS = ("valB",)
#: Each image folder of A and the folder holding its masks.
MASK_FOLDERS = {"trainA": "trainA_GT", "valA": "valA_GT", "testA": "testA_GT"}


@dataclass
class FolderSummary:
    """What one folder of the layout holds."""

    name: str
    count: int
    size: tuple[int, int]  # (width, height)
    channels: int


def check_folder(folder: Path, expect_color: bool) -> FolderSummary:
    """Every image of ``folder`` readable, of one size, gray (masks, A) or colour (B); a summary."""
    paths = list_images(folder) if folder.is_dir() else []
    if not paths:
        raise DatasetError(f"{folder} is missing or holds no images; prepare that side first")
    sizes: dict[tuple[int, int], str] = {}
    channels = set()
    for path in progress_bar(paths, desc=f"checking {folder.name}", unit="image", leave=False):
        array = read_array(path)
        sizes.setdefault((array.shape[1], array.shape[0]), path.name)
        channels.add(1 if array.ndim == 2 else array.shape[2])
    if len(sizes) > 1:
        examples = ", ".join(f"{name} is {width}x{height}" for (width, height), name in list(sizes.items())[:3])
        raise DatasetError(f"{folder} mixes image sizes ({examples}); every crop of a dataset must have one size")
    colour = channels <= {3, 4}
    if expect_color and not colour:
        raise DatasetError(f"{folder} holds gray images; domain B must be colour H&E tiles")
    if not expect_color and channels != {1}:
        raise DatasetError(f"{folder} holds colour images; domain A images and masks must be gray")
    return FolderSummary(folder.name, len(paths), next(iter(sizes)), max(channels))


def check_masks(images: Path, masks: Path) -> None:
    """Every image has a mask of the same stem and every mask an image."""
    image_stems = {path.relative_to(images).with_suffix("").as_posix() for path in list_images(images)}
    mask_stems = {path.relative_to(masks).with_suffix("").as_posix() for path in list_images(masks)}
    for missing, where in ((image_stems - mask_stems, masks), (mask_stems - image_stems, images)):
        if missing:
            shown = ", ".join(sorted(missing)[:10])
            raise DatasetError(f"{len(missing)} file(s) have no partner in {where}: {shown}")


def folders_of(a_root: Path, b_root: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The A and B folders to check and copy: the required ones, and the validation ones where present."""
    a_folders = A_FOLDERS + tuple(name for name in VAL_A_FOLDERS if (a_root / name).exists())
    b_folders = B_FOLDERS + tuple(name for name in VAL_B_FOLDERS if (b_root / name).exists())
    return a_folders, b_folders


def check_dataroot(a_root: Path, b_root: Path) -> list[FolderSummary]:
    """Verify the A folders under ``a_root`` and the B folders under ``b_root``; one summary per folder."""
    a_folders, b_folders = folders_of(a_root, b_root)
    if "valA" in a_folders and "valA_GT" not in a_folders:
        raise DatasetError(f"{a_root / 'valA'} has no masks: {a_root / 'valA_GT'} is missing")
    summaries = [check_folder(a_root / name, expect_color=False) for name in a_folders]
    summaries += [check_folder(b_root / name, expect_color=True) for name in b_folders]
    by_name = {summary.name: summary for summary in summaries}
    if not ({"valA", "valB"} <= set(by_name)):
        logger.warning(
            "no complete validation split (valA, valA_GT and valB): Stain_Evaluation will have to choose the epoch "
            "on the test split; prepare both sides again with the current scripts"
        )
    for images, masks in MASK_FOLDERS.items():
        if images not in by_name:
            continue
        check_masks(a_root / images, a_root / masks)
        if by_name[images].size != by_name[masks].size:
            raise DatasetError(
                f"{a_root / images} holds {format_size(by_name[images].size)} images but "
                f"{a_root / masks} {format_size(by_name[masks].size)} masks"
            )
    sizes = {summary.size for summary in summaries}
    if len(sizes) > 1:
        logger.warning(
            "the folders hold different image sizes (%s); training crops them to --crop_size",
            ", ".join(format_size(size) for size in sorted(sizes)),
        )
    return summaries


def format_size(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def format_table(summaries: list[FolderSummary]) -> str:
    """The layout as a text table: folder, images, size, channels."""
    lines = [("folder", "images", "size", "channels")]
    lines += [(item.name, str(item.count), format_size(item.size), str(item.channels)) for item in summaries]
    widths = [max(len(line[column]) for line in lines) for column in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(widths[0]) if index == 0 else cell.rjust(widths[index]) for index, cell in enumerate(line))
        for line in lines
    )


def assemble(a_side: Path, b_side: Path, output: Path, overwrite: bool) -> list[FolderSummary]:
    """Check both sides, then link or copy them into ``output`` with their manifests and settings."""
    summaries = check_dataroot(a_side, b_side)
    a_folders, b_folders = folders_of(a_side, b_side)
    with staged_output(output, overwrite) as staging:
        for side, names in ((a_side, a_folders), (b_side, b_folders)):
            for name in names:
                for path in list_images(side / name):
                    link_or_copy(path, staging / name / path.relative_to(side / name))
        settings = {"command": "make_dataset", "a_side": str(a_side), "b_side": str(b_side)}
        for letter, side in (("A", a_side), ("B", b_side)):
            if (side / MANIFEST_NAME).is_file():
                shutil.copy2(side / MANIFEST_NAME, staging / f"manifest_{letter}.csv")
            settings[letter] = read_settings(side)
        write_settings(staging, settings)
    return summaries


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--a_side", type=Path, help="prepared domain A (trainA valA testA and their *_GT masks)")
    parser.add_argument("--b_side", type=Path, help="prepared domain B (trainB valB testB)")
    parser.add_argument("--output", type=Path, help="the dataroot to create")
    parser.add_argument("--check", type=Path, metavar="DATAROOT", help="only verify an existing dataroot")
    parser.add_argument("--overwrite", action="store_true", help="replace what --output holds")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    setup_logging()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.check is None and None in (args.a_side, args.b_side, args.output):
        parser.error("pass --a_side, --b_side and --output, or --check DATAROOT")

    def job() -> None:
        if args.check is not None:
            summaries = check_dataroot(args.check, args.check)
        else:
            summaries = assemble(args.a_side, args.b_side, args.output, args.overwrite)
        print(format_table(summaries))
        dataroot = args.check or args.output
        logger.info("dataroot %s is ready: train with --dataroot %s", dataroot, dataroot)

    return run_script(job)


if __name__ == "__main__":
    sys.exit(main())
