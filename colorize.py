"""Colorize your own images of any size with a trained generator: tiled, seamless, 8/16-bit, TIFF stacks.

    python colorize.py --name demo --epoch best --input my_frames/ --output colorized/
    python colorize.py --name demo --input "stack_*.tif" --output colorized/ --format tif --preview

Applies ``G_A`` of ``checkpoints/<name>`` (``--epoch`` a number, ``latest``, or ``best``: the epoch
``evaluation/Stain_Evaluation.py`` chose) to every image of ``--input`` (a file, a folder or a
glob pattern); each page of a multi-page TIFF is an image of its own. Images of any size are cut
into overlapping tiles (``--tile``, ``--overlap``) blended without seams, with instance-norm
statistics of the whole image (see ``models/tiling.py``); the output has exactly the input's size.

Intensities are read as in training and test.py (:func:`data.intensity.prepare_source`): crops of
a prepared dataset as they are; raw frames, of any depth, by the percentile stretch and inversion
the training data recorded in their ``preparation.json`` (without one: 8-bit as is, other depths
by their own range). ``--low_percentile``/``--high_percentile``/``--invert`` override the rule and
apply it to every image.

Outputs are named before any work starts: ``<name>.<format>`` (``<name>_p000``... for the pages of a
stack, ``<name>_preview.png`` with ``--preview``) in the subfolder of ``--output`` that mirrors the
input's subfolder of ``--input`` (of the deepest folder holding every match, for a glob). Two inputs
that would share a name (``x.png`` and ``x.tif``) are told apart: the first in sorted order keeps it,
the other becomes ``x_2`` (logged). Outputs that exist already are refused, all at once, without
``--overwrite``.

An unreadable file, an image beyond ``--max_megapixels`` (default: the project's 179-megapixel
limit; the whole image is held in memory) or a page with NaN or infinite values is named, skipped
and counted, and the rest is done (exit status 1 then). An image of a single pixel is colorized as
well (the generator pads it up to the size it needs and crops its output back). An ``--output``
that cannot be written is refused before the model is loaded; a disk that fills up mid-run ends
it in one line saying how many images were written (no partial file is left).
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.contrib.logging import logging_redirect_tqdm

from data.image_io import (
    IMAGE_EXTENSIONS,
    MAX_PIXELS,
    list_images,
    page_count,
    pixel_limit,
    read_array,
    write_image,
)
from data.intensity import IntensityNormalization, prepare_source
from data.transforms import gray_to_tensor, normalize, to_uint8_image
from experiment import Experiment, add_model_arguments
from models.tiling import TiledColorizer
from util.arg_types import nonnegative_float, nonnegative_int, positive_int
from util.cli import HelpFormatter, run_script
from util.device import configure_compute_threads, select_device
from util.disk import require_writable_folder, writing
from util.errors import ImageReadError, ImageTooLargeError, OptionError
from util.log import setup_logging
from util.progress import progress_bar

logger = logging.getLogger("colorize")

#: Renamed inputs told one by one; beyond this many, one line counts the rest.
RENAMES_LOGGED = 20


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter, allow_abbrev=False)
    add_model_arguments(parser)
    parser.add_argument("--input", required=True, help="an image file, a folder, or a glob pattern (quote it)")
    parser.add_argument(
        "--output",
        type=Path,
        required=True,
        help="folder for the colorized images (subfolders of --input are mirrored)",
    )
    parser.add_argument("--format", choices=("png", "tif"), default="png", help="output file format")
    parser.add_argument("--tile", type=positive_int, default=512, help="tile size in pixels")
    parser.add_argument("--overlap", type=nonnegative_int, default=64, help="overlap of neighbouring tiles")
    parser.add_argument("--batch_size", type=positive_int, default=4, help="tiles per forward pass")
    parser.add_argument(
        "--norm_statistics",
        choices=("image", "tile"),
        default="image",
        help="instance-norm statistics of the whole image (no seams) or of each tile (as plain tiling)",
    )
    parser.add_argument("--gpu_ids", default="auto", help="auto, -1 for the CPU, or a GPU index")
    parser.add_argument(
        "--compute_threads",
        type=positive_int,
        default=None,
        help="CPU threads of PyTorch's operations (default: OMP_NUM_THREADS if set, else the CPUs this process may use)",
    )
    parser.add_argument("--low_percentile", type=float, default=None, help="override the training stretch")
    parser.add_argument("--high_percentile", type=float, default=None, help="override the training stretch")
    parser.add_argument("--invert", action=argparse.BooleanOptionalAction, default=None, help="override inversion")
    parser.add_argument("--preview", action="store_true", help="also write input | colorized side by side")
    parser.add_argument("--overwrite", action="store_true", help="replace output files of the same name")
    parser.add_argument(
        "--max_megapixels",
        type=nonnegative_float,
        default=None,
        help=f"skip images larger than this (default {MAX_PIXELS / 1e6:.0f}, the project's limit, which also stops "
        "a corrupt header that declares a huge size; 0: no limit). The whole image and its colorized output are "
        "held in memory: a 100-megapixel 16-bit frame took 1.65 GB",
    )
    return parser


def find_inputs(pattern: str, output: Path) -> list[Path]:
    """The image files named by a file, a folder (recursively) or a glob pattern, except those under
    ``output`` (colorized images of an earlier run are not inputs)."""
    path = Path(pattern)
    if path.is_dir():
        found = list_images(path)
    elif path.is_file():
        found = [path]
    else:
        found = sorted(Path(match) for match in glob.glob(pattern, recursive=True))
        found = [match for match in found if match.is_file() and match.suffix.lower() in IMAGE_EXTENSIONS]
    if not found:
        raise OptionError(f"--input {pattern} names no image file (PNG, JPEG, BMP or TIFF)")
    inputs = [match for match in found if not match.resolve().is_relative_to(output.resolve())]
    if not inputs:
        raise OptionError(f"every image of --input {pattern} lies in --output {output}; choose another --output")
    if len(inputs) < len(found):
        logger.info("%d image(s) in --output %s are not taken as inputs", len(found) - len(inputs), output)
    return inputs


def input_root(pattern: str, inputs: Sequence[Path]) -> Path:
    """The folder whose subfolders the outputs mirror: ``--input`` if it is a folder, else the deepest
    folder holding every input (a single file's own folder)."""
    if Path(pattern).is_dir():
        return Path(pattern).absolute()
    return Path(os.path.commonpath([path.parent.absolute() for path in inputs]))


@dataclass(frozen=True)
class Job:
    """One input file and the names of its outputs, all fixed before any image is colorized."""

    path: Path
    #: The output subfolder, relative to ``--output``: the input's subfolder, relative to :func:`input_root`.
    folder: Path
    #: The file's output name without extension: its own stem, or ``<stem>_2``, ``<stem>_3``... on a collision.
    stem: str
    pages: int

    def page_stem(self, index: int) -> str:
        """The output name of page ``index``: the file's stem, or ``<stem>_p000``... for a TIFF stack."""
        return self.stem if self.pages == 1 else f"{self.stem}_p{index:03d}"


def output_files(folder: Path, stem: str, pages: int, extension: str, preview: bool) -> list[Path]:
    """The files, relative to ``--output``, that an input of ``pages`` pages writes under ``stem``."""
    job = Job(Path(), folder, stem, pages)
    stems = [job.page_stem(index) for index in range(pages)]
    names = [f"{name}.{extension}" for name in stems] + ([f"{name}_preview.png" for name in stems] if preview else [])
    return [folder / name for name in names]


def plan_outputs(inputs: Sequence[tuple[Path, Path, int]], extension: str, preview: bool) -> list[Job]:
    """Give every input, (path, output subfolder, pages) in input order, output names no other input has.

    Names are compared case-insensitively (as macOS and Windows file systems do). An input keeps its
    own stem if none of its outputs (pages and previews included) is taken by an earlier input;
    otherwise it gets the first free ``<stem>_2``, ``<stem>_3``... (the rule of test.py's
    ``unique_stem``), after every input that could keep its own name has kept it. So the names
    depend on the inputs only, never on what ``--output`` holds, and a rerun writes the same files.
    """
    owners: dict[str, Path] = {}  # a casefolded output path -> the input that writes it

    def taken(files: list[Path]) -> Path | None:
        return next((owners[key] for key in (file.as_posix().casefold() for file in files) if key in owners), None)

    def claim(files: list[Path], path: Path) -> None:
        owners.update((file.as_posix().casefold(), path) for file in files)

    jobs: list[Job | None] = []
    for path, folder, pages in inputs:
        files = output_files(folder, path.stem, pages, extension, preview)
        if taken(files) is None:
            claim(files, path)
            jobs.append(Job(path, folder, path.stem, pages))
        else:
            jobs.append(None)
    renamed = 0
    for index, (path, folder, pages) in enumerate(inputs):
        if jobs[index] is not None:
            continue
        own = output_files(folder, path.stem, pages, extension, preview)
        owner = taken(own)
        number = 2
        while taken(output_files(folder, f"{path.stem}_{number}", pages, extension, preview)) is not None:
            number += 1
        stem = f"{path.stem}_{number}"
        files = output_files(folder, stem, pages, extension, preview)
        claim(files, path)
        jobs[index] = Job(path, folder, stem, pages)
        renamed += 1
        if renamed <= RENAMES_LOGGED:
            logger.warning(
                "%s is written as %s, since %s is the output of %s", path, files[0].as_posix(), own[0].as_posix(), owner
            )
    if renamed > RENAMES_LOGGED:
        logger.warning("%d more input(s) renamed likewise (%d in all)", renamed - RENAMES_LOGGED, renamed)
    return [job for job in jobs if job is not None]


def read_page(path: Path, index: int, max_pixels: int | None) -> np.ndarray:
    """Page ``index`` of ``path``; a header beyond ``max_pixels`` is refused before decoding, saying how to lift it."""
    try:
        return read_array(path, page=index, max_pixels=max_pixels)
    except ImageTooLargeError as error:
        raise ImageReadError(
            f"{error}. If the image is real, raise --max_megapixels (now {max_pixels / 1e6:g}; 0: no limit): "
            "the whole image and its colorized output are held in memory"
        ) from error


def plan_run(args: argparse.Namespace, inputs: Sequence[Path], extension: str) -> tuple[list[Job], list[str]]:
    """Every input's output names, checked against ``--output`` once, before any work: (jobs, inputs that failed).

    A file whose pages cannot be counted is skipped here. Outputs that exist already are refused
    together without ``--overwrite``.
    """
    failed: list[str] = []
    counted: list[tuple[Path, Path, int]] = []
    root = input_root(args.input, inputs)
    for path in inputs:
        try:
            pages = page_count(path)
            if pages == 0:
                raise ImageReadError(f"TIFF file {path} holds no image pages")
        except ImageReadError as error:
            logger.error("skipped: %s", error)
            failed.append(str(path))
            continue
        counted.append((path, path.parent.absolute().relative_to(root), pages))
    jobs = plan_outputs(counted, extension, args.preview)
    planned = [
        args.output / file
        for job in jobs
        for file in output_files(job.folder, job.stem, job.pages, extension, args.preview)
    ]
    existing = [file for file in planned if file.exists()]
    if existing and not args.overwrite:
        raise OptionError(
            f"{len(existing)} output file(s) exist already in {args.output} (e.g. {existing[0]}); "
            "choose another --output or pass --overwrite"
        )
    return jobs, failed


def read_gray(
    path: Path,
    index: int,
    name: str,
    max_pixels: int | None,
    normalization: IntensityNormalization | None,
    explicit: bool,
) -> np.ndarray:
    """Page ``index`` of ``path`` (``name`` in messages) as the (H, W) uint8 gray image the generator reads.

    Raises :class:`ImageReadError` for a file that cannot be read, an image above ``max_pixels`` and
    NaN or infinite pixels: the page is skipped and counted, the others are done.
    """
    array = read_page(path, index, max_pixels)
    if array.ndim == 3:
        logger.warning("%s is a color image; converted to gray (BT.601 luma) as the model expects", name)
    return prepare_source(array, normalization, path, always=explicit)


def colorize(args: argparse.Namespace) -> tuple[int, int]:
    """Colorize every input; return (images written, images or files that failed)."""
    max_pixels = pixel_limit(args.max_megapixels)
    device = select_device(args.gpu_ids)
    configure_compute_threads(args.compute_threads, loader_workers=0)
    experiment = Experiment(args.checkpoints_dir, args.name)
    label = experiment.chosen_epoch(args.epoch, args.results_dir)
    inputs = find_inputs(args.input, args.output)
    experiment.require_checkpoint(label)  # a wrong epoch is told before the output folder is made
    require_writable_folder(args.output, "--output")
    extension = "tif" if args.format == "tif" else "png"

    jobs, failed = plan_run(args, inputs, extension)

    generator, architecture = experiment.load_generator(label, device)
    if architecture["input_nc"] != 1:
        raise OptionError(
            f"colorize.py expects a gray-input model; {args.name} takes {architecture['input_nc']} channels"
        )
    overrides = {"low_percentile": args.low_percentile, "high_percentile": args.high_percentile, "invert": args.invert}
    normalization = experiment.training_normalization(overrides)
    explicit = any(value is not None for value in overrides.values())
    colorizer = TiledColorizer(
        generator,
        lambda tile: normalize(gray_to_tensor(tile))[None],
        lambda colors: to_uint8_image(torch.from_numpy(colors).permute(2, 0, 1)),
        tile=args.tile,
        overlap=min(args.overlap, args.tile - 1),
        batch_size=args.batch_size,
        global_statistics=args.norm_statistics == "image",
        device=device,
        autocast=device.type == "cuda",
    )
    total = sum(job.pages for job in jobs)
    logger.info(
        "G_A of %s, epoch %s, on %s; %d input file(s), %d image(s)", args.name, label, device, len(inputs), total
    )
    written = 0
    # Log lines printed above the progress bars, never into them; the bars closed however the loop ends.
    with logging_redirect_tqdm(), progress_bar(jobs, desc="images", unit="file") as bar:
        for job in bar:
            for index in range(job.pages):
                name = str(job.path) if job.pages == 1 else f"{job.path} page {index}"
                try:
                    gray = read_gray(job.path, index, name, max_pixels, normalization, explicit)
                except ImageReadError as error:
                    logger.error("skipped%s: %s", "" if job.pages == 1 else f" page {index}", error)
                    failed.append(name)
                    continue
                kept = (
                    f"{written} of {total} colorized image(s) were written to {args.output} and are complete (no "
                    "partial file is left); free some space or choose another --output, and run again (--overwrite "
                    "redoes them)"
                )
                target = args.output / job.folder / job.page_stem(index)
                colorize_page(target, gray, colorizer, args, extension, kept)
                written += 1
    if failed:
        shown = ", ".join(failed[:10]) + (", ..." if len(failed) > 10 else "")
        logger.warning("%d input image(s) could not be colorized and were skipped: %s", len(failed), shown)
    logger.info("%d colorized image(s) in %s", written, args.output)
    return written, len(failed)


def colorize_page(
    target: Path, gray: np.ndarray, colorizer: TiledColorizer, args: argparse.Namespace, extension: str, kept: str
) -> None:
    """Colorize one gray image and write it as ``<target>.<extension>`` (and its preview).

    A full disk or a read-only file system ends the run in one line naming the file and ``kept``
    (what was written); the atomic writer leaves no partial file.
    """
    passes = 2 if args.norm_statistics == "image" else 1
    with progress_bar(
        total=passes * len(colorizer.tiles(*gray.shape)), desc=target.name, unit="tile", leave=False
    ) as bar:
        color = colorizer(gray, progress=bar.update)
    output = target.with_name(f"{target.name}.{extension}")
    with writing(str(output), kept):
        write_image(output, color)
    if args.preview:
        preview = target.with_name(f"{target.name}_preview.png")
        side_by_side = np.concatenate([np.repeat(gray[:, :, None], 3, axis=2), color], axis=1)
        with writing(str(preview), kept):
            write_image(preview, side_by_side)


def main(argv: Sequence[str] | None = None) -> int:
    setup_logging()
    args = build_parser().parse_args(argv)
    return run_script(lambda: 1 if colorize(args)[1] else 0)


if __name__ == "__main__":
    sys.exit(main())
