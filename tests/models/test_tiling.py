"""models.tiling: tiled inference equals whole-image inference where it should, and leaves no seams."""

from __future__ import annotations

import copy
import itertools
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from data.intensity import IntensityNormalization
from data.transforms import normalize, to_tensor, to_uint8_image
from models import networks
from models.tiling import TiledColorizer, blend_ramp
from util.grid import window_starts

SOURCE = Path(__file__).resolve().parents[2] / "datasets" / "sources" / "fluo_nuclei_dsb2018" / "image.tif"


def to_input(gray: np.ndarray) -> torch.Tensor:
    return normalize(to_tensor(gray[:, :, None] / 255.0))[None]


def to_output(colours: np.ndarray) -> np.ndarray:
    return to_uint8_image(torch.from_numpy(colours).permute(2, 0, 1))


def whole(generator: torch.nn.Module, gray: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return to_uint8_image(generator(to_input(gray))[0])


def generator(norm: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return networks.define_generator("resnet_6blocks", 1, 3, 8, norm, False, "normal", 0.02).eval()


@pytest.fixture(scope="module")
def real_frame() -> np.ndarray:
    """The real fluorescence frame, inverted; its left half replaced by flat background, so that
    tiles differ as much as background and crowded nuclei do."""
    frame = IntensityNormalization(invert=True).apply(tifffile.imread(SOURCE))
    noise = np.random.default_rng(0).integers(-4, 5, (512, 256))
    frame[:, :256] = np.clip(230 + noise, 0, 255)
    return frame


def seam_jump(image: np.ndarray, columns: list[int]) -> float:
    """Mean absolute step between neighbouring columns at ``columns`` minus the mean step elsewhere."""
    steps = np.abs(np.diff(image.astype(float).mean(axis=2), axis=1)).mean(axis=0)
    return float(steps[columns].mean() - np.delete(steps, columns).mean())


def test_without_normalisation_tiles_equal_the_whole_image_at_odd_sizes() -> None:
    network = generator("none")
    gray = (np.random.default_rng(1).random((389, 517)) * 255).astype(np.uint8)
    tiled = TiledColorizer(network, to_input, to_output, tile=128, overlap=32, batch_size=3)(gray)
    assert tiled.shape == (389, 517, 3) and tiled.dtype == np.uint8
    difference = np.abs(tiled.astype(int) - whole(network, gray))
    assert difference[32:-32, 32:-32].max() <= 1  # rounding only, away from the image border


def test_whole_image_statistics_follow_the_untiled_output_and_leave_no_seam(real_frame: np.ndarray) -> None:
    network = generator("instance")
    reference = whole(network, real_frame)
    image_statistics = TiledColorizer(copy.deepcopy(network), to_input, to_output, tile=128, overlap=32)(real_frame)
    tile_statistics = TiledColorizer(
        copy.deepcopy(network), to_input, to_output, tile=128, overlap=32, global_statistics=False
    )(real_frame)
    # In the flat half, per-tile statistics stretch the background noise; whole-image ones do not.
    error_image = np.abs(image_statistics.astype(int) - reference)[:, :200].mean()
    error_tile = np.abs(tile_statistics.astype(int) - reference)[:, :200].mean()
    assert error_image < 0.6 * error_tile
    starts = window_starts(512, 128, 128 - 32)
    edges = [x - 1 for x in starts[1:]] + [x + 127 for x in starts[:-1]]
    assert abs(seam_jump(image_statistics, edges)) < 1.0  # grey levels: no visible step at tile borders


def test_tiles_cover_the_image_and_windows_stay_positive() -> None:
    assert window_starts(100, 128, 128 - 16) == [0]
    starts = window_starts(517, 128, 128 - 32)
    assert starts[0] == 0 and starts[-1] == 517 - 128 and all(b - a <= 96 for a, b in itertools.pairwise(starts))
    ramp = blend_ramp(128, 32, fade_start=True, fade_end=False)
    assert ramp.min() > 0 and ramp[-1] == 1.0 and np.all(np.diff(ramp[:32]) > 0)
    with pytest.raises(ValueError, match="overlap"):
        TiledColorizer(generator("none"), to_input, to_output, tile=64, overlap=64)


@pytest.mark.parametrize("global_statistics", [True, False])
def test_images_of_one_and_a_few_pixels_keep_their_size(global_statistics: bool) -> None:
    """Images below the size the generator pads up to (1x1, 3x2, a strip 2 high) keep their size, in both modes."""
    network = generator("instance")
    colorizer = TiledColorizer(network, to_input, to_output, tile=64, overlap=8, global_statistics=global_statistics)
    for shape in [(1, 1), (3, 2), (2, 90)]:
        gray = (np.random.default_rng(2).random(shape) * 255).astype(np.uint8)
        color = colorizer(gray)
        assert color.shape == (*shape, 3) and color.dtype == np.uint8
