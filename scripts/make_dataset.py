"""Assemble one CycleGAN dataroot from a prepared domain-A side and a prepared domain-B side, and check it.

    python scripts/make_dataset.py --a_side datasets/hela_A --b_side datasets/he_tiles --output datasets/hela2he
    python scripts/make_dataset.py --check datasets/hela2he

The A side (from ``scripts/prepare_ctc.py``) brings ``trainA testA trainA_GT testA_GT`` and, when it
has them, ``valA valA_GT``; the B side (from ``scripts/prepare_slide.py``) ``trainB testB`` and ``valB``. Files are hard-linked where the file system
allows (no space used), otherwise copied; each side's manifest and settings come along
(``manifest_A.csv``, ``manifest_B.csv``, ``preparation.json``). Before anything is written, and
with ``--check`` alone, the layout is verified: every folder present and not empty, every image
readable by the reader training uses and of one size, gray in A and color in B, and every A image
paired with a mask of its name and size. Every image is read (a progress bar shows how far), and
every problem found is listed in one summary, each bad file with its reason (exit status 1); a
clean dataroot prints a table of its folders.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project's packages, from any working folder

from data.image_io import image_from_array, list_images, mask_values_from_array, read_array
from data.preparation import MANIFEST_NAME, link_or_copy, read_settings, staged_output, write_settings
from util.cli import HelpFormatter, run_script
from util.errors import DatasetError, ImageReadError
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
    size: tuple[int, int]  # (width, height): the size of most of its images
    channels: int


@dataclass
class FolderScan:
    """Every image of one folder as read: the size and channels of each readable file."""

    folder: Path
    paths: list[Path]
    sizes: dict[Path, tuple[int, int]] = field(default_factory=dict)  # (width, height)
    channels: dict[Path, int] = field(default_factory=dict)

    def summary(self) -> FolderSummary | None:
        """The folder in one table row; None if no image of it could be read."""
        if not self.sizes:
            return None
        size = Counter(self.sizes.values()).most_common(1)[0][0]
        return FolderSummary(self.folder.name, len(self.paths), size, max(self.channels.values()))


def scan_folder(folder: Path, paths: list[Path], expect_color: bool, bar: tqdm, problems: list[str]) -> FolderScan:
    """Read every image of ``folder`` as training does; each bad file becomes one line of ``problems``."""
    scan = FolderScan(folder, paths)
    is_mask = folder.name.endswith("_GT")
    for path in paths:
        bar.update()
        try:
            array = read_array(path)
            # The checks training applies after reading (values that are not numbers, for instance).
            if is_mask:
                mask_values_from_array(array, path)
            else:
                image_from_array(array, 3 if expect_color else 1, path)
        except ImageReadError as error:
            problems.append(str(error))
            continue
        scan.sizes[path] = (array.shape[1], array.shape[0])
        scan.channels[path] = 1 if array.ndim == 2 else array.shape[2]
    summary = scan.summary()
    if summary is None:
        return scan
    for path, size in scan.sizes.items():
        if size != summary.size and not is_mask:  # a mask is held to the size of its image (check_masks)
            problems.append(
                f"{path} is {format_size(size)}, but most images of {folder} are {format_size(summary.size)}: "
                "the folder mixes image sizes, and every crop of a dataset must have one size"
            )
    for path, channels in scan.channels.items():
        if expect_color and channels not in (3, 4):
            problems.append(f"{path} is gray; domain B must be color H&E tiles")
        elif not expect_color and channels != 1:
            kind = "masks" if is_mask else "images"
            problems.append(f"{path} is color ({channels} channels); domain A {kind} must be gray")
    return scan


def check_masks(images: FolderScan, masks: FolderScan, problems: list[str]) -> None:
    """Every image has one mask of the same name (relative path without extension) and size, and every
    mask an image: masks pair with images by name, as training pairs them."""
    image_names = _by_name(images, problems)
    mask_names = _by_name(masks, problems)
    for name, image in image_names.items():
        mask = mask_names.get(name)
        if mask is None:
            problems.append(f"{image} has no mask in {masks.folder} (a mask of the same name is needed)")
        elif image in images.sizes and mask in masks.sizes and images.sizes[image] != masks.sizes[mask]:
            problems.append(
                f"mask {mask} is {format_size(masks.sizes[mask])} but its image {image} is "
                f"{format_size(images.sizes[image])}; a mask must have exactly the size of its image"
            )
    problems.extend(
        f"{mask} has no image in {images.folder} (rename it to match its image, or remove it)"
        for name, mask in mask_names.items()
        if name not in image_names
    )


def _by_name(scan: FolderScan, problems: list[str]) -> dict[str, Path]:
    """The files of ``scan`` by pairing name; two files of one name (``x.png``, ``x.tif``) are a problem."""
    named: dict[str, Path] = {}
    for path in scan.paths:
        name = path.relative_to(scan.folder).with_suffix("").as_posix()
        if name in named:
            problems.append(f"{path} and {named[name]} share a name; masks pair with images by name, so rename one")
        named.setdefault(name, path)
    return named


def folders_of(a_root: Path, b_root: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The A and B folders to check and copy: the required ones, and the validation ones where present."""
    a_folders = A_FOLDERS + tuple(name for name in VAL_A_FOLDERS if (a_root / name).exists())
    b_folders = B_FOLDERS + tuple(name for name in VAL_B_FOLDERS if (b_root / name).exists())
    return a_folders, b_folders


def check_dataroot(a_root: Path, b_root: Path) -> list[FolderSummary]:
    """Read every image of the A folders under ``a_root`` and the B folders under ``b_root``; one summary
    per folder, or a :class:`DatasetError` listing every bad file and layout problem, each with its reason.

    Every problem is collected before anything is reported: a bad file deep in a large dataset would
    otherwise stop training mid-epoch, one file per run.
    """
    a_folders, b_folders = folders_of(a_root, b_root)
    problems: list[str] = []
    if "valA" in a_folders and "valA_GT" not in a_folders:
        problems.append(f"{a_root / 'valA'} has no masks: {a_root / 'valA_GT'} is missing")
    folders = [(a_root / name, False) for name in a_folders] + [(b_root / name, True) for name in b_folders]
    listings = {folder: list_images(folder) if folder.is_dir() else [] for folder, _ in folders}
    problems += [
        f"{folder} is missing or holds no images; prepare that side first"
        for folder, paths in listings.items()
        if not paths
    ]
    scans: dict[str, FolderScan] = {}
    total = sum(map(len, listings.values()))
    with progress_bar(total=total, desc="checking images", unit="image", leave=False) as bar:
        for folder, expect_color in folders:
            scans[folder.name] = scan_folder(folder, listings[folder], expect_color, bar, problems)
    if not ({"valA", "valB"} <= set(scans)):
        logger.warning(
            "no complete validation split (valA, valA_GT and valB): Stain_Evaluation will have to choose the epoch "
            "on the test split; prepare both sides again with the current scripts"
        )
    for images, masks in MASK_FOLDERS.items():
        if images in scans and masks in scans and scans[images].paths and scans[masks].paths:
            check_masks(scans[images], scans[masks], problems)
    if problems:
        listing = "".join(f"\n  {problem}" for problem in problems)
        raise DatasetError(
            f"{len(problems)} problem(s) in the dataset ({total} images read); fix or remove these files, then "
            f"check again:{listing}"
        )
    summaries = [summary for scan in scans.values() if (summary := scan.summary()) is not None]
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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter, allow_abbrev=False)
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
