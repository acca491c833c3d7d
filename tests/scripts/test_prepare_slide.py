"""scripts/prepare_slide.py on pyramidal TIFF slides built from a real H&E image, the image itself, and SVS fixtures."""

from __future__ import annotations

import csv
import json
import logging
import resource
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import openslide
import pytest
import tifffile
from PIL import Image

from data.image_io import MAX_PIXELS, read_array, write_image
from scripts import prepare_slide as module
from scripts.prepare_slide import choose_sampling, main, open_slide, tissue_mask

REPO_ROOT = Path(__file__).resolve().parents[2]
HE = REPO_ROOT / "datasets" / "sources" / "he_tcia" / "he.jpg"
FIXTURES = REPO_ROOT / "tests" / "fixtures" / "slides"
# The H&E image, upscaled 2x, lies at TISSUE (left, top, right, bottom) on a white 1400 x 800 slide.
TISSUE = (100, 100, 1100, 700)
SLIDE_SIZE = (1400, 800)


def write_pyramid(path: Path, image: np.ndarray, mpp: float | None = None, levels: int = 3) -> Path:
    """A tiled pyramidal TIFF (downsamples 1, 2, 4, ...) that OpenSlide reads as generic-tiff."""
    resolution = {"resolution": (1e4 / mpp, 1e4 / mpp), "resolutionunit": "CENTIMETER"} if mpp else {}
    height, width = image.shape[:2]
    with tifffile.TiffWriter(path) as tiff:
        for level in range(levels):
            scale = 2**level
            pixels = image if level == 0 else cv2.resize(image, (width // scale, height // scale), cv2.INTER_AREA)
            tiff.write(
                pixels, tile=(256, 256), photometric="rgb", compression="zlib", subfiletype=1 if level else 0,
                **resolution,
            )  # fmt: skip
    return path


@pytest.fixture(scope="module")
def slide_pixels() -> np.ndarray:
    he = read_array(HE)
    left, top, right, bottom = TISSUE
    pixels = np.full((SLIDE_SIZE[1], SLIDE_SIZE[0], 3), 255, np.uint8)
    pixels[top:bottom, left:right] = cv2.resize(he, (right - left, bottom - top), interpolation=cv2.INTER_CUBIC)
    return pixels


@pytest.fixture(scope="module")
def slide(slide_pixels: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_pyramid(tmp_path_factory.mktemp("slides") / "he_slide.tif", slide_pixels)


@pytest.fixture(scope="module")
def slide_with_mpp(slide_pixels: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_pyramid(tmp_path_factory.mktemp("slides") / "he_mpp.tif", slide_pixels, mpp=0.5)


def manifest(output: Path) -> list[dict[str, str]]:
    with open(output / "manifest.csv", newline="") as table:
        return list(csv.DictReader(table))


def tiles(output: Path) -> dict[str, list[str]]:
    return {
        split: sorted(path.name for path in (output / f"{split}B").glob("*.png")) for split in ("train", "val", "test")
    }


def test_slide_is_a_pyramid_that_openslide_reads(slide: Path) -> None:
    with openslide.OpenSlide(slide) as opened:
        assert openslide.OpenSlide.detect_format(slide) == "generic-tiff"
        assert opened.level_count == 3 and opened.level_downsamples == (1.0, 2.0, 4.0)
        assert opened.dimensions == SLIDE_SIZE


def test_tissue_tiles_split_by_seed_with_manifest(slide: Path, tmp_path: Path) -> None:
    output = tmp_path / "he_tiles"
    assert main([str(slide), "--output", str(output), "--test_fraction", "0.25"]) == 0
    rows = manifest(output)
    written = tiles(output)
    count = len(rows)
    # 10 x 6 candidate tiles of 128 px; the tissue covers about 7 x 4 of them.
    assert 20 <= count <= 40
    assert len(written["test"]) == round(count * 0.25) and len(written["val"]) == round(count * 0.1)
    assert len(written["train"]) == count - len(written["test"]) - len(written["val"])
    assert sorted(row["file"] for row in rows) == sorted(
        f"{split}B/{name}" for split, names in written.items() for name in names
    )
    left, top, right, bottom = TISSUE
    for row in rows:
        x, y = int(row["x"]), int(row["y"])
        assert row["file"].endswith(f"he_slide_x{x}_y{y}.png") and row["file"].startswith(f"{row['split']}B/")
        assert (row["level"], row["size"], row["downsample"], row["slide"]) == ("0", "128", "1", "he_slide.tif")
        assert x % 128 == 0 and y % 128 == 0 and float(row["tissue_fraction"]) >= 0.5
        overlap = max(0, min(x + 128, right) - max(x, left)) * max(0, min(y + 128, bottom) - max(y, top))
        assert overlap >= 0.4 * 128 * 128, f"tile at {x}, {y} lies mostly on the white padding"
        image = read_array(output / row["file"])
        assert image.shape == (128, 128, 3) and image.dtype == np.uint8
        assert image.mean() < 235
    settings = json.loads((output / "preparation.json").read_text(encoding="utf-8"))
    counts = {split: len(names) for split, names in written.items()}
    assert (settings["level"], settings["seed"], settings["tiles_written"]) == (0, 0, counts)


def test_same_seed_same_tiles_other_seed_other_split(slide: Path, tmp_path: Path) -> None:
    runs = {}
    for name, seed in (("first", "3"), ("again", "3"), ("other", "4")):
        output = tmp_path / name
        assert main([str(slide), "--output", str(output), "--max_tiles", "12", "--seed", seed]) == 0
        runs[name] = tiles(output)
    assert runs["first"] == runs["again"]
    assert runs["first"] != runs["other"]
    assert sum(len(names) for names in runs["first"].values()) == 12
    first = (tmp_path / "first" / "trainB" / runs["first"]["train"][0]).read_bytes()
    assert first == (tmp_path / "again" / "trainB" / runs["first"]["train"][0]).read_bytes()


def test_level_one_gives_level_zero_coordinates(slide: Path, slide_pixels: np.ndarray, tmp_path: Path) -> None:
    output = tmp_path / "level1"
    assert main([str(slide), "--output", str(output), "--level", "1", "--size", "64", "--test_fraction", "0"]) == 0
    rows = manifest(output)
    assert rows and not tiles(output)["test"]
    for row in rows:
        x, y = int(row["x"]), int(row["y"])
        assert (row["level"], row["downsample"]) == ("1", "2") and x % 128 == 0 and y % 128 == 0
        # The tile shows the slide's level-0 square at (x, y) of side 128, halved.
        expected = cv2.resize(slide_pixels[y : y + 128, x : x + 128], (64, 64), interpolation=cv2.INTER_AREA)
        difference = np.abs(read_array(output / row["file"]).astype(int) - expected.astype(int))
        assert difference.mean() < 4


def test_mpp_reads_the_nearest_finer_level_and_shrinks(slide_with_mpp: Path, tmp_path: Path) -> None:
    with open_slide(slide_with_mpp) as reader:
        assert reader.mpp == pytest.approx(0.5)
        exact = choose_sampling(reader, 128, mpp=1.0)
        assert (exact.level, exact.read_size, exact.downsample) == (1, 128, 2.0)
        between = choose_sampling(reader, 128, mpp=1.5)
        assert (between.level, between.read_size, between.mpp) == (1, 192, pytest.approx(1.5))
        near = choose_sampling(reader, 128, mpp=1.02)
        assert (near.level, near.read_size) == (1, 128)
    output = tmp_path / "mpp"
    assert main([str(slide_with_mpp), "--output", str(output), "--mpp", "1.5", "--min_tissue", "0.3"]) == 0
    rows = manifest(output)
    assert rows and all(row["mpp"] == "1.5" and row["read_size"] == "192" for row in rows)
    assert all(int(row["x"]) % 384 == 0 for row in rows)
    assert read_array(output / rows[0]["file"]).shape == (128, 128, 3)


def test_svs_metadata_and_magnification(tmp_path: Path) -> None:
    with open_slide(FIXTURES / "small.svs") as reader:
        assert reader.format == "aperio" and reader.level_dimensions == ((16, 16),)
        assert reader.mpp == pytest.approx(0.499) and reader.objective_power == 20
        assert choose_sampling(reader, 4, magnification=10).read_size == 8
    output = tmp_path / "svs"
    assert main([str(FIXTURES / "small.svs"), "--output", str(output), "--size", "8", "--min_tissue", "0"]) == 0
    assert len(manifest(output)) == 4


def test_too_few_tiles_for_a_test_split_are_warned_about(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    arguments = ["--size", "8", "--min_tissue", "0.1", "--test_fraction", "0.2"]
    assert main([str(FIXTURES / "small.svs"), "--output", str(tmp_path / "svs"), *arguments]) == 0
    assert {row["split"] for row in manifest(tmp_path / "svs")} == {"train"}
    assert "gives none to testB" in caplog.text


def test_plain_image_works(tmp_path: Path) -> None:
    output = tmp_path / "plain"
    assert main([str(HE), "--output", str(output), "--size", "64"]) == 0
    rows = manifest(output)
    # The image is all tissue: every one of the 7 x 4 non-overlapping 64 px tiles qualifies.
    assert len(rows) == 28 and all(row["level"] == "0" and row["mpp"] == "" for row in rows)
    he = read_array(HE)
    for row in rows[:5]:
        x, y = int(row["x"]), int(row["y"])
        assert np.array_equal(read_array(output / row["file"]), he[y : y + 64, x : x + 64])


def test_otsu_threshold_keeps_a_slide_that_is_all_tissue_whole() -> None:
    mask, threshold = tissue_mask(read_array(HE))
    assert mask.mean() > 0.9 and threshold <= module.SATURATION_CEILING


def test_unreadable_slide_names_the_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    output = tmp_path / "out"
    with caplog.at_level(logging.ERROR, logger="prepare_slide"):
        assert main([str(FIXTURES / "unreadable.svs"), "--output", str(output)]) == 1
    assert "cannot read slide" in caplog.text and "unreadable.svs" in caplog.text
    assert not output.exists()


@pytest.mark.parametrize("kind", ["missing", "folder", "garbage"])
def test_missing_folder_or_garbage_is_a_clear_error(
    kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    target = tmp_path / "slide.svs"
    if kind == "folder":
        target.mkdir()
    elif kind == "garbage":
        target.write_bytes(b"not a slide at all" * 10)
    with caplog.at_level(logging.ERROR, logger="prepare_slide"):
        assert main([str(target), "--output", str(tmp_path / "out")]) == 1
    assert str(target) in caplog.text
    assert not (tmp_path / "out").exists()


def test_blank_slide_has_no_tissue_and_writes_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Empty glass: white with the faint noise of a scanner.
    blank = np.random.default_rng(0).integers(249, 256, (600, 900, 3)).astype(np.uint8)
    for slide in (write_pyramid(tmp_path / "blank.tif", blank, levels=2), tmp_path / "blank.png"):
        if slide.suffix == ".png":
            write_image(slide, blank)
        output = tmp_path / f"out_{slide.suffix[1:]}"
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="prepare_slide"):
            assert main([str(slide), "--output", str(output)]) == 1
        assert "no tissue found" in caplog.text and slide.name in caplog.text and "--min_tissue" in caplog.text
        assert not output.exists()


def test_output_with_data_needs_overwrite(slide: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    output = tmp_path / "taken"
    output.mkdir()
    (output / "notes.txt").write_text("earlier run", encoding="utf-8")
    with caplog.at_level(logging.ERROR, logger="prepare_slide"):
        assert main([str(slide), "--output", str(output), "--max_tiles", "5"]) == 1
    assert "already holds data" in caplog.text and "--overwrite" in caplog.text
    assert [path.name for path in output.iterdir()] == ["notes.txt"]
    assert (output / "notes.txt").read_text(encoding="utf-8") == "earlier run"
    assert main([str(slide), "--output", str(output), "--max_tiles", "5", "--overwrite"]) == 0
    # 5 tiles: one for testB, none for valB (a tenth of 5 rounds to 0).
    assert sorted(path.name for path in output.iterdir()) == ["manifest.csv", "preparation.json", "testB", "trainB"]
    assert len(manifest(output)) == 5


def test_slide_inside_output_is_refused(slide: Path, tmp_path: Path) -> None:
    folder = tmp_path / "tiles"
    folder.mkdir()
    inside = folder / slide.name
    inside.write_bytes(slide.read_bytes())
    assert main([str(inside), "--output", str(folder), "--overwrite"]) == 1
    assert inside.is_file()


def test_mpp_or_magnification_without_metadata_asks_for_level(
    slide: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for flag in ("--mpp", "--magnification"):
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="prepare_slide"):
            assert main([str(slide), "--output", str(tmp_path / "out"), flag, "1"]) == 1
        assert "--level" in caplog.text and "he_slide.tif" in caplog.text
    assert not (tmp_path / "out").exists()


def test_bad_options_are_refused(slide: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main([str(slide), "--output", str(tmp_path / "out"), "--level", "1", "--mpp", "1"])
    with caplog.at_level(logging.ERROR, logger="prepare_slide"):
        assert main([str(slide), "--output", str(tmp_path / "out"), "--level", "3"]) == 1
    assert "levels 0 to 2" in caplog.text


def test_reads_stay_tile_sized(slide: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory is bounded: no read_region call asks for more than a tile or a thumbnail chunk."""
    requests: list[tuple[int, tuple[int, int]]] = []
    read_region = openslide.OpenSlide.read_region

    def recording(
        self: openslide.OpenSlide, location: tuple[int, int], level: int, size: tuple[int, int]
    ) -> Image.Image:
        requests.append((level, size))
        return read_region(self, location, level, size)

    monkeypatch.setattr(openslide.OpenSlide, "read_region", recording)
    monkeypatch.setattr(module, "THUMBNAIL_CHUNK", 128)
    monkeypatch.setattr(module, "THUMBNAIL_MAX_SIZE", 300)
    output = tmp_path / "bounded"
    assert main([str(slide), "--output", str(output)]) == 0
    assert requests and all(width <= 128 and height <= 128 for _, (width, height) in requests)
    assert {level for level, _ in requests} == {0, 2}  # the thumbnail from level 2, tiles from level 0
    count = len(manifest(output))
    assert 20 <= count <= 40


def test_a_plain_image_whose_header_declares_gigapixels_is_refused_in_small_memory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bomb = tmp_path / "scan.png"
    write_image(bomb, np.zeros((8, 8, 3), np.uint8))
    data = bytearray(bomb.read_bytes())
    data[16:24] = struct.pack(">II", 60000, 60000)  # IHDR width and height: 3.6 gigapixels declared
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    bomb.write_bytes(bytes(data))
    output = tmp_path / "out"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with caplog.at_level(logging.ERROR):
        assert main([str(bomb), "--output", str(output)]) == 1
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 300_000  # KiB
    lines = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    assert lines == [
        f"image {bomb} declares 60000x60000 pixels, more than {MAX_PIXELS}; its header is corrupt or the image is "
        "too large to read whole. A plain image is read whole into memory: if it is real, raise --max_megapixels "
        "(now 178.957; 0: no limit), or convert it to a tiled pyramidal TIFF, which is read tile by tile"
    ]
    assert not output.exists()


def test_max_megapixels_sets_or_lifts_the_limit_of_plain_images(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="prepare_slide"):
        assert main([str(HE), "--output", str(tmp_path / "low"), "--size", "64", "--max_megapixels", "0.1"]) == 1
    assert "he.jpg declares 500x300 pixels, more than 100000" in caplog.text and "(now 0.1; 0: no limit)" in caplog.text
    assert not (tmp_path / "low").exists()
    assert main([str(HE), "--output", str(tmp_path / "any"), "--size", "64", "--max_megapixels", "0"]) == 0
    assert len(manifest(tmp_path / "any")) == 28
