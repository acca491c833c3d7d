"""Colorize your own images of any size with a trained generator: tiled, seamless, 8/16-bit, TIFF stacks,
multichannel fluorescence, pyramidal OME-TIFF for slide viewers, several processes under torchrun.

    python colorize.py --name demo --epoch best --input my_frames/ --output colorized/
    python colorize.py --name demo_pretrained --input mosaic.ome.tif --channel DAPI --output out/ --format ome-tiff
    torchrun --standalone --nproc_per_node 4 colorize.py --name demo --input "mosaics/*.tif" --output out/

Applies ``G_A`` of ``checkpoints/<name>`` (``--epoch`` a number, ``latest``, or ``best``: the epoch
``evaluation/Stain_Evaluation.py`` chose) to every image of ``--input`` (a file, a folder or a
glob pattern). A name that ``--checkpoints_dir`` does not hold is looked up among the models bundled
with the project (``models/pretrained/``: ``demo_pretrained``, made by ``make pretrained``).
Images of any size are cut into overlapping tiles (``--tile``, ``--overlap``) blended without seams,
with instance-norm statistics of the whole image (see ``models/tiling.py``); the output has exactly
the input's size.

What a file holds is read from its header first (``data/image_layout.py``): each image of a TIFF
stack, z-stack or time series is colorized on its own (the log names the axes); a file of several
channels needs ``--channel`` (a number, or a name its OME metadata gives), and is refused without it
with the list of its channels; a colour image whose channels are equal is taken as gray.

Intensities are read as in training and test.py (:func:`data.intensity.prepare_source`): crops of
a prepared dataset as they are; raw frames, of any depth, by the percentile stretch and inversion
the training data recorded in their ``preparation.json`` (without one: 8-bit as is, other depths
by their own range). ``--low_percentile``/``--high_percentile``/``--invert`` override the rule and
apply it to every image.

``--format ome-tiff`` writes a pyramidal OME-TIFF (``data/ome_tiff.py``: 512-pixel tiles, deflate,
levels down to a thumbnail) streamed band by band, with the pixel size in micrometres read from the
input (OME, ImageJ or TIFF resolution tags) or given by ``--pixel_size_um``.

Outputs are named before any work starts: ``<name>.<format>`` (``<name>_p000``... for the images of a
stack, ``<name>_preview.png`` with ``--preview``) in the subfolder of ``--output`` that mirrors the
input's subfolder of ``--input`` (of the deepest folder holding every match, for a glob). Two inputs
that would share a name (``x.png`` and ``x.tif``) are told apart: the first in sorted order keeps it,
the other becomes ``x_2`` (logged). Outputs that exist already are refused, all at once, without
``--overwrite``. Under ``torchrun`` every process plans the same names and colorizes its own share of
the files, each on the GPU of its local rank; the first process reports for all.

An unreadable file, an image beyond ``--max_megapixels`` (default: the project's 179-megapixel
limit; the whole input image is held in memory), a page with NaN or infinite values, or a
multichannel file without a usable ``--channel`` is named, skipped and counted, and the rest is done
(exit status 1 then). An image of a single pixel is colorized as well (the generator pads it up to
the size it needs and crops its output back). An ``--output`` that cannot be written is refused
before the model is loaded; a disk that fills up mid-run ends it in one line saying how many images
were written (the partial file is removed).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import glob
import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.contrib.logging import logging_redirect_tqdm

from data.image_io import IMAGE_EXTENSIONS, MAX_PIXELS, list_images, pixel_limit, write_image
from data.image_layout import ImageLayout, PixelSize, read_layout, read_plane
from data.intensity import IntensityNormalization, prepare_source, recorded_normalization
from data.ome_tiff import pyramid_shapes, shrink, write_ome_pyramid
from data.transforms import gray_to_tensor, normalize, to_uint8_image
from experiment import Experiment, add_model_arguments
from models.tiling import TiledColorizer
from util import distributed
from util.arg_types import nonnegative_float, nonnegative_int, positive_float, positive_int
from util.cli import HelpFormatter, exit_quickly, run_script
from util.device import add_compute_threads_argument, configure_compute_threads, select_device
from util.disk import describe_os_error, is_machine_error, require_writable_folder, writing
from util.distributed import DistributedContext, context_from_environment, processes_per_machine
from util.errors import CellCycleGANError, ImageReadError, ImageTooLargeError, OptionError, OutputError
from util.log import setup_logging
from util.progress import progress_bar

logger = logging.getLogger("colorize")

#: Renamed inputs told one by one; beyond this many, one line counts the rest.
RENAMES_LOGGED = 20
#: Trained models that come with the project (``make pretrained`` makes them). ``--name`` finds one here
#: when ``--checkpoints_dir`` holds no experiment of that name.
BUNDLED_MODELS = Path(__file__).resolve().parent / "models" / "pretrained"
#: The record a bundled model carries (what it is, what it was trained on, its scores).
BUNDLE_RECORD = "model.json"
#: Output file extension of each --format.
EXTENSIONS = {"png": "png", "tif": "tif", "ome-tiff": "ome.tif"}


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
    parser.add_argument(
        "--format",
        choices=tuple(EXTENSIONS),
        default="png",
        help="output file format; ome-tiff: a tiled pyramidal OME-TIFF with the pixel size, for QuPath, napari "
        "and OpenSlide (written as .ome.tif, streamed: the colorized image is never held whole)",
    )
    parser.add_argument(
        "--channel",
        default=None,
        help="the channel that shows the nuclei in multichannel files: its number (from 0) or the name the "
        "OME metadata gives it (red, green, blue for colour images); required for files of several channels",
    )
    parser.add_argument(
        "--pixel_size_um",
        type=positive_float,
        default=None,
        help="the physical size of a pixel in micrometres, written into TIFF and OME-TIFF outputs; replaces what "
        "the input files say (default: their OME PhysicalSizeX/Y, ImageJ unit or TIFF resolution tags)",
    )
    parser.add_argument("--tile", type=positive_int, default=512, help="tile size in pixels")
    parser.add_argument("--overlap", type=nonnegative_int, default=64, help="overlap of neighbouring tiles")
    parser.add_argument("--batch_size", type=positive_int, default=4, help="tiles per forward pass")
    parser.add_argument(
        "--norm_statistics",
        choices=("image", "tile"),
        default="image",
        help="instance-norm statistics of the whole image (no seams) or of each tile (as plain tiling)",
    )
    parser.add_argument(
        "--gpu_ids", default="auto", help="auto, -1 for the CPU, or a GPU index (under torchrun: each local rank's)"
    )
    add_compute_threads_argument(parser, workers=False)
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
        "a corrupt header that declares a huge size; 0: no limit). The whole input image is held in memory, and "
        "for png and tif its colorized output too: a 100-megapixel 16-bit frame took 1.74 GB as png, 1.53 GB as "
        "ome-tiff",
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
    #: How many gray images the file holds (pages of a stack, planes of a z-stack or time series).
    pages: int
    #: What the file holds (from its header) and the channel to colorize (None: the file is gray).
    layout: ImageLayout | None = None
    channel: int | None = None

    def page_stem(self, index: int) -> str:
        """The output name of page ``index``: the file's stem, or ``<stem>_p000``... for a TIFF stack."""
        return self.stem if self.pages == 1 else f"{self.stem}_p{index:03d}"

    @property
    def pixels(self) -> int:
        """The pixels to colorize, for sharing the work out: every image of the file."""
        return self.pages * (self.layout.height * self.layout.width if self.layout else 1)


def output_files(folder: Path, stem: str, pages: int, extension: str, preview: bool) -> list[Path]:
    """The files, relative to ``--output``, that an input of ``pages`` pages writes under ``stem``."""
    job = Job(Path(), folder, stem, pages)
    stems = [job.page_stem(index) for index in range(pages)]
    names = [f"{name}.{extension}" for name in stems] + ([f"{name}_preview.png" for name in stems] if preview else [])
    return [folder / name for name in names]


def input_stem(path: Path) -> str:
    """An input's name without its extension, ``.ome.tif`` counted as one (``x.ome.tif`` -> ``x``)."""
    name = path.name
    for ending in (".ome.tif", ".ome.tiff"):
        if name.lower().endswith(ending) and len(name) > len(ending):
            return name[: -len(ending)]
    return path.stem


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
        files = output_files(folder, input_stem(path), pages, extension, preview)
        if taken(files) is None:
            claim(files, path)
            jobs.append(Job(path, folder, input_stem(path), pages))
        else:
            jobs.append(None)
    renamed = 0
    for index, (path, folder, pages) in enumerate(inputs):
        if jobs[index] is not None:
            continue
        own = output_files(folder, input_stem(path), pages, extension, preview)
        owner = taken(own)
        number = 2
        while taken(output_files(folder, f"{input_stem(path)}_{number}", pages, extension, preview)) is not None:
            number += 1
        stem = f"{input_stem(path)}_{number}"
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


def describe_file(job: Job, extension: str) -> None:
    """Say, for a file of several images or a chosen channel, which axis is which and what is colorized."""
    layout = job.layout
    if layout is None or (layout.images == 1 and job.channel is None):
        return
    channel = f"channel {layout.describe_channels().split(', ')[job.channel]}" if job.channel is not None else ""
    if layout.images == 1:
        logger.info("%s: %s, %s; %s is colorized", job.path, layout.kind, layout.describe_axes(), channel)
        return
    order = f" in {', '.join(layout.axes)} order" if len(layout.axes) > 1 else ""
    logger.info(
        "%s: %s, %s; %d images%s colorized as %s.%s ... %s.%s%s",
        job.path,
        layout.kind,
        layout.describe_axes(),
        layout.images,
        f" ({channel} of each)" if channel else "",
        job.page_stem(0),
        extension,
        job.page_stem(layout.images - 1),
        extension,
        order,
    )


def plan_run(args: argparse.Namespace, inputs: Sequence[Path], extension: str) -> tuple[list[Job], list[str]]:
    """Every input's output names, checked against ``--output`` once, before any work: (jobs, inputs that failed).

    A file whose header cannot be read, whose OME metadata disagrees with its pixels, or whose channel
    ``--channel`` cannot pick (missing for several channels, out of range, an unknown name) is skipped
    here. Outputs that exist already are refused together without ``--overwrite``.
    """
    failed: list[str] = []
    counted: list[tuple[Path, Path, int]] = []
    chosen: dict[Path, tuple[ImageLayout, int | None]] = {}
    root = input_root(args.input, inputs)
    for path in inputs:
        try:
            layout = read_layout(path)
            chosen[path] = (layout, layout.channel_index(args.channel))
        except ImageReadError as error:
            logger.error("skipped: %s", error)
            failed.append(str(path))
            continue
        counted.append((path, path.parent.absolute().relative_to(root), layout.images))
    jobs = [
        dataclasses.replace(job, layout=chosen[job.path][0], channel=chosen[job.path][1])
        for job in plan_outputs(counted, extension, args.preview)
    ]
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
    for job in jobs:
        describe_file(job, extension)
    if args.format != "png":
        describe_pixel_sizes(jobs, args.pixel_size_um)
    elif args.pixel_size_um is not None:
        logger.warning("--pixel_size_um is written into tif and ome-tiff outputs; a PNG carries none")
    return jobs, failed


def pixel_size_of(job: Job, given: float | None) -> PixelSize | None:
    """The pixel size written with ``job``'s outputs: ``--pixel_size_um``, else the input's, else None."""
    if given is not None:
        return PixelSize(given, given, "--pixel_size_um")
    return job.layout.pixel_size if job.layout is not None else None


def describe_pixel_sizes(jobs: Sequence[Job], given: float | None) -> None:
    """Say where the pixel size of the outputs comes from, and which files have none."""
    if given is not None:
        differing = [
            job for job in jobs if job.layout and job.layout.pixel_size and job.layout.pixel_size.x_um != given
        ]
        for job in differing[:RENAMES_LOGGED]:
            logger.info("%s says %s; --pixel_size_um %g um is written instead", job.path, job.layout.pixel_size, given)
        return
    for job in jobs:
        if job.layout is not None and job.layout.pixel_size is not None:
            logger.info("%s: pixel size %s", job.path, job.layout.pixel_size)
    missing = [job for job in jobs if job.layout is None or job.layout.pixel_size is None]
    for job in missing[:RENAMES_LOGGED]:
        note = f" ({job.layout.pixel_size_note})" if job.layout and job.layout.pixel_size_note else ""
        logger.info(
            "%s records no pixel size%s: its output carries none (viewers show pixels, no scale bar); "
            "give one with --pixel_size_um",
            job.path,
            note,
        )
    if len(missing) > RENAMES_LOGGED:
        logger.info("%d more input file(s) without a pixel size", len(missing) - RENAMES_LOGGED)


def read_gray(
    job: Job, index: int, max_pixels: int | None, normalization: IntensityNormalization | None, explicit: bool
) -> np.ndarray:
    """Image ``index`` of ``job``'s file (its channel ``job.channel``) as the (H, W) uint8 gray image the
    generator reads.

    Raises :class:`ImageReadError` for a file that cannot be read, an image above ``max_pixels``,
    differing colour channels without ``--channel`` and NaN or infinite pixels: the image is skipped
    and counted, the others are done.
    """
    try:
        array = read_plane(job.layout, index, job.channel, max_pixels)
    except ImageTooLargeError as error:
        raise ImageReadError(
            f"{error}. If the image is real, raise --max_megapixels (now {max_pixels / 1e6:g}; 0: no limit): "
            "the whole image is held in memory"
        ) from error
    return prepare_source(array, normalization, job.path, always=explicit)


def find_model(args: argparse.Namespace) -> tuple[Experiment, Path, bool]:
    """The experiment ``--name`` names, where its evaluation's choice is (for ``--epoch best``), and whether it is
    a bundled model: ``--checkpoints_dir`` first, then :data:`BUNDLED_MODELS`."""
    own = Experiment(args.checkpoints_dir, args.name)
    bundled = Experiment(BUNDLED_MODELS, args.name)
    if own.has_checkpoints() or not bundled.has_checkpoints():
        if own.has_checkpoints() and bundled.has_checkpoints():
            logger.info(
                "%s shadows the bundled model of that name (%s); give another --checkpoints_dir to use the bundle",
                own.directory,
                bundled.directory,
            )
        return own, args.results_dir, False
    record = bundled.directory / BUNDLE_RECORD
    summary = ""
    if record.is_file():
        with contextlib.suppress(OSError, ValueError, AttributeError):
            summary = f" ({json.loads(record.read_text(encoding='utf-8')).get('summary', '')})"
    logger.info(
        "no experiment %r in --checkpoints_dir %s: using the bundled model %s%s; see its README.md",
        args.name,
        args.checkpoints_dir,
        bundled.directory,
        summary,
    )
    return bundled, BUNDLED_MODELS, True


def model_normalization(
    experiment: Experiment, bundled: bool, overrides: dict[str, float | bool | None]
) -> IntensityNormalization | None:
    """The intensity rule of the model's training data, updated by the flags given; a bundled model carries
    its rule in its own ``preparation.json`` (its training dataroot need not exist here)."""
    if not bundled:
        return experiment.training_normalization(overrides)
    recorded = recorded_normalization(experiment.directory)
    given = {key: value for key, value in overrides.items() if value is not None}
    if recorded is None and not given:
        return None
    return IntensityNormalization.from_dict({**(recorded.to_dict() if recorded else {}), **given})


def share_of(jobs: Sequence[Job], context: DistributedContext) -> list[Job]:
    """This process's jobs: every file once, to one process. The largest files are dealt first, each to the
    process with the fewest pixels so far (ties: the lowest rank), so equal files go round in turn and a
    large mosaic does not leave one process working alone. Every process computes the same deal."""
    if not context.is_distributed:
        return list(jobs)
    loads = [0] * context.world_size
    owners = [0] * len(jobs)
    for index in sorted(range(len(jobs)), key=lambda index: (-jobs[index].pixels, index)):
        owner = min(range(context.world_size), key=lambda rank: (loads[rank], rank))
        loads[owner] += jobs[index].pixels
        owners[index] = owner
    return [job for job, owner in zip(jobs, owners, strict=True) if owner == context.rank]


@contextlib.contextmanager
def spoken_by_main(context: DistributedContext) -> Iterator[None]:
    """Under torchrun every process plans the same work: only the first one says so."""
    if context.is_main:
        yield
        return
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        root.setLevel(level)


def colorize(args: argparse.Namespace) -> tuple[int, int]:
    """Colorize every input (this process's share under torchrun); return (images written, images or files
    that failed), counted over all processes."""
    context = context_from_environment()
    if not context.is_main:
        logging.getLogger().setLevel(logging.WARNING)
    max_pixels = pixel_limit(args.max_megapixels)
    device = select_device(args.gpu_ids, context.local_rank)
    with spoken_by_main(context):
        configure_compute_threads(args.compute_threads, loader_workers=0, processes_per_machine=processes_per_machine())
        experiment, results_dir, bundled = find_model(args)
    # A bundled model holds one numbered epoch, which is its latest.
    epochs = experiment.saved_epochs() if bundled else []
    requested = str(epochs[-1]) if epochs and args.epoch == "latest" else args.epoch
    label = experiment.chosen_epoch(requested, results_dir)
    inputs = find_inputs(args.input, args.output)
    experiment.require_checkpoint(label)  # a wrong epoch is told before the output folder is made
    require_writable_folder(args.output, "--output")
    distributed.init_process_group(context, device)
    try:
        return colorize_share(args, context, device, experiment, label, bundled, inputs, max_pixels)
    finally:
        distributed.destroy_process_group()


def colorize_share(
    args: argparse.Namespace,
    context: DistributedContext,
    device: torch.device,
    experiment: Experiment,
    label: str,
    bundled: bool,
    inputs: Sequence[Path],
    max_pixels: int | None,
) -> tuple[int, int]:
    """Plan every output (in every process alike), colorize this process's share, and count over all."""
    extension = EXTENSIONS[args.format]
    planning_error: CellCycleGANError | None = None
    jobs: list[Job] = []
    failed: list[str] = []
    with spoken_by_main(context):
        try:
            jobs, failed = plan_run(args, inputs, extension)
        except CellCycleGANError as error:
            planning_error = error
    # No process writes before every process has checked that no output exists yet.
    if not distributed.all_processes_agree(planning_error is None, context, device):
        raise planning_error or OptionError("another process could not plan the work; see its message")
    if not context.is_main:
        failed = []  # the files skipped in planning are counted once, by the first process

    generator, architecture = experiment.load_generator(label, device)
    if architecture["input_nc"] != 1:
        raise OptionError(
            f"colorize.py expects a gray-input model; {args.name} takes {architecture['input_nc']} channels"
        )
    overrides = {"low_percentile": args.low_percentile, "high_percentile": args.high_percentile, "invert": args.invert}
    normalization = model_normalization(experiment, bundled, overrides)
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
    mine = share_of(jobs, context)
    total = sum(job.pages for job in mine)
    logger.info(
        "G_A of %s, epoch %s, on %s; %d input file(s), %d image(s)%s",
        args.name,
        label,
        device,
        len(inputs),
        sum(job.pages for job in jobs),
        f"; {context.world_size} processes, each colorizing its share of the files" if context.is_distributed else "",
    )
    written = 0
    stopped: CellCycleGANError | None = None
    where = f" by process {context.rank} of {context.world_size}" if context.is_distributed else ""
    # Log lines printed above the progress bars, never into them; the bars closed however the loop ends.
    with (
        logging_redirect_tqdm(),
        progress_bar(mine, desc="images", unit="file", disable=not context.is_main) as bar,
    ):
        try:
            for job in bar:
                for index in range(job.pages):
                    name = str(job.path) if job.pages == 1 else f"{job.path} page {index}"
                    try:
                        gray = read_gray(job, index, max_pixels, normalization, explicit)
                    except ImageReadError as error:
                        logger.error("skipped%s: %s", "" if job.pages == 1 else f" page {index}", error)
                        failed.append(name)
                        continue
                    kept = (
                        f"The partial file was removed; {written} of {total} colorized image(s){where} were written "
                        f"to {args.output} and are complete. Free some space or choose another --output, and run "
                        "again (--overwrite redoes them)"
                    )
                    target = args.output / job.folder / job.page_stem(index)
                    colorize_page(
                        target, gray, colorizer, args, extension, kept, pixel_size_of(job, args.pixel_size_um), context
                    )
                    written += 1
        except CellCycleGANError as error:  # a full disk: this process stops; the others finish their share
            stopped = error
        except OSError as error:
            if not is_machine_error(error):
                raise
            stopped = OutputError(f"cannot write {error.filename or args.output}: {describe_os_error(error)}")
    if failed:
        shown = ", ".join(failed[:10]) + (", ..." if len(failed) > 10 else "")
        logger.warning("%d input image(s) could not be colorized%s and were skipped: %s", len(failed), where, shown)
    counts = torch.tensor([written, len(failed), int(stopped is not None)], dtype=torch.int64, device=device)
    all_written, all_failed, all_stopped = (int(value) for value in distributed.all_reduce_sum(counts, context))
    if context.is_distributed:
        logger.info(
            "%d colorized image(s) in %s, by %d processes%s%s",
            all_written,
            args.output,
            context.world_size,
            f"; {all_failed} input image(s) could not be colorized (named above)" if all_failed else "",
            f"; {all_stopped} process(es) stopped early (see their errors)" if all_stopped else "",
        )
        distributed.barrier(context)  # the report is out before any process leaves
    else:
        logger.info("%d colorized image(s) in %s", all_written, args.output)
    if stopped is not None:
        raise stopped
    return all_written, all_failed + all_stopped


def colorize_page(
    target: Path,
    gray: np.ndarray,
    colorizer: TiledColorizer,
    args: argparse.Namespace,
    extension: str,
    kept: str,
    pixel_size: PixelSize | None = None,
    context: DistributedContext | None = None,
) -> None:
    """Colorize one gray image and write it as ``<target>.<extension>`` (and its preview).

    An OME-TIFF is written as the colorizer finishes its bands (the colorized image is never whole in
    memory; its preview is as small as the pyramid's thumbnail). A full disk or a read-only file system
    ends the run in one line naming the file and ``kept`` (what was written); no partial file is left.
    """
    passes = 2 if args.norm_statistics == "image" else 1
    output = target.with_name(f"{target.name}.{extension}")
    quiet = context is not None and not context.is_main
    with progress_bar(
        total=passes * len(colorizer.tiles(*gray.shape)), desc=target.name, unit="tile", leave=False, disable=quiet
    ) as bar:
        if args.format == "ome-tiff":
            with writing(str(output), kept):
                shown = write_ome_pyramid(output, *gray.shape, colorizer.bands(gray, progress=bar.update), pixel_size)
            levels = len(pyramid_shapes(*gray.shape))
            logger.debug("%s: %d pyramid level(s), the smallest %dx%d", output, levels, shown.shape[1], shown.shape[0])
        else:
            levels = None
            shown = colorizer(gray, progress=bar.update)
            with writing(str(output), kept):
                calibration = (pixel_size.x_um, pixel_size.y_um) if pixel_size is not None else None
                write_image(output, shown, pixel_size_um=calibration)
    if args.preview:
        small_gray = gray[:, :, None] if levels is None else shrink(gray[:, :, None], levels - 1)
        preview_path = target.with_name(f"{target.name}_preview.png")
        with writing(str(preview_path), kept):
            write_image(preview_path, np.concatenate([np.repeat(small_gray, 3, axis=2), shown], axis=1))


def main(argv: Sequence[str] | None = None) -> int:
    setup_logging()
    args = build_parser().parse_args(argv)
    return run_script(lambda: 1 if colorize(args)[1] else 0)


if __name__ == "__main__":
    exit_quickly(main())
