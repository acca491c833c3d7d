"""Files that end early are refused with one line naming the file, never loaded padded with black.

Pillow fails on most cuts by itself, but loads a PNG without its IEND chunk, and one whose zlib
stream ends cleanly before the last row, with the missing rows black; and with its global
``ImageFile.LOAD_TRUNCATED_IMAGES`` on it pads any cut PNG or JPEG. The cuts here are made in
real files: the bundled H&E PNG (six IDAT chunks), PNGs written by Pillow and by OpenCV's libpng,
and hand-written ones whose pixel data holds fewer rows than their header declares.
"""

from __future__ import annotations

import io
import logging
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFile

from data.image_io import decode_array, list_images, read_array
from tests.helpers import REPO_ROOT
from util.cli import run_script
from util.errors import ImageReadError

REAL_PNG = REPO_ROOT / "datasets" / "sources" / "he_tiatoolbox" / "he.png"
ADVICE = "The file is truncated or corrupt; replace it or remove it from the folder."
# Adam7: the first row and column of each pass and its steps between rows and columns.
ADAM7 = ((0, 0, 8, 8), (0, 4, 8, 8), (4, 0, 8, 4), (0, 2, 4, 4), (2, 0, 4, 2), (0, 1, 2, 2), (1, 0, 2, 1))


def chunks(data: bytes) -> list[tuple[bytes, int, int]]:
    """(type, offset, length of data) of every chunk of a complete PNG."""
    found, offset = [], 8
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        found.append((kind, offset, length))
        offset += 12 + length
    return found


def chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def handmade_png(pixels: np.ndarray, interlaced: bool = False, stored: int | None = None) -> bytes:
    """A well-formed 8-bit gray PNG (valid CRCs, IEND) whose zlib stream ends cleanly after ``stored``
    rows (interlaced: ``stored`` Adam7 passes); all of them when None."""
    height, width = pixels.shape
    if interlaced:
        passes = [pixels[row::row_step, column::column_step] for row, column, row_step, column_step in ADAM7]
        scanlines = [line for image in passes[:stored] if image.size for line in image]
    else:
        scanlines = list(pixels[:stored])
    raw = b"".join(b"\x00" + line.tobytes() for line in scanlines)
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, int(interlaced))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def real_cuts() -> list[tuple[str, int, str]]:
    """(what, cut position, expected message) for cuts of the bundled PNG inside and between its chunks."""
    layout = chunks(REAL_PNG.read_bytes())
    (_, first_idat, _), (_, second_idat, _) = layout[1], layout[2]
    iend = layout[-1][1]
    return [
        ("inside the first IDAT's data", first_idat + 8 + 1000, "ends at byte {cut}, inside its IDAT chunk"),
        ("exactly between two IDAT chunks", second_idat, "ends at byte {cut} without its closing IEND chunk"),
        ("inside a chunk header", second_idat + 5, "ends at byte {cut} without its closing IEND chunk"),
        ("inside the last IDAT's CRC", iend - 2, "ends at byte {cut}, inside its IDAT chunk"),
        ("exactly after the last IDAT", iend, "ends at byte {cut} without its closing IEND chunk"),
        ("inside the IEND chunk", iend + 8, "ends at byte {cut}, inside its IEND chunk"),
    ]


@pytest.mark.parametrize(("cut", "expected"), [case[1:] for case in real_cuts()], ids=[case[0] for case in real_cuts()])
def test_a_real_png_cut_anywhere_is_refused_naming_the_file_and_the_cut(
    tmp_path: Path, cut: int, expected: str
) -> None:
    path = tmp_path / "he_cut.png"
    path.write_bytes(REAL_PNG.read_bytes()[:cut])
    with pytest.raises(ImageReadError) as caught:
        read_array(path)
    message = str(caught.value)
    assert message.startswith(f"cannot read image {path}: the PNG file ") and message.endswith(ADVICE)
    assert expected.format(cut=cut) in message


def test_pillow_alone_loads_short_pixel_data_as_black_rows_but_the_reader_refuses_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The real fault: a well-formed PNG with pixel data for 40 of its 64 rows loads in Pillow as black rows."""
    pixels = np.arange(64 * 48, dtype=np.uint32).reshape(64, 48).astype(np.uint8) | 1  # no black pixel
    path = tmp_path / "short.png"
    path.write_bytes(handmade_png(pixels, stored=40))
    with Image.open(path) as image:
        image.load()  # no error from Pillow
        loaded = np.asarray(image)
    assert (loaded[:40] == pixels[:40]).all() and not loaded[40:].any()
    expected = (
        f"cannot read image {path}: its PNG pixel data ends before the last of the 64 rows its header declares "
        f"(Pillow would fill the rest with black). {ADVICE}"
    )
    with pytest.raises(ImageReadError) as caught:
        read_array(path)
    assert str(caught.value) == expected
    # A driver turns it into one line: no traceback.
    assert run_script(lambda: read_array(path)) == 1
    errors = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert [record.getMessage() for record in errors] == [expected] and "Traceback" not in caplog.text


@pytest.mark.parametrize("interlaced", [False, True], ids=["sequential", "interlaced"])
@pytest.mark.parametrize("lenient", [False, True], ids=["strict", "LOAD_TRUNCATED_IMAGES"])
def test_pixel_data_for_fewer_rows_or_passes_is_refused_whatever_pillow_s_global_says(
    monkeypatch: pytest.MonkeyPatch, interlaced: bool, lenient: bool
) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", lenient)
    pixels = np.random.default_rng(0).integers(0, 256, (37, 29), dtype=np.uint8)
    complete = handmade_png(pixels, interlaced)
    np.testing.assert_array_equal(decode_array(complete, "whole.png"), pixels)
    for stored in range(1, 7) if interlaced else (0, 1, 20, 36):
        with pytest.raises(ImageReadError, match=r"short\.png: its PNG pixel data ends before the last of the 37 rows"):
            decode_array(handmade_png(pixels, interlaced, stored), "short.png")
    # The zlib stream itself cut short, its chunks intact: Pillow pads it under LOAD_TRUNCATED_IMAGES.
    layout = chunks(complete)
    _, idat, length = layout[1]
    stream = complete[idat + 8 : idat + 8 + length]
    cut_stream = complete[:idat] + chunk(b"IDAT", stream[: length // 2]) + chunk(b"IEND", b"")
    with pytest.raises(ImageReadError, match=r"cut\.png: its PNG pixel data ends before the last"):
        decode_array(cut_stream, "cut.png")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is lenient  # the global is left as it was


def test_a_cut_jpeg_is_refused_even_with_pillow_s_global_lenient(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    data = (REPO_ROOT / "datasets" / "sources" / "he_tcia" / "he.jpg").read_bytes()
    for cut in (len(data) // 3, len(data) - 2):
        path = tmp_path / f"cut_{cut}.jpg"
        path.write_bytes(data[:cut])
        with Image.open(path) as image:
            image.load()  # Pillow pads it with gray: the global at work
        with pytest.raises(ImageReadError, match=rf"cannot read image {path}: image file is truncated"):
            read_array(path)


def test_valid_pngs_of_every_kind_and_every_image_of_the_repository_still_read(demo_root: Path) -> None:
    """No false alarm: one IDAT or many, Pillow's and libpng's encoders, every compression level,
    flat images (rows zlib holds back until the end), interlaced, 1-bit to 16-bit, 1 pixel to 300."""
    rng = np.random.default_rng(1)
    images = [
        np.full((20, 30, 3), 90, np.uint8),
        np.zeros((1, 1), np.uint8),
        rng.integers(0, 256, (300, 7, 4), dtype=np.uint8),
        rng.integers(0, 65536, (33, 65), dtype=np.uint16),
        np.full((64, 64), 1000, np.uint16),
        (np.add.outer(np.arange(120), np.arange(90)) % 256).astype(np.uint8),
    ]
    for pixels in images:
        for level in (0, 1, 9):
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, format="PNG", compress_level=level)
            np.testing.assert_array_equal(decode_array(buffer.getvalue(), "pillow.png"), pixels)
        bgr = pixels[..., [2, 1, 0, 3][: pixels.shape[2]]] if pixels.ndim == 3 else pixels  # OpenCV's order
        encoded = cv2.imencode(".png", bgr)[1].tobytes()
        np.testing.assert_array_equal(decode_array(encoded, "libpng.png"), pixels)
    bilevel = io.BytesIO()
    Image.fromarray(rng.integers(0, 2, (9, 13), dtype=np.uint8) * 255).convert("1").save(bilevel, format="PNG")
    assert decode_array(bilevel.getvalue(), "bilevel.png").shape == (9, 13)
    for shape in ((1, 1), (5, 3), (37, 29)):
        pixels = rng.integers(0, 256, shape, dtype=np.uint8)
        np.testing.assert_array_equal(decode_array(handmade_png(pixels, interlaced=True), "adam7.png"), pixels)
    files = [*list_images(REPO_ROOT / "datasets"), *list_images(REPO_ROOT / "tests"), *list_images(demo_root)]
    assert len(files) > 100
    for path in files:
        assert read_array(path, max_pixels=None).size > 0
