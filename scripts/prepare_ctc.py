"""Cut a Cell Tracking Challenge 2D dataset into domain-A crops with binary nucleus masks.

    python scripts/prepare_ctc.py Fluo-N2DH-GOWT1.zip --output datasets/gowt1_A --invert
    python scripts/prepare_ctc.py datasets/ctc/Fluo-N2DL-HeLa --output datasets/hela_A --invert --truth silver

Input: an extracted CTC 2D training dataset or its .zip, laid out as ``01/t000.tif``,
``01_GT/SEG/man_seg000.tif`` (gold truth: few frames, by experts) and ``01_ST/SEG/man_seg000.tif``
(silver truth: most frames, computed), the same for ``02``. Every frame with a segmentation of
the chosen ``--truth`` is paired with it by frame number; frames without one are skipped and
counted. Frames are stretched to 8 bits between robust percentiles of their own values, and
inverted with ``--invert`` (nuclei dark, as in H&E). Crops of ``--size`` on a grid of
``--stride`` are written as ``trainA``/``testA`` with their masks (0/255) in
``trainA_GT``/``testA_GT``. No frame gives crops to two splits: by default sequence 01 is for
training and 02 for testing (``--split sequence``), or ``--split frames --test_frames 60-91``
puts that range of frames of every sequence into the test split. The last ``--val_fraction`` of
each sequence's training frames (or the range ``--val_frames``) become the validation split
``valA``/``valA_GT``, on which Stain_Evaluation chooses the epoch: a block at the end, so that
neighbouring, nearly identical time points meet across one boundary only. Writes
``manifest.csv`` (where each crop came from) and ``preparation.json`` (these settings).
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project's packages, from any working folder

from data.image_io import decode_array, mask_values_from_array, write_image
from data.intensity import IntensityNormalization
from data.preparation import grid_boxes, staged_output, write_manifest, write_settings
from util.arg_types import float_in_range, nonnegative_float, positive_int
from util.cli import HelpFormatter, run_script
from util.errors import DatasetError, OptionError
from util.log import setup_logging
from util.progress import progress_bar

logger = logging.getLogger("prepare_ctc")

FRAME_PATTERN = re.compile(r"^(?P<root>(?:.*/)?)(?P<sequence>\d\d)/t(?P<frame>\d+)\.tiff?$")
TRUTH_PATTERN = re.compile(r"^(?P<root>(?:.*/)?)(?P<sequence>\d\d)_(?P<kind>GT|ST)/SEG/man_seg(?P<frame>\d+)\.tiff?$")
TRUTH_FOLDERS = {"gold": "GT", "silver": "ST"}
SPLITS = ("train", "val", "test")
MANIFEST_COLUMNS = (
    "file", "split", "sequence", "frame", "source", "truth", "y", "x", "size", "foreground_fraction",
)  # fmt: skip


class CTCArchive:
    """The files of one CTC dataset, in a folder or a zip, by path relative to the dataset's root."""

    def __init__(self, location: Path) -> None:
        self.location = Path(location)
        if not self.location.exists():
            raise DatasetError(f"{self.location} does not exist; pass an extracted CTC dataset folder or its .zip")
        self._zip: zipfile.ZipFile | None = None
        if self.location.is_dir():
            names = [path.relative_to(self.location).as_posix() for path in self.location.rglob("*") if path.is_file()]
        else:
            try:
                self._zip = zipfile.ZipFile(self.location)
            except (zipfile.BadZipFile, OSError) as error:
                raise DatasetError(
                    f"{self.location} is neither a folder nor a readable zip archive ({error}); "
                    "download the dataset again or pass its extracted folder"
                ) from None
            names = [name for name in self._zip.namelist() if not name.endswith("/")]
        self.names = names

    def read(self, name: str) -> np.ndarray:
        """The pixels of the file at ``name`` (relative to the location), as stored."""
        if self._zip is None:
            return decode_array((self.location / name).read_bytes(), f"{self.location}/{name}")
        return decode_array(self._zip.read(name), f"{self.location}:{name}")

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()


@dataclass
class Frame:
    """One time point of one sequence, with the segmentation it is paired with."""

    sequence: str
    number: int
    image: str
    truth: str


@dataclass
class Layout:
    """The frames of a CTC dataset grouped by sequence, and what was found without truth."""

    name: str
    frames: dict[str, list[Frame]] = field(default_factory=dict)
    without_truth: dict[str, int] = field(default_factory=dict)


def find_layout(archive: CTCArchive, truth: str) -> Layout:
    """Pair every frame with its ``truth`` (``gold``/``silver``) segmentation by frame number.

    A clear error when the files do not look like a CTC 2D dataset, or hold several datasets.
    """
    images: dict[tuple[str, int], str] = {}
    truths: dict[tuple[str, int], str] = {}
    roots = set()
    for name in archive.names:
        if match := FRAME_PATTERN.match(name):
            images[(match["sequence"], int(match["frame"]))] = name
            roots.add(match["root"])
        elif (match := TRUTH_PATTERN.match(name)) and match["kind"] == TRUTH_FOLDERS[truth]:
            truths[(match["sequence"], int(match["frame"]))] = name
    if not images:
        raise DatasetError(
            f"{archive.location} does not look like a Cell Tracking Challenge 2D dataset: expected frames "
            "01/t000.tif, 01/t001.tif, ... with segmentations in 01_GT/SEG/man_seg000.tif (gold) or "
            "01_ST/SEG/man_seg000.tif (silver), the same for 02"
        )
    if len(roots) > 1:
        raise DatasetError(
            f"{archive.location} holds several CTC datasets ({', '.join(sorted(root or '.' for root in roots))}); "
            "pass one dataset folder"
        )
    root = roots.pop()
    layout = Layout(name=root.rstrip("/").rsplit("/", 1)[-1] or archive.location.stem)
    for (sequence, number), image in sorted(images.items()):
        truth_name = truths.get((sequence, number))
        if truth_name is None or not truth_name.startswith(root):
            layout.without_truth[sequence] = layout.without_truth.get(sequence, 0) + 1
            continue
        layout.frames.setdefault(sequence, []).append(Frame(sequence, number, image, truth_name))
    if not layout.frames:
        folder = f"01_{TRUTH_FOLDERS[truth]}/SEG"
        raise DatasetError(
            f"no frame of {archive.location} has a {truth} segmentation ({folder}/man_seg<frame>.tif); "
            f"try --truth {'silver' if truth == 'gold' else 'gold'}"
        )
    return layout


def parse_frame_range(text: str) -> tuple[int, int]:
    """``'60-91'`` -> (60, 91), both included."""
    match = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", text)
    if not match or int(match[1]) > int(match[2]):
        raise argparse.ArgumentTypeError(f"expected a frame range START-END such as 60-91, got {text!r}")
    return int(match[1]), int(match[2])


def split_of(frame: Frame, args: argparse.Namespace) -> str | None:
    """``train``, ``test`` or None (a sequence that is in neither split) for one frame."""
    if args.split == "frames":
        first, last = args.test_frames
        return "test" if first <= frame.number <= last else "train"
    if frame.sequence in args.test_sequences:
        return "test"
    return "train" if frame.sequence in args.train_sequences else None


def assign_splits(layout: Layout, args: argparse.Namespace) -> dict[tuple[str, int], str]:
    """``train``, ``val`` or ``test`` for every frame that is in a split, by (sequence, frame number).

    Validation frames are taken from each sequence's training frames: the range ``--val_frames``,
    or the last ``--val_fraction`` of them (rounded; at least one frame always stays for training).
    With ``--split frames`` the block is the end of the training frames after the test range when
    there are any (else of those before it): one block, never split around the test range.
    """
    splits: dict[tuple[str, int], str] = {}
    for sequence, frames in layout.frames.items():
        training = []
        for frame in frames:
            split = split_of(frame, args)
            if split is not None:
                splits[(sequence, frame.number)] = split
            if split == "train":
                training.append(frame.number)
        training.sort()
        if args.val_frames is not None:
            first, last = args.val_frames
            validation = [number for number in training if first <= number <= last]
        else:
            count = min(round(len(training) * args.val_fraction), len(training) - 1)
            side = training
            if args.split == "frames":
                after = [number for number in training if number > args.test_frames[1]]
                side = after if after else training
            validation = side[len(side) - min(count, len(side)) :] if count > 0 else []
        splits.update({(sequence, number): "val" for number in validation})
    return splits


def check_split(layout: Layout, args: argparse.Namespace) -> None:
    """Refuse a split that leaks (a sequence in both), names missing sequences, or leaves a split empty."""
    available = sorted(layout.frames)
    if args.split == "frames":
        if args.test_frames is None:
            raise OptionError("--split frames needs --test_frames START-END, e.g. --test_frames 60-91")
    else:
        both = set(args.train_sequences) & set(args.test_sequences)
        if both:
            raise OptionError(f"sequence(s) {', '.join(sorted(both))} cannot be in both --train and --test sequences")
        missing = sorted(set(args.train_sequences + args.test_sequences) - set(available))
        if missing:
            raise OptionError(
                f"sequence(s) {', '.join(missing)} have no frames with truth; available: {', '.join(available)}"
            )
    splits = set(assign_splits(layout, args).values())
    for split in ("train", "test"):
        if split not in splits:
            raise OptionError(
                f"the chosen split leaves no frame for {split}; check --split, --val_frames and their ranges"
            )


def frame_crops(
    image: np.ndarray, mask: np.ndarray, size: int, stride: int, min_foreground: float
) -> Iterator[tuple[int, int, np.ndarray, np.ndarray, float]]:
    """(y, x, crop, mask crop, foreground fraction) of every grid crop with enough foreground."""
    for y, x in grid_boxes(*image.shape, size, stride):
        crop_mask = mask[y : y + size, x : x + size]
        fraction = float(np.count_nonzero(crop_mask)) / crop_mask.size
        if fraction >= min_foreground:
            yield y, x, image[y : y + size, x : x + size], crop_mask, fraction


def load_frame(
    archive: CTCArchive, frame: Frame, normalization: IntensityNormalization
) -> tuple[np.ndarray, np.ndarray]:
    """The 8-bit image and the 0/255 mask of a frame; a clear error if they are not one gray size."""
    raw = archive.read(frame.image)
    labels = archive.read(frame.truth)
    where = f"sequence {frame.sequence}, frame {frame.number} ({frame.image})"
    if raw.ndim != 2:
        raise DatasetError(f"{where} is not a single gray frame (shape {raw.shape}); only 2D datasets are supported")
    if labels.shape[:2] != raw.shape:
        raise DatasetError(
            f"{where}: the segmentation {frame.truth} is {labels.shape[1]}x{labels.shape[0]} but the frame is "
            f"{raw.shape[1]}x{raw.shape[0]}; the dataset is damaged or the files do not belong together"
        )
    foreground = mask_values_from_array(labels, f"{archive.location}/{frame.truth}") > 0
    return normalization.apply(raw), np.where(foreground, 255, 0).astype(np.uint8)


def write_crops(
    archive: CTCArchive,
    layout: Layout,
    args: argparse.Namespace,
    normalization: IntensityNormalization,
    output: Path,
) -> tuple[list[dict[str, object]], dict[str, int], dict[str, list[float]], int]:
    """Write every crop and its mask into ``output``: (manifest rows, crops per split, foreground
    fractions per split, crops left out for too little foreground)."""
    stride = args.stride or args.size
    frames = [frame for sequence in sorted(layout.frames) for frame in layout.frames[sequence]]
    split_of_frame = assign_splits(layout, args)
    rows: list[dict[str, object]] = []
    counts = dict.fromkeys(SPLITS, 0)
    foreground: dict[str, list[float]] = {split: [] for split in SPLITS}
    empty = 0
    for frame in progress_bar(frames, desc="frames", unit="frame"):
        split = split_of_frame.get((frame.sequence, frame.number))
        if split is None:
            continue
        image, mask = load_frame(archive, frame, normalization)
        kept = 0
        for y, x, crop, crop_mask, fraction in frame_crops(image, mask, args.size, stride, args.min_foreground):
            name = f"{layout.name}_{frame.sequence}_t{frame.number:04d}_y{y:04d}_x{x:04d}.png"
            write_image(output / f"{split}A" / name, crop)
            write_image(output / f"{split}A_GT" / name, crop_mask)
            rows.append(
                {
                    "file": f"{split}A/{name}", "split": split, "sequence": frame.sequence, "frame": frame.number,
                    "source": frame.image, "truth": frame.truth, "y": y, "x": x, "size": args.size,
                    "foreground_fraction": f"{fraction:.4f}",
                }
            )  # fmt: skip
            foreground[split].append(fraction)
            kept += 1
        counts[split] += kept
        empty += len(list(grid_boxes(*image.shape, args.size, stride))) - kept
    return rows, counts, foreground, empty


def prepare(args: argparse.Namespace) -> dict[str, int]:
    """Write the crops, masks, manifest and settings; return crop counts per split."""
    normalization = IntensityNormalization(args.low_percentile, args.high_percentile, args.invert)
    archive = CTCArchive(args.input)
    try:
        layout = find_layout(archive, args.truth)
        check_split(layout, args)
        with staged_output(args.output, args.overwrite) as staging:
            rows, counts, foreground, empty = write_crops(archive, layout, args, normalization, staging)
            if not rows:
                raise DatasetError(
                    f"no crop of {args.size}x{args.size} reached --min_foreground {args.min_foreground}; "
                    "lower it or --size"
                )
            write_manifest(staging, MANIFEST_COLUMNS, rows)
            write_settings(
                staging,
                {
                    "command": "prepare_ctc", "dataset": layout.name, "input": str(args.input),
                    "truth": args.truth, "normalization": normalization.to_dict(), "size": args.size,
                    "stride": args.stride or args.size, "min_foreground": args.min_foreground, "split": args.split,
                    "train_sequences": args.train_sequences, "test_sequences": args.test_sequences,
                    "test_frames": args.test_frames, "val_fraction": args.val_fraction, "val_frames": args.val_frames,
                },
            )  # fmt: skip
    finally:
        archive.close()
    summarize(layout, counts, foreground, empty, validation_asked=args.val_fraction > 0 or args.val_frames is not None)
    return counts


def summarize(
    layout: Layout,
    counts: dict[str, int],
    foreground: dict[str, list[float]],
    empty: int,
    validation_asked: bool = True,
) -> None:
    """Log what was found and written: frames per sequence, skipped frames, crops and foreground per split."""
    for sequence in sorted(set(layout.frames) | set(layout.without_truth)):
        logger.info(
            "sequence %s: %d frames with truth, %d without (skipped)",
            sequence,
            len(layout.frames.get(sequence, [])),
            layout.without_truth.get(sequence, 0),
        )
    for split in SPLITS:
        mean = float(np.mean(foreground[split])) if foreground[split] else 0.0
        logger.info("%s: %d crops, mean foreground fraction %.3f", split, counts[split], mean)
    if counts["val"] == 0 and validation_asked:
        logger.warning(
            "no validation crops: Stain_Evaluation will have to choose the epoch on the test split; give each "
            "training sequence more frames with truth, or pass --val_frames START-END"
        )
    if empty:
        logger.info("%d crops below --min_foreground were not written", empty)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter, allow_abbrev=False)
    parser.add_argument("input", type=Path, help="extracted CTC dataset folder (with 01/, 01_GT/, ...) or its .zip")
    parser.add_argument(
        "--output", type=Path, required=True, help="folder for trainA, valA, testA and their masks (*_GT)"
    )
    parser.add_argument("--truth", choices=tuple(TRUTH_FOLDERS), default="gold", help="GT/SEG (gold) or ST/SEG")
    parser.add_argument("--size", type=positive_int, default=128, help="crop size in pixels")
    parser.add_argument("--stride", type=positive_int, default=None, help="grid step (default: --size, no overlap)")
    parser.add_argument(
        "--min_foreground",
        type=float_in_range(0.0, 1.0, include_minimum=True),
        default=0.0,
        help="skip crops whose mask covers less than this fraction",
    )
    parser.add_argument("--low_percentile", type=nonnegative_float, default=1.0, help="maps to 0 (percent)")
    parser.add_argument("--high_percentile", type=nonnegative_float, default=99.8, help="maps to 255 (percent)")
    parser.add_argument(
        "--invert", action=argparse.BooleanOptionalAction, default=False, help="invert so nuclei are dark, as in H&E"
    )
    parser.add_argument("--split", choices=("sequence", "frames"), default="sequence", help="how to split, see above")
    parser.add_argument("--train_sequences", nargs="+", default=["01"], help="with --split sequence")
    parser.add_argument("--test_sequences", nargs="+", default=["02"], help="with --split sequence")
    parser.add_argument(
        "--test_frames", type=parse_frame_range, default=None, help="with --split frames: START-END, both included"
    )
    parser.add_argument(
        "--val_fraction",
        type=float_in_range(0.0, 1.0, include_minimum=True, include_maximum=False),
        default=0.2,
        help="share of each sequence's training frames (its last ones) that go to valA instead",
    )
    parser.add_argument(
        "--val_frames",
        type=parse_frame_range,
        default=None,
        help="training frames START-END that go to valA (instead of --val_fraction)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace what --output holds")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    setup_logging()
    args = build_parser().parse_args(argv)

    def job() -> None:
        counts = prepare(args)
        logger.info(
            "domain A in %s: %d train, %d val and %d test crops",
            args.output, counts["train"], counts["val"], counts["test"],
        )  # fmt: skip

    return run_script(job)


if __name__ == "__main__":
    sys.exit(main())
