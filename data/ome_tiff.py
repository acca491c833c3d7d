"""Pyramidal OME-TIFF output for slide viewers, written as a stream of bands: tiled, compressed, calibrated.

A viewer (QuPath, napari, anything built on OpenSlide) shows a large image at every zoom without
reading it whole when the file is tiled and holds downsampled copies of it, a pyramid. The file
written by :func:`write_ome_pyramid`:

- level 0, the full image: 8-bit RGB in tiles of ``tile`` pixels (512 by default), compressed
  losslessly (deflate after horizontal differencing, TIFF predictor 2), with OME-XML (axes ``YXS``;
  ``PhysicalSizeX/Y`` in micrometres when the pixel size is known);
- levels 1, 2, ...: each half the size of the one above (2x2 mean, rounded; an odd last row or
  column is averaged with itself), down to the first level that fits in one tile (a thumbnail).
  They are stored once and reached twice: as sub-IFDs of level 0, where OME-TIFF keeps a pyramid
  (Bio-Formats and QuPath, tifffile and napari read it there), and linked after level 0 in the main
  chain of IFDs, where a generic tiled TIFF keeps it (OpenSlide reads it there, as "generic-tiff");
- TIFF resolution tags in centimetres on every level (OpenSlide's ``openslide.mpp-x`` comes from them).

Memory: level 0 is written band by band as they come (``models/tiling.py`` finishes a band of rows
at a time); each band is also halved into a spool, an unnamed temporary file beside the output
(removed by the system however the process ends), from which level 1 is written band by band while
it is halved into the next spool, and so on. So the writer holds a band of rows and one row of tiles,
never a level; the spools take a third of the image's raw size on disk while the file is written.
"""

from __future__ import annotations

import os
import struct
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import tifffile

from data.image_layout import PixelSize
from util.atomic import atomic_path

#: Tile size of the written levels (pixels); TIFF tiles must be a multiple of 16.
TILE = 512
#: Deflate effort: 6 is zlib's default balance of speed and size.
COMPRESSION_LEVEL = 6
#: Above this many raw bytes in all levels the file is a BigTIFF (classic TIFF offsets end at 4 GiB).
BIGTIFF_BYTES = 2**31
_MICROMETRES_PER_CENTIMETRE = 1e4


def pyramid_shapes(height: int, width: int, tile: int = TILE) -> list[tuple[int, int]]:
    """(height, width) of every level: the image, then halves (rounded up) until one fits in a tile."""
    shapes = [(height, width)]
    while max(shapes[-1]) > tile:
        last_height, last_width = shapes[-1]
        shapes.append(((last_height + 1) // 2, (last_width + 1) // 2))
    return shapes


def halve(rows: np.ndarray) -> np.ndarray:
    """(2h, W, C) uint8 -> (h, ceil(W / 2), C) uint8: the rounded mean of each 2x2 block (an odd last
    column is paired with itself)."""
    if rows.shape[1] % 2:
        rows = np.concatenate([rows, rows[:, -1:]], axis=1)
    height, width, channels = rows.shape
    sums = rows.reshape(height // 2, 2, width // 2, 2, channels).sum(axis=(1, 3), dtype=np.uint16)
    return ((sums + 2) // 4).astype(np.uint8)


def write_ome_pyramid(
    path: str | os.PathLike,
    height: int,
    width: int,
    bands: Iterable[np.ndarray],
    pixel_size: PixelSize | None,
    tile: int = TILE,
) -> np.ndarray:
    """Write the (height, width, 3) uint8 image given as ``bands`` (consecutive rows, top to bottom) as a
    pyramidal OME-TIFF at ``path`` (see the module docstring); return its smallest level (the thumbnail).

    The file appears atomically: a failure (a full disk) leaves no partial file, and nothing of the spools.
    """
    path = Path(path)
    shapes = pyramid_shapes(height, width, tile)
    with atomic_path(path) as temporary:
        spools = [_Spool(path.parent, level_width) for _, level_width in shapes[1:]]
        thumbnail: list[np.ndarray] = []
        try:
            raw_bytes = sum(level_height * level_width * 3 for level_height, level_width in shapes)
            with tifffile.TiffWriter(temporary, bigtiff=raw_bytes > BIGTIFF_BYTES, ome=True) as tiff:
                for level, (level_height, level_width) in enumerate(shapes):
                    rows = bands if level == 0 else spools[level - 1].bands(tile)
                    if level + 1 < len(shapes):
                        rows = _halving_into(rows, spools[level])
                    if level + 1 == len(shapes):
                        rows = _kept(rows, thumbnail)
                    tiff.write(
                        _tiles(rows, level_height, level_width, tile),
                        shape=(level_height, level_width, 3),
                        dtype=np.uint8,
                        tile=(tile, tile),
                        photometric="rgb",
                        compression="zlib",
                        compressionargs={"level": COMPRESSION_LEVEL},
                        predictor=True,  # horizontal differencing: smaller and faster on colorized images
                        buffersize=tile * tile * 3 * -(-level_width // tile),  # a row of tiles at a time
                        **_level_options(level, len(shapes), shapes[0], (level_height, level_width), pixel_size),
                    )
        finally:
            for spool in spools:
                spool.close()
        link_levels_in_main_chain(temporary)
    return np.concatenate(thumbnail)


def _level_options(
    level: int, levels: int, full: tuple[int, int], shape: tuple[int, int], pixel_size: PixelSize | None
) -> dict:
    """tifffile options of one level: OME metadata and sub-IFDs on level 0, the reduced-image flag below it,
    resolution tags (pixels per centimetre, this level's) when the pixel size is known."""
    options: dict = {"subifds": levels - 1, "metadata": _ome_metadata(pixel_size)} if level == 0 else {"subfiletype": 1}
    if pixel_size is not None:
        scale_y, scale_x = full[0] / shape[0], full[1] / shape[1]
        options["resolution"] = (
            _MICROMETRES_PER_CENTIMETRE / (pixel_size.x_um * scale_x),
            _MICROMETRES_PER_CENTIMETRE / (pixel_size.y_um * scale_y),
        )
        options["resolutionunit"] = "CENTIMETER"
    return options


def _ome_metadata(pixel_size: PixelSize | None) -> dict:
    metadata: dict = {"axes": "YXS"}
    if pixel_size is not None:
        metadata.update(
            PhysicalSizeX=pixel_size.x_um,
            PhysicalSizeXUnit="µm",
            PhysicalSizeY=pixel_size.y_um,
            PhysicalSizeYUnit="µm",
        )
    return metadata


def _tiles(rows: Iterable[np.ndarray], height: int, width: int, tile: int) -> Iterator[np.ndarray]:
    """Tiles of ``tile`` pixels, row of tiles by row of tiles, from bands of any height (edge tiles smaller:
    tifffile pads them)."""
    pending: list[np.ndarray] = []
    count = seen = 0
    for band in rows:
        if band.shape[1:] != (width, 3):
            raise ValueError(f"a band of shape {band.shape} in an image of width {width}")
        pending.append(band)
        count += len(band)
        seen += len(band)
        while count >= tile:
            strip = pending[0] if len(pending) == 1 else np.concatenate(pending)
            yield from _cut(strip[:tile], width, tile)
            pending = [strip[tile:].copy()] if len(strip) > tile else []  # a copy frees the strip
            count -= tile
    if count:
        yield from _cut(pending[0] if len(pending) == 1 else np.concatenate(pending), width, tile)
    if seen != height:
        raise ValueError(f"the bands hold {seen} rows, the image {height}")


def _cut(strip: np.ndarray, width: int, tile: int) -> Iterator[np.ndarray]:
    for left in range(0, width, tile):
        yield np.ascontiguousarray(strip[:, left : left + tile])


def _halving_into(rows: Iterable[np.ndarray], spool: _Spool) -> Iterator[np.ndarray]:
    """``rows`` passed on unchanged, each also halved into ``spool`` (an odd row waits for the next band)."""
    carry: np.ndarray | None = None
    for band in rows:
        yield band
        if carry is not None:
            band, carry = np.concatenate([carry, band]), None
        if len(band) % 2:
            band, carry = band[:-1], band[-1:]
        if len(band):
            spool.write(halve(band))
    if carry is not None:
        spool.write(halve(np.concatenate([carry, carry])))


def _kept(rows: Iterable[np.ndarray], into: list[np.ndarray]) -> Iterator[np.ndarray]:
    for band in rows:
        into.append(band)
        yield band


class _Spool:
    """The rows of one pyramid level in an unnamed temporary file, until that level is written."""

    def __init__(self, folder: Path, width: int) -> None:
        self.file = tempfile.TemporaryFile(dir=folder)  # noqa: SIM115  (closed by close(), in a finally)
        self.row_bytes = width * 3
        self.width = width

    def write(self, rows: np.ndarray) -> None:
        self.file.write(np.ascontiguousarray(rows).tobytes())

    def bands(self, rows_per_band: int) -> Iterator[np.ndarray]:
        self.file.flush()
        self.file.seek(0)
        while data := self.file.read(rows_per_band * self.row_bytes):
            yield np.frombuffer(data, np.uint8).reshape(-1, self.width, 3)

    def close(self) -> None:
        self.file.close()


def link_levels_in_main_chain(path: str | os.PathLike) -> int:
    """Chain the sub-IFDs of the first page after it in the main IFD chain; return how many were linked.

    Generic TIFF readers (libtiff, OpenSlide) follow the main chain only, OME readers take the
    pyramid from the sub-IFDs: linked both ways, every reader finds every level, and no pixel is
    stored twice. Only the "next IFD" offsets are rewritten.
    """
    with tifffile.TiffFile(path) as tiff:
        first = tiff.pages.first
        levels = tuple(first.subifds or ())
        if not levels or len(tiff.pages) > 1:
            return 0
        order = tiff.byteorder
        count_format, entry_bytes, offset_format = ("Q", 20, "Q") if tiff.is_bigtiff else ("H", 12, "I")
    count_bytes = struct.calcsize(count_format)
    with open(path, "r+b") as file:
        for ifd, following in zip((first.offset, *levels), (*levels, 0), strict=True):
            file.seek(ifd)
            (entries,) = struct.unpack(order + count_format, file.read(count_bytes))
            file.seek(ifd + count_bytes + entries * entry_bytes)
            file.write(struct.pack(order + offset_format, following))
    return len(levels)


def shrink(image: np.ndarray, times: int) -> np.ndarray:
    """(H, W, C) uint8 halved ``times`` times by the pyramid's rule (the size of level ``times``)."""
    for _ in range(times):
        if len(image) % 2:
            image = np.concatenate([image, image[-1:]])
        image = halve(image)
    return image
