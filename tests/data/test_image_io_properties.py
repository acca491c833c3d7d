"""Robustness of the image loaders in ``data/image_io.py`` against any file content.

Hypothesis feeds ``read_array``, ``decode_array``, ``read_image`` (1 and 3 channels) and
``read_mask_values`` random bytes, truncated images and images with a few bytes changed: each
loader either returns pixels in the documented layout or raises ``ImageReadError`` naming the
file, and never hangs. Explicit cases cover empty, 1x1 and 5000x3 images, palette, RGBA, CMYK,
gray+alpha, 16-bit and float pictures, and a corrupt file read by a real DataLoader worker.
"""

from __future__ import annotations

import io
import signal
import struct
import tempfile
import warnings
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from data.image_io import decode_array, read_array, read_image, read_mask_values
from util.errors import ImageReadError, user_message

# Reproducible in CI (derandomize), no example database kept between runs, and no time limits:
# a slow CI machine must not fail a test, a hang trips _time_limit instead.
_PROPERTY_SETTINGS = settings(
    deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)
# Far above the milliseconds a small image takes, so that only a hang trips it.
_SECONDS_PER_LOAD = 10.0
_EXTENSIONS = (".png", ".jpg", ".tif", ".bmp")
_MAGIC = (b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"BM")
# (extension, dtype, channels, planar): layouts each format can store; all but JPEG keep pixels exactly.
_LAYOUTS = (
    (".png", "uint8", 1, False),
    (".png", "uint8", 3, False),
    (".png", "uint8", 4, False),
    (".png", "uint16", 1, False),
    (".bmp", "uint8", 1, False),
    (".bmp", "uint8", 3, False),
    (".jpg", "uint8", 1, False),
    (".jpg", "uint8", 3, False),
    (".tif", "uint8", 1, False),
    (".tif", "uint8", 2, False),
    (".tif", "uint8", 3, False),
    (".tif", "uint8", 3, True),
    (".tif", "uint8", 4, False),
    (".tif", "uint16", 1, False),
    (".tif", "uint16", 3, True),
    (".tif", "float32", 1, False),
    (".tif", "float32", 3, False),
)


class _Hang(BaseException):
    """Raised by the alarm; a BaseException, so that the loaders' ``except Exception`` cannot hide it."""


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Turn a hang inside the block into a test failure (SIGALRM interrupts Python code only)."""

    def _alarm(signum: int, frame: object) -> None:
        raise _Hang(f"an image loader ran for more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _outcome(load: Callable[[], np.ndarray], name: str) -> np.ndarray | None:
    """What ``load`` returns, or None when it raises ImageReadError naming ``name``; anything else fails."""
    with _time_limit(_SECONDS_PER_LOAD):
        try:
            return load()
        except ImageReadError as error:
            assert name in str(error), f"the error does not name {name}: {error}"
            return None


def _load_with_every_loader(path: Path) -> np.ndarray | None:
    """``read_array(path)``, after checking that all loaders agree on it; None if they all refuse the file."""
    array = _outcome(lambda: read_array(path), str(path))
    decoded = _outcome(lambda: decode_array(path.read_bytes(), path.name), path.name)
    mask = _outcome(lambda: read_mask_values(path), str(path))
    images = {
        channels: _outcome(lambda channels=channels: read_image(path, channels), str(path)) for channels in (1, 3)
    }
    if array is None:
        assert decoded is None and mask is None, "read_array refused a file another loader read"
        assert images == {1: None, 3: None}, "read_array refused a file read_image read"
        return None
    assert isinstance(array, np.ndarray) and array.dtype.kind in "biuf", array.dtype
    assert array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (2, 3, 4)), array.shape
    height, width = array.shape[:2]
    assert height >= 1 and width >= 1, array.shape
    assert decoded is not None, "decode_array refused bytes that read_array read"
    np.testing.assert_array_equal(decoded, array)
    if not np.isfinite(array).all():
        assert mask is None, "read_mask_values accepted NaN or infinite pixels"
        assert images == {1: None, 3: None}, "read_image accepted NaN or infinite pixels"
        return array
    assert mask is not None and mask.shape == (height, width), None if mask is None else mask.shape
    for channels, image in images.items():
        assert image is not None, "read_image refused pixels that read_array read"
        assert image.dtype == np.float32 and image.shape == (height, width, channels), (image.dtype, image.shape)
        assert np.isfinite(image).all() and image.min() >= 0.0 and image.max() <= 1.0
    return array


def _write_and_load(data: bytes, filename: str) -> np.ndarray | None:
    """:func:`_load_with_every_loader` of ``data`` saved as ``filename`` in a fresh folder."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / filename
        path.write_bytes(data)
        return _load_with_every_loader(path)


def _encode(array: np.ndarray, extension: str, planar: bool = False) -> bytes:
    """``array`` (H, W) or (H, W, C) as the bytes of an image file of type ``extension``."""
    buffer = io.BytesIO()
    if extension == ".tif":
        channels = 1 if array.ndim == 2 else array.shape[2]
        photometric = "minisblack" if channels <= 2 else "rgb"
        extrasamples = ["unassalpha"] if channels in (2, 4) else None
        if planar:
            tifffile.imwrite(
                buffer,
                np.moveaxis(array, -1, 0),
                photometric=photometric,
                planarconfig="separate",
                extrasamples=extrasamples,
            )
        else:
            tifffile.imwrite(buffer, array, photometric=photometric, planarconfig="contig", extrasamples=extrasamples)
    else:
        Image.fromarray(array).save(buffer, format=Image.registered_extensions()[extension])
    return buffer.getvalue()


@st.composite
def _valid_images(draw: st.DrawFn) -> tuple[np.ndarray, str, bytes]:
    """A small random image in one of :data:`_LAYOUTS`: (pixels as read back, extension, file bytes)."""
    extension, dtype, channels, planar = draw(st.sampled_from(_LAYOUTS))
    shape = (draw(st.integers(1, 8)), draw(st.integers(1, 8)))
    if channels > 1:
        shape = (*shape, channels)
    elements = st.floats(0.0, 1.0, width=32) if dtype == "float32" else None
    array = draw(hnp.arrays(np.dtype(dtype), shape, elements=elements))
    return array, extension, _encode(array, extension, planar)


@given(magic=st.sampled_from(_MAGIC), tail=st.binary(max_size=1024), extension=st.sampled_from(_EXTENSIONS))
@settings(_PROPERTY_SETTINGS, max_examples=200)
def test_random_bytes_load_or_raise_image_read_error_naming_the_file(magic: bytes, tail: bytes, extension: str) -> None:
    _write_and_load(magic + tail, f"random{extension}")


@given(image=_valid_images(), data=st.data())
@settings(_PROPERTY_SETTINGS, max_examples=150)
def test_truncated_image_loads_its_pixels_or_raises_image_read_error_naming_the_file(
    image: tuple[np.ndarray, str, bytes], data: st.DataObject
) -> None:
    array, extension, encoded = image
    # Half the examples keep the whole file, which must then load exactly.
    cut = data.draw(st.one_of(st.just(len(encoded)), st.integers(0, len(encoded) - 1)), label="cut")
    loaded = _write_and_load(encoded[:cut], f"cut{extension}")
    if cut == len(encoded):
        assert loaded is not None, "a complete image was refused"
    if loaded is None:
        return
    assert loaded.shape == array.shape, (loaded.shape, array.shape)
    if extension != ".jpg":  # a lossless image that loads must hold exactly the pixels written
        np.testing.assert_array_equal(loaded, array)


@cache
def _samples() -> dict[str, bytes]:
    """Valid files of every kind the loaders take, to be corrupted byte by byte."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    samples = {
        "gray.png": _encode(rgb[:, :, 0], ".png"),
        "rgba.png": _encode(rng.integers(0, 256, (12, 10, 4), dtype=np.uint8), ".png"),
        "deep.png": _encode(rng.integers(0, 65536, (12, 10), dtype=np.uint16), ".png"),
        "rgb.jpg": _encode(rgb, ".jpg"),
        "rgb.bmp": _encode(rgb, ".bmp"),
        "planar.tif": _encode(rng.integers(0, 65536, (12, 10, 3), dtype=np.uint16), ".tif", planar=True),
        "float.tif": _encode(rng.random((12, 10), dtype=np.float32), ".tif"),
    }
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, rgb[:, :, 0], rowsperstrip=2)
    samples["strips.tif"] = buffer.getvalue()
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, rng.integers(0, 256, (32, 32), dtype=np.uint8), tile=(16, 16), compression="zlib")
    samples["tiles.tif"] = buffer.getvalue()
    for name, mode in (("palette.png", "P"), ("palette.tif", "P"), ("cmyk.tif", "CMYK")):
        buffer = io.BytesIO()
        Image.fromarray(rgb).convert(mode).save(buffer, format=Image.registered_extensions()[Path(name).suffix])
        samples[name] = buffer.getvalue()
    return samples


@given(name=st.sampled_from(sorted(_samples())), data=st.data())
@settings(_PROPERTY_SETTINGS, max_examples=200)
def test_image_with_changed_bytes_loads_or_raises_image_read_error_naming_the_file(
    name: str, data: st.DataObject
) -> None:
    corrupt = bytearray(_samples()[name])
    changes = data.draw(
        st.lists(st.tuples(st.integers(0, len(corrupt) - 1), st.integers(0, 255)), min_size=1, max_size=4),
        label="changes",
    )
    for position, value in changes:
        corrupt[position] = value
    _write_and_load(bytes(corrupt), name)


@pytest.mark.parametrize("extension", [".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"])
def test_empty_file_is_refused_naming_it(tmp_path: Path, extension: str) -> None:
    path = tmp_path / f"empty{extension}"
    path.write_bytes(b"")
    assert _load_with_every_loader(path) is None
    with pytest.raises(ImageReadError, match=rf"empty\{extension}"):
        read_image(path, 3)


def test_zero_size_tiff_is_refused_as_empty(tmp_path: Path) -> None:
    path = tmp_path / "nothing.tif"
    with warnings.catch_warnings():  # tifffile warns that a zero-size TIFF is nonconformant
        warnings.simplefilter("ignore")
        tifffile.imwrite(path, np.zeros((0, 5), np.uint8))
    assert _load_with_every_loader(path) is None
    with pytest.raises(ImageReadError, match=r"nothing\.tif is empty"):
        read_array(path)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


@pytest.mark.parametrize("size", [(0, 5), (5, 0)], ids=["zero-wide", "zero-high"])
def test_png_declaring_zero_size_is_refused_naming_it(tmp_path: Path, size: tuple[int, int]) -> None:
    width, height = size
    header = _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    pixels = _png_chunk(b"IDAT", zlib.compress(b"\x00" * (height * (width + 1))))
    path = tmp_path / "flat.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + header + pixels + _png_chunk(b"IEND", b""))
    assert _load_with_every_loader(path) is None


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("extension", [".png", ".tif", ".bmp", ".jpg"])
@pytest.mark.parametrize("size", [(1, 1), (5000, 3), (3, 5000)], ids=["1x1", "5000x3", "3x5000"])
def test_tiny_and_extremely_elongated_images_load_with_their_shape(
    tmp_path: Path, size: tuple[int, int], extension: str, channels: int
) -> None:
    shape = size if channels == 1 else (*size, channels)
    array = np.random.default_rng(3).integers(0, 256, shape, dtype=np.uint8)
    path = tmp_path / f"image{extension}"
    path.write_bytes(_encode(array, extension))
    loaded = _load_with_every_loader(path)
    assert loaded is not None and loaded.shape == shape
    if extension != ".jpg":
        np.testing.assert_array_equal(loaded, array)
        np.testing.assert_allclose(read_image(path, channels), array.reshape(*size, channels) / 255.0, atol=1e-6)


def _rgb_test_card() -> np.ndarray:
    """A 6x7 RGB picture with distinct colours and both extremes, 0 and 255."""
    rng = np.random.default_rng(5)
    card = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    card[0, 0], card[0, 1] = (0, 0, 0), (255, 255, 255)
    return card


def test_palette_png_loads_as_its_colours(tmp_path: Path) -> None:
    palette = Image.fromarray(_rgb_test_card()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.save(tmp_path / "palette.png")
    loaded = _load_with_every_loader(tmp_path / "palette.png")
    np.testing.assert_array_equal(loaded, np.asarray(palette.convert("RGB")))
    palette.save(tmp_path / "clear.png", transparency=0)
    assert read_array(tmp_path / "clear.png").shape == (6, 7, 4)  # the transparent entry becomes alpha


def test_palette_tiff_loads_as_its_colours_not_its_indices(tmp_path: Path) -> None:
    palette = Image.fromarray(_rgb_test_card()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.save(tmp_path / "palette.tif")
    loaded = _load_with_every_loader(tmp_path / "palette.tif")
    assert loaded is not None and loaded.dtype == np.uint8
    np.testing.assert_array_equal(loaded, np.asarray(palette.convert("RGB")))


@pytest.mark.parametrize("scale", [257, 1], ids=["16-bit-map", "8-bit-map"])
def test_palette_tiff_colour_map_in_16_or_8_bits_gives_8_bit_colours(tmp_path: Path, scale: int) -> None:
    colours = np.random.default_rng(9).integers(0, 256, (256, 3), dtype=np.uint16)
    colours[0], colours[1] = (0, 0, 0), (255, 255, 255)
    indices = np.arange(42, dtype=np.uint8).reshape(6, 7)
    tifffile.imwrite(tmp_path / "map.tif", indices, photometric="palette", colormap=(colours * scale).T)
    loaded = _load_with_every_loader(tmp_path / "map.tif")
    assert loaded is not None and loaded.dtype == np.uint8
    np.testing.assert_array_equal(loaded, colours[indices])


def test_rgba_png_keeps_alpha_in_read_array_and_drops_it_in_read_image(tmp_path: Path) -> None:
    rgba = np.dstack([_rgb_test_card(), np.full((6, 7), 90, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    loaded = _load_with_every_loader(tmp_path / "rgba.png")
    np.testing.assert_array_equal(loaded, rgba)
    np.testing.assert_allclose(read_image(tmp_path / "rgba.png", 3), rgba[:, :, :3] / 255.0, atol=1e-6)


def test_cmyk_tiff_is_converted_to_rgb_as_pillow_converts_it(tmp_path: Path) -> None:
    cmyk = Image.fromarray(np.random.default_rng(7).integers(0, 256, (6, 7, 4), dtype=np.uint8), "CMYK")
    cmyk.save(tmp_path / "cmyk.tif")
    loaded = _load_with_every_loader(tmp_path / "cmyk.tif")
    assert loaded is not None and loaded.shape == (6, 7, 3)
    np.testing.assert_array_equal(loaded, np.asarray(cmyk.convert("RGB")))
    Image.fromarray(_rgb_test_card()).convert("CMYK").save(tmp_path / "from_rgb.tif")
    np.testing.assert_array_equal(read_array(tmp_path / "from_rgb.tif"), _rgb_test_card())


def test_cmyk_jpeg_loads_as_rgb(tmp_path: Path) -> None:
    Image.new("RGB", (16, 16), (200, 100, 50)).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    loaded = _load_with_every_loader(tmp_path / "cmyk.jpg")
    assert loaded is not None and loaded.shape == (16, 16, 3)
    np.testing.assert_allclose(loaded.reshape(-1, 3).mean(axis=0), [200, 100, 50], atol=3)


def test_16bit_tiff_keeps_its_dtype_and_is_scaled_by_its_range(tmp_path: Path) -> None:
    values = np.arange(1000, 1000 + 42 * 50, 50, dtype=np.uint16).reshape(6, 7)
    tifffile.imwrite(tmp_path / "deep.tif", values)
    loaded = _load_with_every_loader(tmp_path / "deep.tif")
    assert loaded is not None and loaded.dtype == np.uint16
    np.testing.assert_allclose(read_image(tmp_path / "deep.tif", 1)[:, :, 0], (values - 1000) / (41 * 50), atol=1e-6)


def test_float32_tiff_in_unit_range_is_kept(tmp_path: Path) -> None:
    values = np.linspace(0.1, 0.7, 42, dtype=np.float32).reshape(6, 7)
    tifffile.imwrite(tmp_path / "float.tif", values)
    assert _load_with_every_loader(tmp_path / "float.tif") is not None
    np.testing.assert_array_equal(read_image(tmp_path / "float.tif", 3), np.repeat(values[:, :, None], 3, axis=2))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_float32_tiff_with_nan_or_infinity_is_refused_by_read_image_naming_it(tmp_path: Path, bad: float) -> None:
    values = np.linspace(0.1, 0.7, 42, dtype=np.float32).reshape(6, 7)
    values[2, 3] = bad
    tifffile.imwrite(tmp_path / "holes.tif", values)
    assert _load_with_every_loader(tmp_path / "holes.tif") is not None  # read_array returns the stored values
    for channels in (1, 3):
        with pytest.raises(ImageReadError, match=r"holes\.tif contains NaN or infinite values"):
            read_image(tmp_path / "holes.tif", channels)


def _check_gray_alpha(path: Path, gray: np.ndarray, alpha: np.ndarray) -> None:
    loaded = _load_with_every_loader(path)
    np.testing.assert_array_equal(loaded, np.dstack([gray, alpha]))
    np.testing.assert_allclose(read_image(path, 1)[:, :, 0], gray / 255.0, atol=1e-6)
    np.testing.assert_allclose(read_image(path, 3), np.repeat(gray[:, :, None], 3, axis=2) / 255.0, atol=1e-6)
    np.testing.assert_array_equal(read_mask_values(path), gray)


def test_gray_alpha_png_drops_alpha(tmp_path: Path) -> None:
    gray, alpha = _rgb_test_card()[:, :, 0], _rgb_test_card()[:, :, 1]
    Image.fromarray(np.dstack([gray, alpha]), "LA").save(tmp_path / "gray_alpha.png")
    _check_gray_alpha(tmp_path / "gray_alpha.png", gray, alpha)


@pytest.mark.parametrize("height", [3, 4, 6])
def test_gray_alpha_tiff_of_any_height_keeps_its_layout(tmp_path: Path, height: int) -> None:
    gray, alpha = _rgb_test_card()[:height, :, 0], _rgb_test_card()[:height, :, 1]
    path = tmp_path / "gray_alpha.tif"
    path.write_bytes(_encode(np.dstack([gray, alpha]), ".tif"))
    _check_gray_alpha(path, gray, alpha)  # 3 or 4 pixels high once looked like planar colour


@pytest.mark.parametrize("width", [3, 4, 7])
def test_planar_rgb_tiff_of_any_width_is_read_channels_last(tmp_path: Path, width: int) -> None:
    rgb = _rgb_test_card()[:, :width]
    path = tmp_path / "planar.tif"
    path.write_bytes(_encode(rgb, ".tif", planar=True))
    np.testing.assert_array_equal(_load_with_every_loader(path), rgb)


def test_five_channel_tiff_three_pixels_high_is_refused_not_read_as_rgb(tmp_path: Path) -> None:
    tifffile.imwrite(
        tmp_path / "stack.tif", np.zeros((3, 6, 5), np.uint8), photometric="minisblack", planarconfig="contig"
    )
    with pytest.raises(ImageReadError, match=r"stack\.tif has shape \(3, 6, 5\)"):
        read_array(tmp_path / "stack.tif")


def _tiff_with_header_value(array: np.ndarray, tag: str, value: int, **options: object) -> bytes:
    """A TIFF of ``array`` whose header then claims ``value`` for the 32-bit ``tag``, as a corrupt file might."""
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array, **options)
    data = bytearray(buffer.getvalue())
    with tifffile.TiffFile(io.BytesIO(bytes(data))) as tiff:
        tag_info = tiff.pages[0].tags[tag]
        assert tag_info.dtype == 4 and tag_info.count == 1  # one LONG stored in the tag itself
        offset = tag_info.valueoffset
    data[offset : offset + 4] = struct.pack("<I", value)
    return bytes(data)


def test_tiff_with_fewer_strips_than_its_header_declares_is_refused_not_zero_filled(tmp_path: Path) -> None:
    path = tmp_path / "short.tif"
    path.write_bytes(_tiff_with_header_value(np.full((8, 5), 9, np.uint8), "ImageLength", 1_000_000, rowsperstrip=1))
    assert _load_with_every_loader(path) is None
    with pytest.raises(ImageReadError, match=r"short\.tif holds 8 of the 1000000 strips"):
        read_array(path)


def test_tiff_declaring_a_huge_image_is_refused_before_decoding(tmp_path: Path) -> None:
    array = np.full((8, 5), 9, np.uint8)
    data = _tiff_with_header_value(array, "ImageLength", 4_000_000_000, rowsperstrip=8)
    path = tmp_path / "huge.tif"
    path.write_bytes(data)
    assert _load_with_every_loader(path) is None
    with pytest.raises(ImageReadError, match=r"huge\.tif declares 5x4000000000 pixels, more than"):
        read_array(path)


class _ReadImages(Dataset):
    """The smallest dataset that reads images as the project's datasets do."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(read_image(self.paths[index], 1))


def test_corrupt_image_in_a_dataloader_worker_reaches_the_main_process_as_image_read_error(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    Image.fromarray(_rgb_test_card()).save(good)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:60])
    loader = DataLoader(_ReadImages([truncated, good]), num_workers=1, timeout=60)
    batches = iter(loader)
    with pytest.raises(ImageReadError) as caught:
        next(batches)  # a dead or hung worker would raise RuntimeError instead
    assert user_message(caught.value).startswith(f"cannot read image {truncated}")
    assert next(batches).shape == (1, 6, 7, 1)  # the same worker still serves the next image
