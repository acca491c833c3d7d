"""Cut a whole-slide H&E image into domain-B tiles: tissue only, at a chosen resolution.

    python scripts/prepare_slide.py SLIDE --output datasets/he_tiles [--level N | --mpp X | --magnification M]
        [--size 128] [--min_tissue 0.5] [--max_tiles 2000] [--test_fraction 0.2] [--val_fraction 0.1] [--seed 0]
        [--overwrite] [--max_megapixels 179]

Input: a whole-slide image that OpenSlide can open (.svs, .ndpi, .mrxs, tiled TIFF, ...), read
tile by tile so memory stays bounded however large the slide; or a plain PNG/JPEG/TIFF, which
is read whole into memory (up to ``--max_megapixels``: by default the project's 179-megapixel
limit, which also stops a corrupt header that declares a huge size; 0 lifts it). The resolution
is a pyramid level (``--level``, default 0), a pixel size in micrometres (``--mpp``) or an
objective magnification (``--magnification``); the last two read the nearest finer level and
shrink each tile to the asked resolution (within 5%, the level is used as it is). Tissue is found
on a thumbnail by its colour saturation (Otsu), and the slide is cut into a grid of
non-overlapping ``--size`` tiles; those whose tissue fraction reaches ``--min_tissue`` are
candidates, of which up to ``--max_tiles`` are drawn at random (``--seed``) and split into
``trainB``/``valB``/``testB`` (whole, non-overlapping tiles: no pixel is in two splits). Writes
``manifest.csv`` (where each tile came from, in level-0 pixels) and ``preparation.json`` (these
settings) beside the tiles.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import openslide
from skimage.filters import threshold_otsu

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project's packages, from any working folder

from data.image_io import MAX_PIXELS, image_from_array, pixel_limit, read_array, write_image
from data.preparation import grid_boxes, seeded_split, staged_output, write_manifest, write_settings
from util.arg_types import float_in_range, nonnegative_float, nonnegative_int, positive_float, positive_int
from util.cli import HelpFormatter, run_script
from util.errors import DatasetError, ImageReadError, ImageTooLargeError, OptionError
from util.log import setup_logging
from util.progress import progress_bar

logger = logging.getLogger("prepare_slide")

#: The thumbnail's long side at most (pixels); tissue is found on it.
THUMBNAIL_MAX_SIZE = 2048
#: Largest region read at once while building the thumbnail, so a slide without a small pyramid
#: level is streamed rather than read whole.
THUMBNAIL_CHUNK = 1024
#: Saturation (0..1) bounds of the tissue threshold. Otsu separates glass from tissue when both are
#: present; on an image that is all tissue it would split nuclei from stroma instead, and on a blank
#: slide it would split the noise of the glass in two, so its threshold is kept between these.
SATURATION_FLOOR = 0.05
SATURATION_CEILING = 0.2
#: Pixels darker than this value (0..1) are not tissue: pen marks, dust, scanner borders.
VALUE_FLOOR = 0.15
#: A level whose resolution is within this relative distance of the asked one is used without resizing.
RESOLUTION_TOLERANCE = 0.05
MANIFEST_COLUMNS = (
    "file", "split", "slide", "level", "x", "y", "size", "read_size", "downsample", "mpp", "tissue_fraction",
)  # fmt: skip


def rgba_to_rgb(rgba: np.ndarray) -> np.ndarray:
    """(H, W, 4) uint8 -> (H, W, 3) uint8 composited onto white: transparent pixels (outside the
    scanned area of a slide) become white background instead of black."""
    rgb, alpha = rgba[..., :3], rgba[..., 3:]
    if alpha.min() == 255:
        return np.ascontiguousarray(rgb)
    weight = alpha.astype(np.float32) / 255.0
    return np.round(rgb * weight + 255.0 * (1.0 - weight)).astype(np.uint8)


def thumbnail_shape(width: int, height: int, max_size: int) -> tuple[int, int]:
    """(width, height) of a thumbnail of a ``width`` x ``height`` image whose long side is at most ``max_size``."""
    scale = min(1.0, max_size / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


class SlideReader(ABC):
    """What the tiler needs from a slide: its pyramid, metadata, a thumbnail and tiles.

    Sizes are (width, height) and positions level-0 pixels, as in OpenSlide.
    """

    path: Path
    format: str
    level_dimensions: tuple[tuple[int, int], ...]
    level_downsamples: tuple[float, ...]
    #: Micrometres per level-0 pixel, or None when the file does not say.
    mpp: float | None
    #: The scanner's objective magnification at level 0, or None when the file does not say.
    objective_power: float | None

    @property
    def level_count(self) -> int:
        return len(self.level_dimensions)

    @abstractmethod
    def thumbnail(self, max_size: int | None = None) -> np.ndarray:
        """The whole slide as RGB uint8 (h, w, 3) with its long side at most ``max_size`` (THUMBNAIL_MAX_SIZE)."""

    @abstractmethod
    def read_tile(self, x0: int, y0: int, level: int, size: int) -> np.ndarray:
        """RGB uint8 (size, size, 3) at ``level`` whose top-left corner is (x0, y0) in level-0 pixels."""

    def close(self) -> None:
        """Release the file."""

    def __enter__(self) -> SlideReader:
        return self

    def __exit__(self, *exception: object) -> None:
        self.close()


class OpenSlideReader(SlideReader):
    """A whole-slide image read through OpenSlide, region by region: never a whole level at once.

    Every OpenSlide failure (a damaged file is often found only when its pixels are decoded)
    becomes a :class:`DatasetError` naming the file.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._slide = self._call(openslide.OpenSlide, str(self.path))
        try:
            self.format = self._call(openslide.OpenSlide.detect_format, str(self.path)) or "unknown"
            self.level_dimensions = tuple(self._call(lambda: self._slide.level_dimensions))
            self.level_downsamples = tuple(float(value) for value in self._call(lambda: self._slide.level_downsamples))
            properties = self._call(lambda: dict(self._slide.properties))
        except DatasetError:
            self._slide.close()
            raise
        self.mpp = _positive_number(properties.get(openslide.PROPERTY_NAME_MPP_X))
        self.objective_power = _positive_number(
            properties.get(openslide.PROPERTY_NAME_OBJECTIVE_POWER) or properties.get("aperio.AppMag")
        )

    def _call(self, function: Any, *arguments: Any) -> Any:
        try:
            return function(*arguments)
        except openslide.OpenSlideError as error:
            raise DatasetError(
                f"cannot read slide {self.path}: {error}. The file is damaged or incomplete (e.g. an interrupted "
                "download); download or export it again"
            ) from error

    def thumbnail(self, max_size: int | None = None) -> np.ndarray:
        # OpenSlide's get_thumbnail reads the chosen level whole, which for a slide without small
        # pyramid levels is the whole scan: read it in chunks of THUMBNAIL_CHUNK and shrink each.
        width, height = self.level_dimensions[0]
        thumb_width, thumb_height = thumbnail_shape(width, height, max_size or THUMBNAIL_MAX_SIZE)
        level = self._call(self._slide.get_best_level_for_downsample, max(width / thumb_width, height / thumb_height))
        level_width, level_height = self.level_dimensions[level]
        downsample = self.level_downsamples[level]
        scale_x, scale_y = thumb_width / level_width, thumb_height / level_height
        thumbnail = np.full((thumb_height, thumb_width, 3), 255, np.uint8)
        for top in range(0, level_height, THUMBNAIL_CHUNK):
            for left in range(0, level_width, THUMBNAIL_CHUNK):
                chunk_width = min(THUMBNAIL_CHUNK, level_width - left)
                chunk_height = min(THUMBNAIL_CHUNK, level_height - top)
                x_start, x_end = round(left * scale_x), round((left + chunk_width) * scale_x)
                y_start, y_end = round(top * scale_y), round((top + chunk_height) * scale_y)
                if x_end <= x_start or y_end <= y_start:
                    continue
                location = (round(left * downsample), round(top * downsample))
                region = self._call(self._slide.read_region, location, level, (chunk_width, chunk_height))
                chunk = rgba_to_rgb(np.asarray(region))
                if chunk.shape[:2] != (y_end - y_start, x_end - x_start):
                    chunk = cv2.resize(chunk, (x_end - x_start, y_end - y_start), interpolation=cv2.INTER_AREA)
                thumbnail[y_start:y_end, x_start:x_end] = chunk
        return thumbnail

    def read_tile(self, x0: int, y0: int, level: int, size: int) -> np.ndarray:
        return rgba_to_rgb(np.asarray(self._call(self._slide.read_region, (x0, y0), level, (size, size))))

    def close(self) -> None:
        self._slide.close()


class PlainImageReader(SlideReader):
    """A PNG, JPEG or TIFF that OpenSlide does not open, read with the project's image reader.

    The whole image is held in memory (as RGB uint8), so images above ``max_pixels`` (None: no
    limit) are refused before they are decoded: a corrupt header can declare gigapixels. Whole-slide
    formats go through :class:`OpenSlideReader` instead. One level, no pixel size or magnification.
    """

    def __init__(self, path: Path, max_pixels: int | None = MAX_PIXELS) -> None:
        self.path = Path(path)
        self.format = f"plain image ({self.path.suffix.lower().lstrip('.') or 'no extension'})"
        try:
            array = read_array(self.path, max_pixels=max_pixels)
        except ImageTooLargeError as error:
            raise DatasetError(
                f"{error}. A plain image is read whole into memory: if it is real, raise --max_megapixels "
                f"(now {max_pixels / 1e6:g}; 0: no limit), or convert it to a tiled pyramidal TIFF, which is "
                "read tile by tile"
            ) from error
        except ImageReadError as error:
            raise DatasetError(
                f"{self.path} is neither a whole-slide image that OpenSlide can open nor a readable PNG, JPEG or "
                f"TIFF ({error}); check the file, or convert it to a tiled pyramidal TIFF"
            ) from error
        self._pixels = _as_rgb8(array, self.path)
        height, width = self._pixels.shape[:2]
        self.level_dimensions = ((width, height),)
        self.level_downsamples = (1.0,)
        self.mpp = None
        self.objective_power = None

    def thumbnail(self, max_size: int | None = None) -> np.ndarray:
        width, height = self.level_dimensions[0]
        shape = thumbnail_shape(width, height, max_size or THUMBNAIL_MAX_SIZE)
        if shape == (width, height):
            return self._pixels.copy()
        return cv2.resize(self._pixels, shape, interpolation=cv2.INTER_AREA)

    def read_tile(self, x0: int, y0: int, level: int, size: int) -> np.ndarray:
        if level != 0:
            raise OptionError(f"{self.path} is a plain image with only level 0, got level {level}")
        tile = np.full((size, size, 3), 255, np.uint8)
        window = self._pixels[y0 : y0 + size, x0 : x0 + size]
        tile[: window.shape[0], : window.shape[1]] = window
        return tile


def _positive_number(text: str | None) -> float | None:
    try:
        value = float(text) if text else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) and value > 0 else None


def _as_rgb8(array: np.ndarray, path: Path) -> np.ndarray:
    """Any pixel layout ``read_array`` gives -> RGB uint8, transparent pixels white."""
    if array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3:
        return array
    if array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 4:
        return rgba_to_rgb(array)
    return np.round(image_from_array(array, 3, path) * 255.0).astype(np.uint8)


def open_slide(path: Path, max_pixels: int | None = MAX_PIXELS) -> SlideReader:
    """The reader for ``path``: OpenSlide for the formats it detects, else the plain-image reader
    (which refuses images above ``max_pixels``; None: no limit)."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"slide file not found: {path}; check the path")
    if path.is_dir():
        raise DatasetError(f"{path} is a folder; pass the slide file itself (e.g. the .svs)")
    try:
        detected = openslide.OpenSlide.detect_format(str(path))
    except openslide.OpenSlideError:
        detected = None
    return OpenSlideReader(path) if detected else PlainImageReader(path, max_pixels)


@dataclass(frozen=True)
class Sampling:
    """How tiles are read: ``read_size`` pixels of ``level`` per tile, shrunk to ``size`` when they differ."""

    level: int
    read_size: int
    size: int
    #: Level-0 pixels per pixel of the written tiles.
    downsample: float
    #: Micrometres per pixel of the written tiles, or None when the slide does not say.
    mpp: float | None

    @property
    def footprint(self) -> float:
        """The side of a tile in level-0 pixels."""
        return self.size * self.downsample


def choose_sampling(
    reader: SlideReader,
    size: int,
    level: int | None = None,
    mpp: float | None = None,
    magnification: float | None = None,
) -> Sampling:
    """The level and read size for ``--level``, ``--mpp`` or ``--magnification`` (at most one; level 0 if none).

    For a resolution, the coarsest level at least as fine as asked is read (never upsampled) and
    each tile shrunk to ``size``; a level within 5% of the asked resolution is used as it is.
    """
    if sum(value is not None for value in (level, mpp, magnification)) > 1:
        raise OptionError("choose the resolution with one of --level, --mpp and --magnification")
    if mpp is None and magnification is None:
        level = level or 0
        if level >= reader.level_count:
            raise OptionError(
                f"--level {level} does not exist: {reader.path} has levels 0 to {reader.level_count - 1} "
                f"(downsamples {', '.join(f'{value:g}' for value in reader.level_downsamples)})"
            )
        downsample = reader.level_downsamples[level]
        return Sampling(level, size, size, downsample, reader.mpp * downsample if reader.mpp else None)

    if mpp is not None:
        if reader.mpp is None:
            raise OptionError(
                f"{reader.path} does not record its pixel size (no openslide.mpp-x), so --mpp cannot be used; "
                f"choose the resolution with --level (0 to {reader.level_count - 1}) instead"
            )
        wanted, asked = mpp / reader.mpp, f"--mpp {mpp:g} (the scan is {reader.mpp:g} µm/px)"
    else:
        if reader.objective_power is None:
            raise OptionError(
                f"{reader.path} does not record its objective magnification, so --magnification cannot be used; "
                f"choose the resolution with --level (0 to {reader.level_count - 1}) instead"
            )
        wanted = reader.objective_power / magnification
        asked = f"--magnification {magnification:g} (the scan is {reader.objective_power:g}x)"
    if wanted < 1.0 - RESOLUTION_TOLERANCE:
        raise OptionError(f"{asked} is finer than the slide was scanned at; ask for a coarser resolution")
    chosen = max(
        index
        for index, downsample in enumerate(reader.level_downsamples)
        if index == 0 or downsample <= wanted * (1.0 + RESOLUTION_TOLERANCE)
    )
    level_downsample = reader.level_downsamples[chosen]
    read_size = round(size * wanted / level_downsample)
    if abs(read_size / size - 1.0) <= RESOLUTION_TOLERANCE:
        read_size = size
    downsample = level_downsample * read_size / size
    return Sampling(chosen, read_size, size, downsample, reader.mpp * downsample if reader.mpp else None)


def tissue_mask(thumbnail: np.ndarray) -> tuple[np.ndarray, float]:
    """Tissue pixels of an RGB thumbnail and the saturation threshold used: saturated (Otsu, kept in
    [SATURATION_FLOOR, SATURATION_CEILING]) and not near-black."""
    hsv = cv2.cvtColor(np.ascontiguousarray(thumbnail), cv2.COLOR_RGB2HSV)  # uint8: S and V in 0..255
    saturation = hsv[..., 1].astype(np.float32) / 255.0
    value = hsv[..., 2].astype(np.float32) / 255.0
    threshold = SATURATION_FLOOR
    if saturation.max() > saturation.min():
        threshold = min(max(float(threshold_otsu(saturation)), SATURATION_FLOOR), SATURATION_CEILING)
    return (saturation > threshold) & (value >= VALUE_FLOOR), threshold


def tissue_fractions(
    mask: np.ndarray, slide_size: tuple[int, int], corners: np.ndarray, footprint: float
) -> np.ndarray:
    """The fraction of tissue pixels of ``mask`` (a thumbnail of a slide of ``slide_size`` (w, h)) inside
    each square of side ``footprint`` whose top-left corners (x, y) are ``corners`` (N, 2), in level-0 pixels."""
    height, width = mask.shape
    scale_x, scale_y = width / slide_size[0], height / slide_size[1]
    summed = np.zeros((height + 1, width + 1), np.int64)
    summed[1:, 1:] = mask.astype(np.int64).cumsum(0).cumsum(1)
    x = corners[:, 0].astype(np.float64)
    y = corners[:, 1].astype(np.float64)
    left = np.clip(np.floor(x * scale_x).astype(np.int64), 0, width - 1)
    top = np.clip(np.floor(y * scale_y).astype(np.int64), 0, height - 1)
    right = np.clip(np.ceil((x + footprint) * scale_x).astype(np.int64), left + 1, width)
    bottom = np.clip(np.ceil((y + footprint) * scale_y).astype(np.int64), top + 1, height)
    inside = summed[bottom, right] - summed[top, right] - summed[bottom, left] + summed[top, left]
    return inside / ((bottom - top) * (right - left))


def candidate_corners(reader: SlideReader, sampling: Sampling) -> np.ndarray:
    """Level-0 top-left corners (x, y) (N, 2) of the non-overlapping tile grid of ``sampling``."""
    level_width, level_height = reader.level_dimensions[sampling.level]
    step = sampling.read_size
    # grid_boxes moves its last row and column to end at the border; those overlap their neighbours
    # (a tile could then share pixels across train and test), so only whole steps are kept.
    boxes = np.fromiter(
        ((x, y) for y, x in grid_boxes(level_height, level_width, step, step) if x % step == 0 and y % step == 0),
        dtype=np.dtype((np.int64, 2)),
    )
    return np.round(boxes * reader.level_downsamples[sampling.level]).astype(np.int64)


@dataclass
class SlideTiles:
    """What a run found and wrote."""

    slide: Path
    sampling: Sampling
    candidates: int
    with_tissue: int
    written: dict[str, int]
    seconds: float


def prepare_slide(
    slide: Path,
    output: Path,
    *,
    size: int = 128,
    level: int | None = None,
    mpp: float | None = None,
    magnification: float | None = None,
    min_tissue: float = 0.5,
    max_tiles: int = 2000,
    test_fraction: float = 0.2,
    val_fraction: float = 0.1,
    seed: int = 0,
    overwrite: bool = False,
    max_pixels: int | None = MAX_PIXELS,
) -> SlideTiles:
    """Write the tissue tiles of ``slide`` into ``output``/trainB, valB and testB with the manifest and settings.

    Everything is checked and the tiles chosen before ``output`` is touched; tiles are written
    into a staging folder that replaces ``output`` only when the run has finished, so a failing
    run leaves ``output`` as it was. A plain image above ``max_pixels`` (None: no limit) is refused.
    """
    slide, output = Path(slide), Path(output)
    if slide.resolve().is_relative_to(output.resolve()):
        raise DatasetError(f"the slide {slide} lies inside --output {output}, which is replaced; move one of them")
    with open_slide(slide, max_pixels) as reader:
        sampling = choose_sampling(reader, size, level, mpp, magnification)
        width, height = reader.level_dimensions[0]
        resolution = f", {reader.mpp:g} µm/px" if reader.mpp else ""
        power = f", {reader.objective_power:g}x" if reader.objective_power else ""
        logger.info(
            "%s: %s, %d x %d px at level 0, %d level(s)%s%s",
            slide.name, reader.format, width, height, reader.level_count, resolution, power,
        )  # fmt: skip
        logger.info(
            "reading level %d (downsample %g)%s: %d px tiles%s%s",
            sampling.level, reader.level_downsamples[sampling.level],
            f" {sampling.read_size} px shrunk to {size} px" if sampling.read_size != size else "",
            size, f" at {sampling.mpp:.3g} µm/px" if sampling.mpp else "",
            f" ({reader.objective_power / sampling.downsample:.3g}x)" if reader.objective_power else "",
        )  # fmt: skip

        thumbnail = reader.thumbnail()
        mask, threshold = tissue_mask(thumbnail)
        corners = candidate_corners(reader, sampling)
        if len(corners) == 0:
            level_width, level_height = reader.level_dimensions[sampling.level]
            raise DatasetError(
                f"{slide} is {level_width} x {level_height} px at level {sampling.level}, smaller than one tile of "
                f"{sampling.read_size} px; choose a smaller --size or a finer level"
            )
        fractions = tissue_fractions(mask, (width, height), corners, sampling.footprint)
        tissue = np.flatnonzero(fractions >= min_tissue)
        logger.info(
            "tissue covers %.1f%% of the thumbnail (saturation > %.3f); %d of %d tiles hold >= %g tissue",
            100 * mask.mean(), threshold, len(tissue), len(corners), min_tissue,
        )  # fmt: skip
        if len(tissue) == 0:
            raise DatasetError(
                f"no tissue found in {slide}: no {size} px tile reaches --min_tissue {min_tissue:g} (the best holds "
                f"{fractions.max():.2f}); lower --min_tissue, or check that the slide holds stained tissue"
            )

        chosen = np.sort(np.random.default_rng(seed).choice(tissue, size=min(max_tiles, len(tissue)), replace=False))
        splits = seeded_split(len(chosen), test_fraction, seed, val_fraction)
        for split, fraction in (("test", test_fraction), ("val", val_fraction)):
            if fraction > 0 and not (splits == split).any():
                logger.warning(
                    "only %d tile(s) qualify: --%s_fraction %g gives none to %sB, which evaluation needs; lower "
                    "--min_tissue or use a larger slide",
                    len(chosen), split, fraction, split,
                )  # fmt: skip
        start = time.perf_counter()
        written = {"train": 0, "val": 0, "test": 0}
        with staged_output(output, overwrite) as staging:
            rows = []
            for index, split in progress_bar(list(zip(chosen, splits, strict=True)), desc="tiles", unit="tile"):
                x0, y0 = (int(value) for value in corners[index])
                tile = reader.read_tile(x0, y0, sampling.level, sampling.read_size)
                if sampling.read_size != size:
                    tile = cv2.resize(tile, (size, size), interpolation=cv2.INTER_AREA)
                split = str(split)
                name = f"{slide.stem}_x{x0}_y{y0}.png"
                write_image(staging / f"{split}B" / name, tile)
                written[split] += 1
                rows.append(
                    {
                        "file": f"{split}B/{name}", "split": split, "slide": slide.name, "level": sampling.level,
                        "x": x0, "y": y0, "size": size, "read_size": sampling.read_size,
                        "downsample": f"{sampling.downsample:.6g}",
                        "mpp": f"{sampling.mpp:.6g}" if sampling.mpp else "",
                        "tissue_fraction": f"{fractions[index]:.4f}",
                    }
                )  # fmt: skip
            write_manifest(staging, MANIFEST_COLUMNS, rows)
            write_settings(
                staging,
                {
                    "command": "prepare_slide", "slide": str(slide.resolve()), "format": reader.format,
                    "slide_size": [width, height], "slide_mpp": reader.mpp,
                    "objective_power": reader.objective_power, "requested_level": level, "requested_mpp": mpp,
                    "requested_magnification": magnification, "level": sampling.level,
                    "read_size": sampling.read_size, "size": size, "downsample": sampling.downsample,
                    "mpp": sampling.mpp, "min_tissue": min_tissue, "saturation_threshold": threshold,
                    "thumbnail_size": [thumbnail.shape[1], thumbnail.shape[0]], "max_tiles": max_tiles,
                    "test_fraction": test_fraction, "val_fraction": val_fraction, "seed": seed,
                    "candidate_tiles": len(corners),
                    "tiles_with_tissue": len(tissue), "tiles_written": written,
                },
            )  # fmt: skip
    return SlideTiles(slide, sampling, len(corners), len(tissue), written, time.perf_counter() - start)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter, allow_abbrev=False)
    parser.add_argument("slide", type=Path, help="whole-slide image (.svs, ... via OpenSlide) or PNG/JPEG/TIFF")
    parser.add_argument("--output", type=Path, required=True, help="folder for trainB, valB, testB and the manifest")
    resolution = parser.add_mutually_exclusive_group()
    resolution.add_argument("--level", type=nonnegative_int, default=None, help="pyramid level to read (default 0)")
    resolution.add_argument("--mpp", type=positive_float, default=None, help="tile resolution in micrometres/pixel")
    resolution.add_argument("--magnification", type=positive_float, default=None, help="tile magnification, e.g. 20")
    parser.add_argument("--size", type=positive_int, default=128, help="tile size in pixels")
    parser.add_argument(
        "--min_tissue",
        type=float_in_range(0.0, 1.0, include_minimum=True),
        default=0.5,
        help="keep tiles whose tissue fraction reaches this",
    )
    parser.add_argument("--max_tiles", type=positive_int, default=2000, help="at most this many tiles, drawn at random")
    parser.add_argument(
        "--test_fraction",
        type=float_in_range(0.0, 1.0, include_minimum=True, include_maximum=False),
        default=0.2,
        help="share of the tiles that go to testB",
    )
    parser.add_argument(
        "--val_fraction",
        type=float_in_range(0.0, 1.0, include_minimum=True, include_maximum=False),
        default=0.1,
        help="share of the tiles that go to valB (the split Stain_Evaluation chooses the epoch on)",
    )
    parser.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the tile draw and the split")
    parser.add_argument("--overwrite", action="store_true", help="replace what --output holds")
    parser.add_argument(
        "--max_megapixels",
        type=nonnegative_float,
        default=None,
        help=f"refuse a plain PNG/JPEG/TIFF larger than this (default {MAX_PIXELS / 1e6:.0f}, the project's limit, "
        "which also stops a corrupt header that declares a huge size; 0: no limit). A plain image is held in "
        "memory whole (3 bytes per pixel and more); whole-slide formats are read tile by tile and never limited",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    setup_logging()
    args = build_parser().parse_args(argv)

    def job() -> None:
        result = prepare_slide(
            args.slide,
            args.output,
            size=args.size,
            level=args.level,
            mpp=args.mpp,
            magnification=args.magnification,
            min_tissue=args.min_tissue,
            max_tiles=args.max_tiles,
            test_fraction=args.test_fraction,
            val_fraction=args.val_fraction,
            seed=args.seed,
            overwrite=args.overwrite,
            max_pixels=pixel_limit(args.max_megapixels),
        )
        total = sum(result.written.values())
        logger.info(
            "domain B in %s: %d train, %d val and %d test tiles (%.1f tiles/s)",
            args.output, result.written["train"], result.written["val"], result.written["test"],
            total / max(result.seconds, 1e-9),
        )  # fmt: skip

    return run_script(job)


if __name__ == "__main__":
    sys.exit(main())
