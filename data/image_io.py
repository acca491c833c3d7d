"""The one image reader and writer of the project.

Every image enters through :func:`read_image`: PNG, JPEG, BMP or TIFF; 1-bit, 8-bit, 16-bit,
32-bit or float; gray, gray+alpha, palette, RGB, RGBA or CMYK. It comes out as float32 in
[0, 1] with the number of channels the caller asks for. Errors name the file.

A file that ends early is refused, never padded: Pillow is held strict for every read, whatever
``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` says, and a PNG is checked for what Pillow lets pass (a
missing IEND chunk, pixel data that ends before the last row; see :func:`_read_png`).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, ImageFile

from util.atomic import atomic_path
from util.color import LUMA_WEIGHTS
from util.errors import ImageReadError, ImageTooLargeError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
TIFF_EXTENSIONS = (".tif", ".tiff")

# Pillow modes that carry colour in a form other than RGB; they are converted on reading.
_PILLOW_TO_RGB_MODES = {"P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "RGBX", "RGBa"}

#: Images above this many pixels are refused by default, whatever their format: Pillow's
#: decompression-bomb limit, so that a corrupt header declaring a huge image fails at once instead
#: of allocating gigabytes and decoding for minutes. colorize.py and prepare_slide.py let their
#: users raise it (``--max_megapixels``, see :func:`pixel_limit`).
MAX_PIXELS = 2 * 89_478_485
#: The most samples per pixel an image can have here: CMYK plus alpha.
_MAX_SAMPLES = 5


def pixel_limit(megapixels: float | None) -> int | None:
    """A ``--max_megapixels`` flag as ``max_pixels``: :data:`MAX_PIXELS` when not given, None (no limit) for 0."""
    if megapixels is None:
        return MAX_PIXELS
    return None if megapixels == 0 else max(1, round(megapixels * 1_000_000))


def is_image_file(path: str | os.PathLike) -> bool:
    """True for a visible file with a supported image extension (case-insensitive)."""
    path = Path(path)
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def list_images(directory: str | os.PathLike) -> list[Path]:
    """All image files below ``directory`` (subfolders included), sorted by relative path."""
    directory = Path(directory)
    found = [path for path in directory.rglob("*") if path.is_file() and is_image_file(path)]
    return sorted(found, key=lambda path: path.relative_to(directory).as_posix())


def read_array(path: str | os.PathLike, page: int = 0, max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """The pixels of ``path`` as stored: (H, W) or (H, W, C) with C in 1..4, dtype unchanged.

    ``page`` chooses the page of a multi-page TIFF (see :func:`page_count`). An image larger than
    ``max_pixels`` is refused before it is decoded (None: no limit, for mosaics and scans). Raises
    :class:`ImageReadError` naming the file if it is missing, corrupt, truncated, empty or not an image.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"image file not found: {path}")
    return _decode(path, str(path), page, max_pixels)


def page_count(path: str | os.PathLike) -> int:
    """The number of images in ``path``: the pages of a TIFF stack, 1 for other formats."""
    path = Path(path)
    if path.suffix.lower() not in TIFF_EXTENSIONS:
        return 1
    try:
        with tifffile.TiffFile(path) as tiff:
            return len(tiff.pages)
    except Exception as error:
        raise ImageReadError(f"cannot read image {path}: {error}") from error


def pillow_header(path: str | os.PathLike) -> tuple[int, int, str]:
    """(width, height, Pillow mode) of a PNG, JPEG or BMP file, from its header alone (no pixel limit applies)."""
    with _strict_pillow(), Image.open(path) as image:
        return image.width, image.height, image.mode


def decode_array(data: bytes, name: str) -> np.ndarray:
    """:func:`read_array` of an image file held in memory, e.g. a member of a zip archive.

    ``name`` (the file's name or archive path) chooses the decoder by its extension and names
    the image in errors.
    """
    return _decode(io.BytesIO(data), name)


def _decode(source: Path | io.BytesIO, name: str, page: int = 0, max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    try:
        is_tiff = Path(name).suffix.lower() in TIFF_EXTENSIONS
        if page and not is_tiff:
            raise ImageReadError(f"image {name} has one page only; page {page} was asked for")
        array = _read_tiff(source, name, page, max_pixels) if is_tiff else _read_with_pillow(source, name, max_pixels)
    except ImageReadError:
        raise
    except Exception as error:  # every decoder failure becomes one clear message
        raise ImageReadError(
            f"cannot read image {name}: {error}. The file may be corrupt or truncated; "
            "replace it or remove it from the folder."
        ) from error
    return _check_layout(array, name)


def to_unit_range(array: np.ndarray) -> np.ndarray:
    """Pixel values as float32 in [0, 1].

    8-bit and boolean images are divided by their type's maximum. Any other type (16-bit,
    32-bit, float outside [0, 1]) is scaled by its real range (min -> 0, max -> 1): microscopy
    cameras rarely fill 16 bits, so dividing by 65535 would give a black image and clipping at
    255 would saturate it. A constant image becomes all zeros. Floats already in [0, 1] are kept.
    """
    low, high = unit_range_bounds(array)
    if array.dtype == np.bool_ or ((low, high) == (0.0, 1.0) and np.issubdtype(array.dtype, np.floating)):
        return array.astype(np.float32)
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if high <= low:
        return np.zeros(array.shape, dtype=np.float32)
    return ((array.astype(np.float64) - low) / (high - low)).astype(np.float32)


def unit_range_bounds(array: np.ndarray) -> tuple[float, float]:
    """The values :func:`to_unit_range` maps to 0 and 1 (the rule its docstring states)."""
    if array.dtype == np.bool_:
        return 0.0, 1.0
    if array.dtype == np.uint8:
        return 0.0, 255.0
    low, high = float(array.min()), float(array.max())
    if np.issubdtype(array.dtype, np.floating) and low >= 0.0 and high <= 1.0:
        return 0.0, 1.0
    return low, high


def read_image(path: str | os.PathLike, channels: int) -> np.ndarray:
    """Read ``path`` as float32 (H, W, ``channels``) in [0, 1]; ``channels`` is 1 (gray) or 3 (RGB).

    RGB becomes gray by BT.601 luma; gray becomes RGB by repeating; alpha is dropped.
    """
    return image_from_array(read_array(path), channels, path)


def image_from_array(array: np.ndarray, channels: int, path: str | os.PathLike) -> np.ndarray:
    """:func:`read_image` of pixels already read by :func:`read_array` from ``path`` (named in errors)."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if not np.isfinite(array).all():
        raise ImageReadError(f"image {path} contains NaN or infinite values")
    image = to_unit_range(array)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[2] in (2, 4):  # gray+alpha or RGBA: the alpha channel carries no stain
        image = image[:, :, :-1]
    if image.shape[2] == channels:
        return np.ascontiguousarray(image)
    if channels == 3:
        return np.repeat(image, 3, axis=2)
    weights = np.asarray(LUMA_WEIGHTS, dtype=np.float32)
    return (image @ weights)[:, :, None]


def read_mask_values(path: str | os.PathLike) -> np.ndarray:
    """The raw values of a mask or label image as (H, W), dtype unchanged: foreground is where they are above 0.

    Not rescaled (``read_image`` would stretch 0/1 or 16-bit labels by their range); an alpha
    channel is dropped and colour masks keep, per pixel, the largest channel.
    """
    return mask_values_from_array(read_array(path), path)


def mask_values_from_array(array: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """:func:`read_mask_values` of pixels already read by :func:`read_array` from ``path`` (named in errors)."""
    if not np.isfinite(array).all():
        raise ImageReadError(
            f"mask {path} contains NaN or infinite values, which are neither foreground nor background"
        )
    if array.ndim == 3:
        if array.shape[2] in (2, 4):
            array = array[:, :, :-1]
        array = array.max(axis=2)
    return array


def write_image(path: str | os.PathLike, image: np.ndarray, pixel_size_um: tuple[float, float] | None = None) -> None:
    """Write an 8-bit gray (H, W) / (H, W, 1) or RGB (H, W, 3) array; the extension picks the format.

    ``pixel_size_um`` (x, y in micrometres) goes into a TIFF's resolution tags (pixels per centimetre);
    other formats ignore it. The file appears atomically, so a reader never sees half an image.
    """
    path = Path(path)
    if image.dtype != np.uint8:
        raise ValueError(f"write_image expects uint8 pixels, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    with atomic_path(path) as temporary:
        if path.suffix.lower() in TIFF_EXTENSIONS:
            calibration = (
                {"resolution": (1e4 / pixel_size_um[0], 1e4 / pixel_size_um[1]), "resolutionunit": "CENTIMETER"}
                if pixel_size_um is not None
                else {}
            )
            tifffile.imwrite(temporary, image, **calibration)
        else:
            Image.fromarray(image).save(temporary, format=Image.registered_extensions()[path.suffix.lower()])


def _read_tiff(source: Path | io.BytesIO, name: str, index: int, max_pixels: int | None) -> np.ndarray:
    with tifffile.TiffFile(source) as tiff:
        if not tiff.pages:
            raise ImageReadError(f"TIFF file {name} holds no image pages")
        if not 0 <= index < len(tiff.pages):
            raise ImageReadError(f"TIFF file {name} has {len(tiff.pages)} pages; page {index} was asked for")
        page = tiff.pages[index]
        _check_tiff_page(page, name, max_pixels)
        array = page.asarray()
        # Planar TIFFs store colour first: (C, H, W) -> (H, W, C). Decided by the header, not
        # by the shape: a contiguous image 3 or 4 pixels high looks planar.
        if page.planarconfig == tifffile.PLANARCONFIG.SEPARATE and page.samplesperpixel > 1:
            array = np.moveaxis(array, 0, -1)
        # Inside the ``with``: tifffile reads the colour map lazily, from the open file.
        if page.photometric == tifffile.PHOTOMETRIC.PALETTE:
            array = _apply_colormap(array, page.colormap, name)
        elif page.photometric == tifffile.PHOTOMETRIC.SEPARATED:
            array = _cmyk_to_rgb(array, page.tags.valueof(332, 1), name)
        elif page.photometric == tifffile.PHOTOMETRIC.MINISWHITE:
            array = _min_is_white_to_min_is_black(array, page.bitspersample, name)
    return array


def _check_tiff_page(page: tifffile.TiffPage, name: str, max_pixels: int | None) -> None:
    """Refuse a header that cannot match the data before tifffile allocates and decodes it.

    tifffile fills strips or tiles missing from the file with zeros (a truncated or corrupt
    file would load as a partly black image) and decodes a header's size however large.
    """
    if 0 in page.shape:
        raise ImageReadError(f"image {name} is empty (size {page.imagewidth}x{page.imagelength})")
    if page.samplesperpixel > _MAX_SAMPLES:
        raise ImageReadError(
            f"TIFF file {name} declares {page.samplesperpixel} samples per pixel; an image has at most "
            f"{_MAX_SAMPLES} (CMYK and alpha). The header is corrupt or the file is not an image."
        )
    _check_pixel_count(page.imagewidth, page.imagelength * page.imagedepth, name, max_pixels)
    expected = math.prod(page.chunked)
    found = min(len(page.dataoffsets), len(page.databytecounts))
    if found < expected:
        raise ImageReadError(
            f"TIFF file {name} holds {found} of the {expected} strips or tiles of pixel data its header "
            "declares. The file may be corrupt or truncated; replace it or remove it from the folder."
        )


def _apply_colormap(indices: np.ndarray, colormap: np.ndarray | None, name: str) -> np.ndarray:
    """Palette indices -> 8-bit RGB (H, W, 3); an index outside the colour map is an error."""
    if colormap is None:
        raise ImageReadError(f"palette TIFF file {name} has no colour map")
    # TIFF colour maps are 16-bit; a few writers store 8-bit values, which the top byte would zero.
    if colormap.max() > 255:
        colormap = colormap >> 8
    return colormap.astype(np.uint8).T[indices.astype(np.intp)]


def _min_is_white_to_min_is_black(array: np.ndarray, bits: int, name: str) -> np.ndarray:
    """Gray stored with 0 as white (some scanners and fax-style bilevel files) -> 0 as black, in the same dtype.

    tifffile returns the stored values; without this a nucleus image would load as its negative.
    Only the gray sample is flipped: an alpha sample keeps its meaning.
    """
    gray = array[:, :, 0] if array.ndim == 3 else array
    if gray.dtype == np.bool_:
        flipped = ~gray
    elif gray.dtype.kind in "iu":
        flipped = ((1 << bits) - 1 - gray.astype(np.int64)).astype(gray.dtype)
    else:
        raise ImageReadError(
            f"TIFF file {name} stores floating-point gray with 0 as white (MinIsWhite), whose white level "
            "is undefined; save it as an ordinary (MinIsBlack) image"
        )
    if array.ndim == 2:
        return flipped
    return np.concatenate([flipped[:, :, None], array[:, :, 1:]], axis=2)


def _cmyk_to_rgb(array: np.ndarray, inkset: int, name: str) -> np.ndarray:
    """CMYK (H, W, 4 + extra samples) -> RGB (H, W, 3 + extra samples) in the same dtype, as Pillow converts."""
    if inkset != 1 or array.ndim != 3 or array.shape[2] < 4:
        raise ImageReadError(
            f"TIFF file {name} stores separated inks other than CMYK (shape {array.shape}), which cannot be shown as RGB"
        )
    full = 1.0 if np.issubdtype(array.dtype, np.floating) else float(np.iinfo(array.dtype).max)
    ink = array[:, :, :4].astype(np.float64)
    rgb = (full - ink[:, :, :3]) * (full - ink[:, :, 3:]) / full
    if array.dtype.kind in "iu":
        rgb = np.rint(rgb)
    return np.concatenate([rgb.astype(array.dtype), array[:, :, 4:]], axis=2)


def _check_pixel_count(width: int, height: int, name: str, max_pixels: int | None) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLargeError(
            f"image {name} declares {width}x{height} pixels, more than {max_pixels}; its header is corrupt "
            "or the image is too large to read whole"
        )


@contextlib.contextmanager
def _strict_pillow() -> Iterator[None]:
    """Pillow's own pixel limit off (:func:`_check_pixel_count` applies ``max_pixels`` instead) and its
    leniency for truncated files off, for one read.

    With ``ImageFile.LOAD_TRUNCATED_IMAGES`` on (a notebook or another library may set it), Pillow pads a
    cut JPEG or PNG with black or gray instead of failing; the reader must not depend on that global.
    """
    limit, lenient = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
    Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = None, False
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = limit, lenient


def _read_with_pillow(source: Path | io.BytesIO, name: str, max_pixels: int | None) -> np.ndarray:
    with _strict_pillow(), Image.open(source) as image:  # opening reads only the header
        _check_pixel_count(image.width, image.height, name, max_pixels)
        if image.format == "PNG":
            _read_png(image, name)
        else:
            image.load()  # decode now, so that a truncated file fails here, naming the file
        if image.mode in _PILLOW_TO_RGB_MODES:
            has_alpha = image.mode in {"PA", "RGBa"} or "transparency" in image.info
            image = image.convert("RGBA" if has_alpha else "RGB")
        elif image.mode == "1":
            image = image.convert("L")
        return np.asarray(image)


_PNG_SIGNATURE_LENGTH = 8
#: A PNG chunk's length and type before its data, and its CRC after it.
_PNG_CHUNK_HEADER, _PNG_CHUNK_CRC = 8, 4
#: The zlib stream of a PNG's pixel data ends with this many bytes of checksum, which hold no pixels.
_ZLIB_CHECKSUM_LENGTH = 4
_TRUNCATED_ADVICE = "The file is truncated or corrupt; replace it or remove it from the folder."


def _read_png(image: ImageFile.ImageFile, name: str) -> None:
    """Decode an opened PNG, refusing what Pillow itself would pad with black or let pass.

    When the zlib stream of the pixel data ends cleanly before the last row, Pillow stops and leaves
    the remaining rows black without a word, and it ignores a missing IEND chunk. So the chunk
    headers are walked first (a cheap look at each header), and the decoder gets the stream's
    closing checksum (4 bytes, no pixels) one byte per request: a complete image has all its rows
    before it needs the checksum's last byte, an image with data for fewer rows needs the whole
    stream. One decode, no copy of the data.
    """
    pixel_data = _png_pixel_data_length(image.fp, name)
    guard = None
    if getattr(image, "n_frames", 1) == 1 and pixel_data > _ZLIB_CHECKSUM_LENGTH:
        guard = _ChecksumWithheld(image.load_read, pixel_data)
        image.load_read = guard  # the hook through which ImageFile.load reads a PNG's pixel data
    try:
        image.load()
    except OSError as error:
        if guard is None or not guard.needed_whole_stream:
            raise
        raise ImageReadError(_short_png_message(image, name)) from error
    if guard is not None and guard.needed_whole_stream:
        raise ImageReadError(_short_png_message(image, name))


def _short_png_message(image: Image.Image, name: str) -> str:
    return (
        f"cannot read image {name}: its PNG pixel data ends before the last of the {image.height} rows its "
        f"header declares (Pillow would fill the rest with black). {_TRUNCATED_ADVICE}"
    )


class _ChecksumWithheld:
    """Stands in for a PNG's ``load_read``: passes the ``total`` bytes of pixel data on, the last
    :data:`_ZLIB_CHECKSUM_LENGTH` of them one per request, and tells whether the decoder took them all.

    Pillow's decoder stops asking as soon as the last row is complete; it may ask once more to flush
    rows zlib holds back, but never for the checksum's last byte, which only ends the stream.
    """

    def __init__(self, read: Callable[[int], bytes], total: int) -> None:
        self.read, self.total = read, total
        self.delivered = 0

    def __call__(self, size: int) -> bytes:
        before_checksum = self.total - _ZLIB_CHECKSUM_LENGTH - self.delivered
        if before_checksum > 0:
            size = min(size, before_checksum) if size > 0 else before_checksum  # size <= 0: Pillow's "a chunk"
        elif self.delivered < self.total:
            size = 1
        data = self.read(size)
        self.delivered += len(data)
        return data

    @property
    def needed_whole_stream(self) -> bool:
        return self.delivered >= self.total


def _png_pixel_data_length(file: io.IOBase, name: str) -> int:
    """The bytes of pixel data (the first run of IDAT chunks) of the PNG in ``file``, from its chunk
    headers; an :class:`ImageReadError` if a chunk is cut short or the file ends before IEND."""
    size, header_at = _positional_reader(file)
    offset, pixel_data, in_run, run_over = _PNG_SIGNATURE_LENGTH, 0, False, False
    while True:
        header = header_at(offset, _PNG_CHUNK_HEADER)
        if len(header) < _PNG_CHUNK_HEADER:
            raise ImageReadError(
                f"cannot read image {name}: the PNG file ends at byte {size} without its closing IEND chunk. "
                f"{_TRUNCATED_ADVICE}"
            )
        length, kind = struct.unpack(">I4s", header)
        end = offset + _PNG_CHUNK_HEADER + length + _PNG_CHUNK_CRC
        if end > size:
            raise ImageReadError(
                f"cannot read image {name}: the PNG file ends at byte {size}, inside its "
                f"{kind.decode('ascii', 'replace')} chunk, which runs to byte {end}. {_TRUNCATED_ADVICE}"
            )
        if kind == b"IEND":
            return pixel_data
        if kind == b"IDAT" and not run_over:  # Pillow decodes the first run of IDAT chunks only
            pixel_data, in_run = pixel_data + length, True
        run_over = in_run and kind != b"IDAT"
        offset = end


def _positional_reader(file: io.IOBase) -> tuple[int, Callable[[int, int], bytes]]:
    """The size of ``file`` and a reader of bytes at an offset that leaves the file's position alone.

    A file on disk is read with ``os.pread``, which keeps its buffer too, so that Pillow reads on
    where it stopped without reading anything again.
    """
    if hasattr(os, "pread") and not isinstance(file, io.BytesIO):
        descriptor = file.fileno()
        return os.fstat(descriptor).st_size, lambda offset, length: os.pread(descriptor, length, offset)

    def read_at(offset: int, length: int) -> bytes:
        position = file.tell()
        try:
            file.seek(offset)
            return file.read(length)
        finally:
            file.seek(position)

    position = file.tell()
    size = file.seek(0, os.SEEK_END)
    file.seek(position)
    return size, read_at


def _check_layout(array: np.ndarray, path: str) -> np.ndarray:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] > 4):
        raise ImageReadError(
            f"image {path} has shape {array.shape}; expected a single 2-D gray or colour image "
            "(H, W) or (H, W, C) with at most 4 channels"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageReadError(f"image {path} is empty (size {array.shape[1]}x{array.shape[0]})")
    if array.dtype.kind == "c":
        raise ImageReadError(f"image {path} holds complex numbers, which are not pixel values")
    return array
