"""What an image file holds, read from its header only: the gray images in it, its channels, its axes and
the physical size of its pixels; and one gray plane of it, read on demand.

A fluorescence file may hold several channels of which one shows the nuclei, a z-stack or a time
series, and a pixel size in micrometres that a viewer needs for its scale bar. Where each comes from:

- **OME-TIFF** (Bio-Formats, QuPath, tifffile): the first ``Image`` of the OME-XML: its sizes, axes
  (``DimensionOrder``), channel names and ``PhysicalSizeX/Y`` with their units. The sizes it
  declares are checked against the TIFF pages before anything is read (:class:`ImageReadError`
  naming the file when they disagree: tifffile would fill missing planes with zeros).
- **ImageJ hyperstacks**: their channels, slices and frames; the pixel size from the ``unit`` and
  the resolution tags.
- **TIFFs tifffile wrote with a shape**: the axes recorded with it.
- **Any other TIFF**: every full-resolution page is an image (reduced-resolution pages of a pyramid
  are left out); the pixel size from the resolution tags in inches or centimetres, unless it is
  larger than :data:`LARGEST_PIXEL_UM` (72 dpi and the like: a screen or print default, not a
  microscope's pixel).
- **PNG, JPEG, BMP**: one image.

Channels are the ``C`` axis of a multi-plane file (each channel a page of its own) or the colour
samples of one page (``S``: red, green, blue, or unnamed samples; alpha is never a channel).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from data.image_io import TIFF_EXTENSIONS, pillow_header, read_array
from util.errors import ImageReadError

logger = logging.getLogger(__name__)

#: What each axis letter of tifffile and OME means, for the log.
AXIS_WORDS = {
    "T": "time",
    "Z": "depth",
    "C": "channel",
    "Q": "page",
    "I": "page",
    "P": "position",
    "R": "tile",
    "A": "angle",
    "E": "wavelength",
    "H": "phase",
    "L": "exposure",
    "V": "view",
    "M": "mosaic",
}
#: A pixel larger than this (in micrometres) read from plain TIFF resolution tags is a screen or print
#: default (72 dpi is 353 um), not a microscope's: nuclei, about 10 um across, would be a pixel or less.
LARGEST_PIXEL_UM = 50.0
#: Micrometres per unit of the length units OME-XML and ImageJ write.
_MICROMETRES = {
    "m": 1e6,
    "dm": 1e5,
    "cm": 1e4,
    "mm": 1e3,
    "µm": 1.0,
    "μm": 1.0,  # Greek mu, as some writers spell it
    "um": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "micrometre": 1.0,
    "\\u00b5m": 1.0,  # ImageJ's escaped micro sign
    "nm": 1e-3,
    "pm": 1e-6,
    "å": 1e-4,
    "in": 25400.0,
    "inch": 25400.0,
}
_ALPHA = (tifffile.EXTRASAMPLE.ASSOCALPHA, tifffile.EXTRASAMPLE.UNASSALPHA)
_RGB_NAMES = ("red", "green", "blue")
#: Rows compared at a time when checking whether colour channels are equal (gray stored as colour).
_ROWS_AT_A_TIME = 1024


@dataclass(frozen=True)
class PixelSize:
    """The physical size of one pixel, in micrometres, and where it was read."""

    x_um: float
    y_um: float
    source: str

    def __str__(self) -> str:
        size = f"{self.x_um:.6g} um" if self.x_um == self.y_um else f"{self.x_um:.6g} x {self.y_um:.6g} um"
        return f"{size} ({self.source})"


@dataclass(frozen=True)
class ImageLayout:
    """The gray images of one file, from its header: ``planes[image][channel]`` is the page holding them."""

    path: Path
    #: "OME-TIFF", "ImageJ TIFF", "TIFF", "PNG" ...: the format, for messages.
    kind: str
    height: int
    width: int
    #: The axes the images run over, outermost first (e.g. "TZ"), and their lengths; "" and () for one image.
    axes: str
    shape: tuple[int, ...]
    #: "C": each channel is a page of its own; "S": the channels are samples of one page; "": gray.
    channel_axis: str
    #: One name per channel ("" where the file names none); () for gray.
    channel_names: tuple[str, ...]
    #: The page (IFD index) of every image: one per channel for "C", one per image otherwise.
    planes: tuple[tuple[int, ...], ...]
    #: For "S": the position of each channel among the samples :func:`data.image_io.read_array` returns.
    sample_columns: tuple[int, ...]
    pixel_size: PixelSize | None
    #: Why a pixel size found in the file was not taken (e.g. a 72 dpi default), for the log.
    pixel_size_note: str = ""

    @property
    def images(self) -> int:
        return len(self.planes)

    @property
    def channels(self) -> int:
        """How many channels the file has (1 for gray)."""
        return max(1, len(self.channel_names))

    def describe_channels(self) -> str:
        """The channels as the user may name them: ``0 'DAPI', 1 'GFP'`` or ``0, 1, 2``."""
        if not self.channel_names:
            return "0 (gray)"
        return ", ".join(f"{index} {name!r}" if name else str(index) for index, name in enumerate(self.channel_names))

    def describe_axes(self) -> str:
        """The axes of the file in words, e.g. ``T 3 (time) x Z 5 (depth) x C 2 (channel)``."""
        parts = [
            f"{axis} {length} ({AXIS_WORDS.get(axis, 'other')})"
            for axis, length in zip(self.axes, self.shape, strict=True)
        ]
        if self.channel_axis == "C":
            parts.append(f"C {self.channels} (channel)")
        return " x ".join(parts) if parts else "one image"

    def channel_index(self, request: str | None) -> int | None:
        """The channel ``--channel`` names (a number, or a name the file gives a channel; None: not given).

        Raises :class:`ImageReadError` naming the file for a number out of range, an unknown name, or a
        file of several planar channels without ``--channel`` (which one holds the nuclei cannot be guessed).
        """
        if request is None:
            if self.channel_axis == "C":
                raise ImageReadError(
                    f"{self.kind} {self.path} has {self.channels} channels ({self.describe_channels()}); pass "
                    "--channel with the one that shows the nuclei (its number or name)"
                )
            return None
        if request.strip().lstrip("-").isdigit():
            index = int(request)
            if not 0 <= index < self.channels:
                raise ImageReadError(
                    f"--channel {request} is out of range for {self.kind} {self.path}, which has {self.channels} "
                    f"channel(s): {self.describe_channels()}"
                )
            return index
        for matches in (lambda name: name == request, lambda name: name.casefold() == request.casefold()):
            found = [index for index, name in enumerate(self.channel_names) if name and matches(name)]
            if found:
                return found[0]
        named = "" if any(self.channel_names) else " (it names none: give the number)"
        raise ImageReadError(
            f"--channel {request!r}: {self.kind} {self.path} has no channel of that name; its channels: "
            f"{self.describe_channels()}{named}"
        )


def read_layout(path: str | os.PathLike) -> ImageLayout:
    """The :class:`ImageLayout` of ``path`` from its header; :class:`ImageReadError` naming it if that fails."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"image file not found: {path}")
    try:
        if path.suffix.lower() in TIFF_EXTENSIONS:
            return _tiff_layout(path)
        return _pillow_layout(path)
    except ImageReadError:
        raise
    except Exception as error:  # every decoder failure becomes one clear message
        raise ImageReadError(
            f"cannot read image {path}: {error}. The file may be corrupt or truncated; "
            "replace it or remove it from the folder."
        ) from error


def read_plane(layout: ImageLayout, image: int, channel: int | None, max_pixels: int | None) -> np.ndarray:
    """Image ``image`` of the file, channel ``channel`` (None: the file is gray), as stored: (H, W), dtype kept.

    A colour page without ``channel`` is taken as gray only when its channels are equal (gray saved as
    RGB); otherwise it is refused with the list of channels, since turning fluorescence channels into
    luma mixes the nuclei with other stains.
    """
    page = layout.planes[image][channel if layout.channel_axis == "C" and channel is not None else 0]
    array = read_array(layout.path, page=page, max_pixels=max_pixels)
    name = layout.path if layout.images == 1 else f"{layout.path} image {image}"
    if layout.channel_axis != "S":
        return array if array.ndim == 2 else array[:, :, 0]  # gray + alpha: the gray
    columns = layout.sample_columns
    if array.ndim != 3 or array.shape[2] <= max(columns):
        raise ImageReadError(
            f"{name} has {1 if array.ndim == 2 else array.shape[2]} sample(s) per pixel where the first page of "
            f"{layout.path} has {len(columns)} channel(s); pages that differ cannot be told apart by --channel"
        )
    if channel is not None:
        return array[:, :, columns[channel]]
    if _equal_channels(array, columns):
        return array[:, :, columns[0]]
    raise ImageReadError(
        f"{name} has {len(columns)} different channels ({layout.describe_channels()}); pass --channel with the "
        "one that shows the nuclei (its number or name): a mix of fluorescence channels is not a nucleus image"
    )


def _equal_channels(array: np.ndarray, columns: tuple[int, ...]) -> bool:
    for top in range(0, array.shape[0], _ROWS_AT_A_TIME):
        band = array[top : top + _ROWS_AT_A_TIME]
        if any(not np.array_equal(band[:, :, columns[0]], band[:, :, column]) for column in columns[1:]):
            return False
    return True


# -- TIFF ----------------------------------------------------------------------------------------


def _tiff_layout(path: Path) -> ImageLayout:
    with tifffile.TiffFile(path) as tiff:
        if not tiff.pages:
            raise ImageReadError(f"TIFF file {path} holds no image pages")
        if tiff.is_ome:
            return _ome_layout(tiff, path)
        if tiff.is_imagej:
            return _series_layout(tiff, path, "ImageJ TIFF", (), _imagej_pixel_size(tiff))
        pixel_size, note = _resolution_pixel_size(tiff.pages.first)
        if tiff.is_shaped and len(tiff.series) == 1:
            return _series_layout(tiff, path, "TIFF", (), (pixel_size, note))
        return _pages_layout(tiff, path, (pixel_size, note))


def _pages_layout(tiff: tifffile.TiffFile, path: Path, pixel_size: tuple[PixelSize | None, str]) -> ImageLayout:
    """Every full-resolution page an image of its own (a plain multi-page stack); channels from the samples."""
    pages = [page for page in tiff.pages if not int(page.subfiletype) & 1]
    if not pages:
        raise ImageReadError(f"TIFF file {path} holds reduced-resolution pages only, no full image")
    first = pages[0]
    names, columns = _sample_channels(first)
    axes, shape = ("Q", (len(pages),)) if len(pages) > 1 else ("", ())
    return ImageLayout(
        path=path,
        kind="TIFF",
        height=first.imagelength,
        width=first.imagewidth,
        axes=axes,
        shape=shape,
        channel_axis="S" if len(names) > 1 else "",
        channel_names=names if len(names) > 1 else (),
        planes=tuple((page.index,) for page in pages),
        sample_columns=columns if len(names) > 1 else (),
        pixel_size=pixel_size[0],
        pixel_size_note=pixel_size[1],
    )


def _series_layout(
    tiff: tifffile.TiffFile,
    path: Path,
    kind: str,
    names: tuple[str, ...],
    pixel_size: tuple[PixelSize | None, str],
) -> ImageLayout:
    """The planes of tifffile's first series (OME, ImageJ or shaped), by their axes."""
    series = tiff.series[0]
    # The axes beyond one page's (height, width, samples), in storage order, with their lengths.
    outer = [
        (axis, length)
        for axis, length in zip(series.get_axes(False), series.get_shape(False), strict=True)
        if axis not in "YXS"
    ]
    lengths = tuple(length for _, length in outer)
    if math.prod(lengths) != len(series.pages) or any(page is None for page in series.pages):
        raise ImageReadError(
            f"{kind} {path} declares {math.prod(lengths)} plane(s) ({' x '.join(f'{a} {n}' for a, n in outer)}) "
            f"but holds {sum(page is not None for page in series.pages)}: the metadata disagrees with the pixel "
            "data (a truncated file, or metadata edited by hand); export the image again"
        )
    key = series.keyframe
    channel_position = next((index for index, (axis, length) in enumerate(outer) if axis == "C" and length > 1), None)
    others = [index for index in range(len(outer)) if index != channel_position]
    channel_count = lengths[channel_position] if channel_position is not None else 1
    planes: list[tuple[int, ...]] = []
    for position in np.ndindex(*[lengths[index] for index in others]):  # one image per position, C order
        full = dict(zip(others, position, strict=True))
        plane_pages = []
        for channel in range(channel_count):
            if channel_position is not None:
                full[channel_position] = channel
            flat = int(np.ravel_multi_index([full[index] for index in range(len(outer))], lengths)) if lengths else 0
            plane_pages.append(_ifd_index(series.pages[flat], path))
        planes.append(tuple(plane_pages))
    kept = [index for index in others if lengths[index] > 1]
    if channel_position is not None:
        count = lengths[channel_position]
        channel_axis, channel_names, columns = "C", tuple(names[:count]) + ("",) * (count - len(names)), ()
    else:
        sample_names, columns = _sample_channels(key)
        many = len(sample_names) > 1
        channel_axis = "S" if many else ""
        channel_names = (tuple(names) if len(names) == len(sample_names) else sample_names) if many else ()
        columns = columns if many else ()
    return ImageLayout(
        path=path,
        kind=kind,
        height=key.imagelength,
        width=key.imagewidth,
        axes="".join(outer[index][0] for index in kept),
        shape=tuple(lengths[index] for index in kept),
        channel_axis=channel_axis,
        channel_names=channel_names,
        planes=tuple(planes),
        sample_columns=columns,
        pixel_size=pixel_size[0],
        pixel_size_note=pixel_size[1],
    )


def _ifd_index(page: tifffile.TiffPage | tifffile.TiffFrame, path: Path) -> int:
    if not isinstance(page.index, int):
        raise ImageReadError(f"TIFF file {path} keeps its image planes in sub-IFDs, which cannot be read here")
    return page.index


def _sample_channels(page: tifffile.TiffPage) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The channels among one page's samples as :func:`data.image_io.read_array` returns them: names, positions.

    Palette, CMYK and YCbCr pages come out as RGB; alpha samples are left out.
    """
    photometric = page.photometric
    colour = photometric in (
        tifffile.PHOTOMETRIC.RGB,
        tifffile.PHOTOMETRIC.PALETTE,
        tifffile.PHOTOMETRIC.SEPARATED,
        tifffile.PHOTOMETRIC.YCBCR,
    )
    first = 3 if colour else 1
    stored = 4 if photometric == tifffile.PHOTOMETRIC.SEPARATED else first
    extras = list(page.extrasamples)
    if page.samplesperpixel > stored + len(extras):  # extra samples the header does not describe
        extras += [tifffile.EXTRASAMPLE.UNSPECIFIED] * (page.samplesperpixel - stored - len(extras))
    columns = list(range(first)) + [first + index for index, kind in enumerate(extras) if kind not in _ALPHA]
    if len(columns) == 1:
        return ("",), (0,)
    names = [_RGB_NAMES[column] if colour and column < 3 else "" for column in columns]
    return tuple(names), tuple(columns)


# -- OME-TIFF ------------------------------------------------------------------------------------


def _ome_layout(tiff: tifffile.TiffFile, path: Path) -> ImageLayout:
    """An OME-TIFF's first image, its declared sizes checked against the pages before tifffile reads them."""
    try:
        root = ElementTree.fromstring(tiff.ome_metadata)
    except ElementTree.ParseError as error:
        raise ImageReadError(f"OME-TIFF {path}: its OME-XML metadata cannot be parsed ({error})") from error
    namespace = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    images = root.findall(f"{namespace}Image")
    pixels = images[0].find(f"{namespace}Pixels") if images else None
    if pixels is None:
        raise ImageReadError(f"OME-TIFF {path}: its OME-XML describes no image (no Image/Pixels element)")
    if len(images) > 1:
        logger.warning("%s holds %d images (OME series); only the first is colorized", path, len(images))
    try:
        sizes = {axis: int(pixels.get(f"Size{axis}", "1")) for axis in "XYZCT"}
    except ValueError as error:
        raise ImageReadError(f"OME-TIFF {path}: its OME-XML gives a size that is not a number ({error})") from error
    channels = pixels.findall(f"{namespace}Channel")
    samples = int(channels[0].get("SamplesPerPixel", "1")) if channels else 1
    planes = sizes["Z"] * sizes["T"] * max(1, sizes["C"] // max(1, samples))
    first = tiff.pages.first
    declared = f"{sizes['X']}x{sizes['Y']} pixels in {planes} plane(s) (Z {sizes['Z']}, C {sizes['C']}, T {sizes['T']})"
    found = f"{len(tiff.pages)} page(s), the first {first.imagewidth}x{first.imagelength}"
    if (first.imagewidth, first.imagelength) != (sizes["X"], sizes["Y"]) or planes > len(tiff.pages):
        raise ImageReadError(
            f"OME-TIFF {path} declares {declared} in its OME-XML, but its TIFF data hold {found}: the metadata "
            "disagrees with the pixel data (a truncated file, or metadata edited by hand); export the image again"
        )
    with _quiet_tifffile():  # its warnings about a mismatch would precede ours
        kind = tiff.series[0].kind
    if kind != "ome":
        raise ImageReadError(
            f"OME-TIFF {path} declares {declared} in its OME-XML, which its TIFF data ({found}) do not match; "
            "export the image again"
        )
    names = tuple(channel.get("Name", "") for channel in channels) if samples == 1 else ()
    return _series_layout(tiff, path, "OME-TIFF", names, _ome_pixel_size(pixels, path))


@contextlib.contextmanager
def _quiet_tifffile() -> Iterator[None]:
    tifffile_logger = logging.getLogger("tifffile")
    level = tifffile_logger.level
    tifffile_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        tifffile_logger.setLevel(level)


def _ome_pixel_size(pixels: ElementTree.Element, path: Path) -> tuple[PixelSize | None, str]:
    values = []
    for axis in "XY":
        text, unit = pixels.get(f"PhysicalSize{axis}"), pixels.get(f"PhysicalSize{axis}Unit", "µm")
        if text is None:
            values.append(None)
            continue
        factor = _MICROMETRES.get(unit.strip().casefold())
        try:
            value = float(text) * factor if factor is not None else None
        except ValueError:
            value = None
        if value is None or not 0 < value < math.inf:
            return None, f"its OME PhysicalSize{axis} {text!r} {unit!r} is not a length"
        values.append(value)
    if values[0] is None:
        return None, ""
    return PixelSize(values[0], values[1] if values[1] is not None else values[0], "OME PhysicalSizeX/Y"), ""


# -- ImageJ and plain TIFF tags ------------------------------------------------------------------


def _imagej_pixel_size(tiff: tifffile.TiffFile) -> tuple[PixelSize | None, str]:
    unit = str((tiff.imagej_metadata or {}).get("unit", "")).strip()
    if not unit or unit.casefold() in ("pixel", "pixels"):
        return None, ""
    factor = _MICROMETRES.get(unit.casefold())
    if factor is None:
        return None, f"its ImageJ unit {unit!r} is not a length this reader knows"
    if "XResolution" not in tiff.pages.first.tags:
        return None, ""
    x, y = tiff.pages.first.get_resolution()
    if not (0 < x < math.inf and 0 < y < math.inf):
        return None, ""
    return PixelSize(factor / x, factor / y, f"ImageJ unit {unit!r} and resolution tags"), ""


def _resolution_pixel_size(page: tifffile.TiffPage) -> tuple[PixelSize | None, str]:
    """The pixel size of TIFF resolution tags in inches or centimetres (or tifffile's mm/um)."""
    unit = page.tags.valueof(296, default=2)  # ResolutionUnit; the TIFF default is the inch
    per_unit = {2: 25400.0, 3: 1e4, 4: 1e3, 5: 1.0}.get(int(unit))
    if per_unit is None or "XResolution" not in page.tags or "YResolution" not in page.tags:
        return None, ""
    x, y = page.get_resolution()
    if not (0 < x < math.inf and 0 < y < math.inf):
        return None, ""
    size = PixelSize(per_unit / x, per_unit / y, "TIFF resolution tags")
    if max(size.x_um, size.y_um) > LARGEST_PIXEL_UM:
        unit_name = {2: "inch", 3: "cm", 4: "mm", 5: "um"}[int(unit)]
        return None, (
            f"its TIFF resolution ({x:g} pixels per {unit_name}, {size.x_um:.4g} um per pixel) is a screen or print "
            f"default, not a microscope's pixel (over {LARGEST_PIXEL_UM:g} um)"
        )
    return size, ""


# -- PNG, JPEG, BMP ------------------------------------------------------------------------------


def _pillow_layout(path: Path) -> ImageLayout:
    width, height, mode = pillow_header(path)
    colour = mode not in ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
    return ImageLayout(
        path=path,
        kind=path.suffix.lstrip(".").upper() or "image",
        height=height,
        width=width,
        axes="",
        shape=(),
        channel_axis="S" if colour else "",
        channel_names=_RGB_NAMES if colour else (),
        planes=((0,),),
        sample_columns=(0, 1, 2) if colour else (),
        pixel_size=None,
    )
