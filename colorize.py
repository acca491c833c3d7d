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
An unreadable file is named, skipped and counted, and the rest is done (exit status 1 then).
"""

from __future__ import annotations

import argparse
import glob
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from data.image_io import IMAGE_EXTENSIONS, list_images, page_count, read_array, write_image
from data.intensity import prepare_source
from data.transforms import gray_to_tensor, normalize, to_uint8_image
from experiment import Experiment, add_model_arguments
from models.tiling import TiledColorizer
from util.arg_types import nonnegative_int, positive_int
from util.cli import run_script
from util.device import select_device
from util.errors import ImageReadError, OptionError
from util.log import setup_logging
from util.progress import progress_bar

logger = logging.getLogger("colorize")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    add_model_arguments(parser)
    parser.add_argument("--input", required=True, help="an image file, a folder, or a glob pattern (quote it)")
    parser.add_argument("--output", type=Path, required=True, help="folder for the colorized images")
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
    parser.add_argument("--low_percentile", type=float, default=None, help="override the training stretch")
    parser.add_argument("--high_percentile", type=float, default=None, help="override the training stretch")
    parser.add_argument("--invert", action=argparse.BooleanOptionalAction, default=None, help="override inversion")
    parser.add_argument("--preview", action="store_true", help="also write input | colorized side by side")
    parser.add_argument("--overwrite", action="store_true", help="replace output files of the same name")
    return parser


def find_inputs(pattern: str) -> list[Path]:
    """The image files named by a file, a folder (recursively) or a glob pattern."""
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
    return found


def read_pages(path: Path) -> Iterator[tuple[str, np.ndarray]]:
    """(output stem, pixels) of every image in ``path``, read one at a time: one for most files, one per
    page of a TIFF stack. Mosaics of any size are read (the reader's pixel limit is lifted)."""
    count = page_count(path)
    for index in range(count):
        stem = path.stem if count == 1 else f"{path.stem}_p{index:03d}"
        yield stem, read_array(path, page=index, max_pixels=None)


def colorize(args: argparse.Namespace) -> tuple[int, int]:
    """Colorize every input; return (images written, files that failed)."""
    device = select_device(args.gpu_ids)
    experiment = Experiment(args.checkpoints_dir, args.name)
    label = experiment.chosen_epoch(args.epoch, args.results_dir)
    generator, architecture = experiment.load_generator(label, device)
    if architecture["input_nc"] != 1:
        raise OptionError(
            f"colorize.py expects a gray-input model; {args.name} takes {architecture['input_nc']} channels"
        )
    overrides = {"low_percentile": args.low_percentile, "high_percentile": args.high_percentile, "invert": args.invert}
    normalization = experiment.training_normalization(overrides)
    explicit = any(value is not None for value in overrides.values())
    inputs = find_inputs(args.input)
    extension = "tif" if args.format == "tif" else "png"
    existing = [path for path in inputs if (args.output / f"{path.stem}.{extension}").exists()]
    if existing and not args.overwrite:
        raise OptionError(
            f"{len(existing)} output file(s) exist already in {args.output} (e.g. {existing[0].stem}.{extension}); "
            "choose another --output or pass --overwrite"
        )
    colorizer = TiledColorizer(
        generator,
        lambda tile: normalize(gray_to_tensor(tile))[None],
        lambda colours: to_uint8_image(torch.from_numpy(colours).permute(2, 0, 1)),
        tile=args.tile,
        overlap=min(args.overlap, args.tile - 1),
        batch_size=args.batch_size,
        global_statistics=args.norm_statistics == "image",
        device=device,
        autocast=device.type == "cuda",
    )
    logger.info("G_A of %s, epoch %s, on %s; %d input file(s)", args.name, label, device, len(inputs))
    written, failed = 0, []
    for path in progress_bar(inputs, desc="images", unit="file"):
        try:
            for stem, array in read_pages(path):
                if array.ndim == 3:
                    logger.warning("%s is a colour image; converted to gray (BT.601 luma) as the model expects", path)
                gray = prepare_source(array, normalization, path, always=explicit)
                colorize_page(stem, gray, colorizer, args, extension)
                written += 1
        except ImageReadError as error:
            logger.error("skipped: %s", error)
            failed.append(path)
    if failed:
        logger.warning(
            "%d file(s) could not be read and were skipped: %s", len(failed), ", ".join(map(str, failed[:10]))
        )
    logger.info("%d colorized image(s) in %s", written, args.output)
    return written, len(failed)


def colorize_page(
    stem: str, gray: np.ndarray, colorizer: TiledColorizer, args: argparse.Namespace, extension: str
) -> None:
    """Colorize one gray image and write it (and its preview) as ``<stem>.<extension>``."""
    target = args.output / f"{stem}.{extension}"
    if target.exists() and not args.overwrite:
        raise OptionError(f"{target} exists already; choose another --output or pass --overwrite")
    passes = 2 if args.norm_statistics == "image" else 1
    with progress_bar(total=passes * len(colorizer.tiles(*gray.shape)), desc=stem, unit="tile", leave=False) as bar:
        colour = colorizer(gray, progress=bar.update)
    write_image(target, colour)
    if args.preview:
        side_by_side = np.concatenate([np.repeat(gray[:, :, None], 3, axis=2), colour], axis=1)
        write_image(args.output / f"{stem}_preview.png", side_by_side)


def main(argv: Sequence[str] | None = None) -> int:
    setup_logging()
    args = build_parser().parse_args(argv)
    return run_script(lambda: 1 if colorize(args)[1] else 0)


if __name__ == "__main__":
    sys.exit(main())
