"""data.image_layout: images, channels, axes and pixel size of a file from its header; one plane on demand."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile

from data.image_io import write_image
from data.image_layout import LARGEST_PIXEL_UM, read_layout, read_plane
from util.errors import ImageReadError

SOURCE = Path(__file__).resolve().parents[2] / "datasets" / "sources" / "fluo_nuclei_dsb2018" / "image.tif"


def planes(times: int, depths: int, channels: int) -> np.ndarray:
    """(T, Z, C, 24, 32) uint16 planes of the real frame, each told apart by an offset: value // 1000 = its number."""
    frame = tifffile.imread(SOURCE)[:24, :32]
    numbers = np.arange(times * depths * channels, dtype=np.uint16).reshape(times, depths, channels, 1, 1)
    return numbers * 1000 + frame


def test_an_ome_time_series_of_z_stacks_gives_each_image_of_the_named_channel(tmp_path: Path) -> None:
    data = planes(2, 3, 4)
    path = tmp_path / "series.ome.tif"
    names = ["actin", "DAPI", "GFP", "mCherry"]
    tifffile.imwrite(
        path,
        data,
        metadata={"axes": "TZCYX", "Channel": {"Name": names}, "PhysicalSizeX": 0.325, "PhysicalSizeY": 0.325},
    )
    layout = read_layout(path)
    assert (layout.kind, layout.height, layout.width, layout.images) == ("OME-TIFF", 24, 32, 6)
    assert (layout.axes, layout.shape, layout.channel_axis, layout.channel_names) == ("TZ", (2, 3), "C", tuple(names))
    assert layout.describe_axes() == "T 2 (time) x Z 3 (depth) x C 4 (channel)"
    assert (layout.pixel_size.x_um, layout.pixel_size.y_um, layout.pixel_size.source) == (
        0.325,
        0.325,
        "OME PhysicalSizeX/Y",
    )
    assert layout.channel_index("DAPI") == layout.channel_index("dapi") == layout.channel_index("1") == 1
    for image in range(6):  # images run over T, then Z
        time, depth = divmod(image, 3)
        assert np.array_equal(read_plane(layout, image, 1, None), data[time, depth, 1])


def test_channel_requests_that_cannot_be_met_name_the_file_and_its_channels(tmp_path: Path) -> None:
    path = tmp_path / "cells.ome.tif"
    tifffile.imwrite(path, planes(1, 1, 3)[0, 0], metadata={"axes": "CYX", "Channel": {"Name": ["DAPI", "GFP", "RFP"]}})
    layout = read_layout(path)
    channels = "0 'DAPI', 1 'GFP', 2 'RFP'"
    with pytest.raises(ImageReadError) as missing:
        layout.channel_index(None)
    assert str(missing.value) == (
        f"OME-TIFF {path} has 3 channels ({channels}); pass --channel with the one that shows the nuclei (its number "
        "or name)"
    )
    with pytest.raises(ImageReadError) as out_of_range:
        layout.channel_index("3")
    assert (
        str(out_of_range.value)
        == f"--channel 3 is out of range for OME-TIFF {path}, which has 3 channel(s): {channels}"
    )
    with pytest.raises(ImageReadError) as unknown:
        layout.channel_index("Hoechst")
    assert (
        str(unknown.value)
        == f"--channel 'Hoechst': OME-TIFF {path} has no channel of that name; its channels: {channels}"
    )


def test_an_ome_tiff_whose_metadata_disagrees_with_its_pixels_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "good.ome.tif"
    tifffile.imwrite(path, planes(1, 3, 1)[0, :, 0], metadata={"axes": "ZYX"})
    xml = tifffile.tiffcomment(path)
    deeper, wider = tmp_path / "deeper.ome.tif", tmp_path / "wider.ome.tif"
    for target, edited in (
        (deeper, xml.replace('SizeZ="3"', 'SizeZ="7"')),
        (wider, xml.replace('SizeX="32"', 'SizeX="64"')),
    ):
        shutil.copy(path, target)
        tifffile.tiffcomment(target, edited)
    with pytest.raises(ImageReadError, match="declares 32x24 pixels in 7 plane") as error:
        read_layout(deeper)
    assert str(deeper) in str(error.value) and "hold 3 page(s), the first 32x24" in str(error.value)
    with pytest.raises(ImageReadError, match="declares 64x24 pixels in 3 plane") as error:
        read_layout(wider)
    assert "the metadata disagrees with the pixel data" in str(error.value)
    assert read_layout(path).images == 3


def test_pixel_sizes_come_from_ome_units_imagej_and_resolution_tags(tmp_path: Path) -> None:
    frame = planes(1, 1, 1)[0, 0, 0]
    ome = tmp_path / "nm.ome.tif"
    tifffile.imwrite(
        ome,
        frame,
        metadata={"PhysicalSizeX": 650, "PhysicalSizeXUnit": "nm", "PhysicalSizeY": 700, "PhysicalSizeYUnit": "nm"},
    )
    size = read_layout(ome).pixel_size
    assert (size.x_um, size.y_um) == pytest.approx((0.65, 0.7))

    imagej = tmp_path / "imagej.tif"
    tifffile.imwrite(
        imagej, planes(1, 2, 1)[0, :, 0], imagej=True, resolution=(4.0, 4.0), metadata={"unit": "micron", "axes": "ZYX"}
    )
    layout = read_layout(imagej)
    assert (layout.kind, layout.axes, layout.images, layout.pixel_size.x_um) == ("ImageJ TIFF", "Z", 2, 0.25)

    centimetres = tmp_path / "cm.tif"
    tifffile.imwrite(centimetres, frame, resolution=(1e4 / 0.5, 1e4 / 0.5), resolutionunit="CENTIMETER")
    assert read_layout(centimetres).pixel_size.x_um == pytest.approx(0.5)

    screen = tmp_path / "screen.tif"
    tifffile.imwrite(screen, frame, resolution=(72, 72), resolutionunit="INCH")
    layout = read_layout(screen)
    assert layout.pixel_size is None and "352.8 um per pixel" in layout.pixel_size_note
    assert f"over {LARGEST_PIXEL_UM:g} um" in layout.pixel_size_note

    assert read_layout(SOURCE).pixel_size is None  # resolution unit NONE: no physical size


def test_plain_stacks_keep_their_pages_and_leave_out_reduced_resolution_copies(tmp_path: Path) -> None:
    data = planes(1, 3, 1)[0, :, 0]
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, data, photometric="minisblack")
    layout = read_layout(stack)
    assert (layout.images, layout.axes, layout.channel_axis) == (3, "Q", "")
    assert np.array_equal(read_plane(layout, 2, None, None), data[2])

    pyramid = tmp_path / "pyramid.tif"
    with tifffile.TiffWriter(pyramid) as tiff:
        tiff.write(data[0], photometric="minisblack", metadata=None)
        tiff.write(data[0][::2, ::2], photometric="minisblack", subfiletype=1, metadata=None)
    assert read_layout(pyramid).images == 1


def test_colour_channels_are_picked_by_number_or_name_and_never_mixed(tmp_path: Path) -> None:
    frame = (tifffile.imread(SOURCE)[:24, :32] // 2).astype(np.uint8)
    composite = np.stack([frame // 2, np.zeros_like(frame), frame], axis=2)  # nuclei in blue, something in red
    write_image(tmp_path / "composite.png", composite)
    layout = read_layout(tmp_path / "composite.png")
    assert (layout.channel_axis, layout.channel_names) == ("S", ("red", "green", "blue"))
    assert np.array_equal(read_plane(layout, 0, layout.channel_index("blue"), None), frame)
    assert np.array_equal(read_plane(layout, 0, 0, None), frame // 2)
    with pytest.raises(
        ImageReadError, match=re.escape("has 3 different channels (0 'red', 1 'green', 2 'blue'); pass --channel")
    ):
        read_plane(layout, 0, None, None)

    write_image(tmp_path / "gray.png", np.repeat(frame[:, :, None], 3, axis=2))  # gray saved as RGB
    assert np.array_equal(read_plane(read_layout(tmp_path / "gray.png"), 0, None, None), frame)

    tifffile.imwrite(
        tmp_path / "two.tif", np.stack([frame, frame // 3]), photometric="minisblack", planarconfig="separate"
    )
    layout = read_layout(tmp_path / "two.tif")
    assert (layout.channel_axis, layout.channels) == ("S", 2)  # unnamed samples, no alpha
    assert np.array_equal(read_plane(layout, 0, 1, None), frame // 3)
