import re
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from data.image_io import (
    MAX_PIXELS,
    list_images,
    page_count,
    pixel_limit,
    read_array,
    read_image,
    read_mask_values,
    to_unit_range,
    write_image,
)
from util.errors import ImageReadError

SOURCES = Path(__file__).resolve().parents[2] / "datasets" / "sources"


def test_real_16bit_tiff_is_scaled_by_its_range_not_clipped() -> None:
    path = SOURCES / "fluo_nuclei_dsb2018" / "image.tif"
    raw = read_array(path)
    assert raw.dtype == np.uint16 and raw.max() == 235  # a 16-bit file using a small part of its range
    image = read_image(path, channels=1)
    assert image.shape == (512, 512, 1) and image.dtype == np.float32
    assert image.min() == 0.0 and image.max() == 1.0
    expected = (raw.astype(np.float64) - raw.min()) / (raw.max() - raw.min())
    np.testing.assert_allclose(image[:, :, 0], expected, atol=1e-6)
    # Not clipped at 255 and not divided by 65535: many distinct levels survive.
    assert len(np.unique(image)) == len(np.unique(raw))


def test_16bit_png_keeps_precision(tmp_path: Path) -> None:
    values = np.linspace(1000, 1000 + 4095, 64 * 64).astype(np.uint16).reshape(64, 64)
    Image.fromarray(values).save(tmp_path / "deep.png")
    image = read_image(tmp_path / "deep.png", channels=1)[:, :, 0]
    assert len(np.unique(image)) > 3000  # 12 bits of levels, far more than 8-bit would keep
    np.testing.assert_allclose(image, (values - 1000) / 4095.0, atol=1e-6)


def test_8bit_gray_and_rgb(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "colour.png")
    assert read_image(tmp_path / "colour.png", 3).shape == (20, 30, 3)
    np.testing.assert_allclose(read_image(tmp_path / "colour.png", 3), rgb / 255.0, atol=1e-6)
    gray = read_image(tmp_path / "colour.png", 1)[:, :, 0]
    pillow_gray = np.asarray(Image.fromarray(rgb).convert("L")) / 255.0
    assert np.abs(gray - pillow_gray).max() <= 1.0 / 255 + 1e-6  # same luma weights as Pillow
    Image.fromarray(rgb[:, :, 0]).save(tmp_path / "gray.jpg", quality=100)
    assert read_image(tmp_path / "gray.jpg", 3).shape == (20, 30, 3)


def test_palette_rgba_cmyk_and_bilevel_are_converted(tmp_path: Path) -> None:
    base = Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16)).convert("RGB")
    base.convert("P").save(tmp_path / "palette.png")
    base.convert("RGBA").save(tmp_path / "alpha.png")
    base.convert("CMYK").save(tmp_path / "cmyk.tif")
    base.convert("1").save(tmp_path / "bilevel.png")
    for name in ("palette.png", "alpha.png", "cmyk.tif", "bilevel.png"):
        assert read_image(tmp_path / name, 3).shape == (16, 16, 3), name


def test_planar_and_float_tiffs(tmp_path: Path) -> None:
    planar = np.stack([np.full((8, 9), value, np.uint8) for value in (0, 128, 255)])
    tifffile.imwrite(tmp_path / "planar.tif", planar, photometric="rgb", planarconfig="separate")
    image = read_image(tmp_path / "planar.tif", 3)
    assert image.shape == (8, 9, 3)
    np.testing.assert_allclose(image[0, 0], [0.0, 128 / 255, 1.0], atol=1e-6)
    unit = np.linspace(0.2, 0.6, 16, dtype=np.float32).reshape(4, 4)
    tifffile.imwrite(tmp_path / "unit.tif", unit)
    np.testing.assert_allclose(read_image(tmp_path / "unit.tif", 1)[:, :, 0], unit)  # already in [0, 1]: kept
    tifffile.imwrite(tmp_path / "wide.tif", unit * 1000 - 5)
    assert read_image(tmp_path / "wide.tif", 1).max() == 1.0


def test_constant_16bit_image_is_zero() -> None:
    assert not to_unit_range(np.full((3, 3), 500, np.uint16)).any()


@pytest.mark.parametrize(
    "content",
    [b"", b"not an image at all", None],
    ids=["empty", "text", "truncated"],
)
def test_corrupt_files_name_the_file(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "broken.png"
    if content is None:
        Image.fromarray(np.zeros((64, 64), np.uint8) + 7).save(path)
        content = path.read_bytes()[:60]
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match=r"broken\.png"):
        read_image(path, 1)


def test_truncated_tiff_and_missing_file(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "cut.tif", np.zeros((64, 64), np.uint16))
    (tmp_path / "cut.tif").write_bytes((tmp_path / "cut.tif").read_bytes()[:100])
    with pytest.raises(ImageReadError, match=r"cut\.tif"):
        read_image(tmp_path / "cut.tif", 1)
    with pytest.raises(ImageReadError, match="not found"):
        read_image(tmp_path / "absent.png", 1)


def test_many_channel_image_and_nan_are_refused(tmp_path: Path) -> None:
    tifffile.imwrite(
        tmp_path / "stack.tif", np.zeros((8, 8, 5), np.uint8), photometric="minisblack", planarconfig="contig"
    )
    with pytest.raises(ImageReadError, match="expected a single 2-D"):
        read_image(tmp_path / "stack.tif", 1)
    tifffile.imwrite(tmp_path / "nan.tif", np.full((4, 4), np.nan, np.float32))
    with pytest.raises(ImageReadError, match="NaN"):
        read_image(tmp_path / "nan.tif", 1)


def test_a_mask_with_nan_is_refused_not_read_as_background(tmp_path: Path) -> None:
    mask = np.ones((4, 4), np.float32)
    mask[1, 2] = np.nan
    tifffile.imwrite(tmp_path / "mask.tif", mask)
    with pytest.raises(ImageReadError, match=r"mask .*mask\.tif contains NaN"):
        read_mask_values(tmp_path / "mask.tif")


def test_min_is_white_tiffs_load_with_black_as_zero(tmp_path: Path) -> None:
    """Stored values of MinIsWhite files are flipped, as Pillow does for 8-bit and bilevel ones."""
    stored8 = (np.arange(12, dtype=np.uint8) * 20).reshape(3, 4)
    tifffile.imwrite(tmp_path / "gray8.tif", stored8, photometric="miniswhite")
    loaded8 = read_array(tmp_path / "gray8.tif")
    np.testing.assert_array_equal(loaded8, 255 - stored8)
    np.testing.assert_array_equal(loaded8, np.asarray(Image.open(tmp_path / "gray8.tif")))

    stored12 = (np.arange(12, dtype=np.uint16) * 300).reshape(3, 4)  # 12-bit samples: white is 4095
    tifffile.imwrite(tmp_path / "gray12.tif", stored12, photometric="miniswhite", bitspersample=12)
    np.testing.assert_array_equal(read_array(tmp_path / "gray12.tif"), 4095 - stored12)

    bilevel = np.array([[True, False], [False, True]])
    tifffile.imwrite(tmp_path / "bilevel.tif", bilevel, photometric="miniswhite")
    np.testing.assert_array_equal(read_array(tmp_path / "bilevel.tif"), ~bilevel)

    gray_alpha = np.stack([stored8, np.full_like(stored8, 7)], axis=2)
    tifffile.imwrite(tmp_path / "alpha.tif", gray_alpha, photometric="miniswhite", extrasamples=[2])
    loaded = read_array(tmp_path / "alpha.tif")
    np.testing.assert_array_equal(loaded[:, :, 0], 255 - stored8)
    np.testing.assert_array_equal(loaded[:, :, 1], 7)

    tifffile.imwrite(tmp_path / "float.tif", np.zeros((3, 4), np.float32), photometric="miniswhite")
    with pytest.raises(ImageReadError, match=r"float\.tif stores floating-point gray with 0 as white"):
        read_array(tmp_path / "float.tif")


def test_write_image_round_trip(tmp_path: Path) -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    write_image(tmp_path / "out" / "x.png", rgb)
    np.testing.assert_array_equal(read_array(tmp_path / "out" / "x.png"), rgb)
    write_image(tmp_path / "g.tif", rgb[:, :, :1])
    assert read_array(tmp_path / "g.tif").shape == (5, 6)
    with pytest.raises(ValueError):
        write_image(tmp_path / "f.png", rgb.astype(np.float32))


def test_list_images_is_sorted_recursive_and_skips_other_files(tmp_path: Path) -> None:
    for name in ("b.png", "a.TIF", "sub/c.jpg", ".hidden.png", "notes.txt"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert [path.relative_to(tmp_path).as_posix() for path in list_images(tmp_path)] == ["a.TIF", "b.png", "sub/c.jpg"]


@pytest.mark.parametrize("compression", ["lzw", "zlib", "zstd", "packbits"])
def test_compressed_16_bit_tiffs_read_exactly(tmp_path: Path, compression: str) -> None:
    frame = np.random.default_rng(0).integers(0, 4096, size=(37, 53), dtype=np.uint16)
    path = tmp_path / f"{compression}.tif"
    tifffile.imwrite(path, frame, compression=compression)
    assert np.array_equal(read_array(path), frame)


def test_pages_of_a_tiff_stack_are_read_one_by_one_and_counted(tmp_path: Path) -> None:
    stack = np.arange(5 * 4 * 6, dtype=np.uint16).reshape(5, 4, 6)
    tifffile.imwrite(tmp_path / "stack.tif", stack, photometric="minisblack")
    assert page_count(tmp_path / "stack.tif") == 5
    assert np.array_equal(read_array(tmp_path / "stack.tif", page=2), stack[2])
    with pytest.raises(ImageReadError, match=r"stack\.tif has 5 pages; page 5 was asked for"):
        read_array(tmp_path / "stack.tif", page=5)
    write_image(tmp_path / "flat.png", np.zeros((4, 5), np.uint8))
    assert page_count(tmp_path / "flat.png") == 1


@pytest.mark.parametrize("name", ["mosaic.tif", "mosaic.png", "mosaic.jpg"])
def test_the_pixel_limit_refuses_large_images_of_any_format_unless_lifted(tmp_path: Path, name: str) -> None:
    """The limit counts pixels (an RGB image of 600 pixels passes a limit of 600), the same for every format."""
    write_image(tmp_path / name, np.full((20, 30, 3), 90, np.uint8))
    with pytest.raises(ImageReadError, match=re.escape(f"{name} declares 30x20 pixels, more than 599")):
        read_array(tmp_path / name, max_pixels=599)
    assert read_array(tmp_path / name, max_pixels=600).shape == (20, 30, 3)
    assert read_array(tmp_path / name, max_pixels=None).shape == (20, 30, 3)


def test_pillow_s_own_limit_is_lifted_only_while_an_unlimited_image_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_image(tmp_path / "scan.png", np.zeros((40, 50), np.uint8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # as if the scan were a gigapixel one
    assert read_array(tmp_path / "scan.png", max_pixels=None).shape == (40, 50)
    assert Image.MAX_IMAGE_PIXELS == 100


def test_a_tiff_declaring_more_samples_than_an_image_has_is_refused(tmp_path: Path) -> None:
    tifffile.imwrite(
        tmp_path / "bands.tif", np.zeros((8, 8, 6), np.uint8), photometric="minisblack", planarconfig="contig"
    )
    with pytest.raises(ImageReadError, match=r"bands\.tif declares 6 samples per pixel"):
        read_array(tmp_path / "bands.tif")


def test_the_pixel_limit_flag_means_the_default_a_number_of_megapixels_or_none() -> None:
    assert pixel_limit(None) == MAX_PIXELS and pixel_limit(0) is None and pixel_limit(2.5) == 2_500_000
