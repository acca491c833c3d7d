"""evaluation.baselines: gray, Beer-Lambert, the quantile lookup table and the real-tiles sanity row."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from skimage.color import rgb2hsv

from evaluation.baselines import (
    EOSIN_BETA,
    HEMATOXYLIN_BETA,
    QuantileLookup,
    beer_lambert_he,
    calibrate_eosin_level,
    gray_as_rgb,
    nuclear_intensity,
    real_tiles_ignoring_input,
)
from tests.helpers import demo_arrays
from util.stain import StainModel, estimate_stain_model


@pytest.fixture(scope="module")
def stain_model(demo_root: Path) -> StainModel:
    return estimate_stain_model(list(demo_arrays(demo_root / "trainB")), "demo trainB")


def test_gray_as_rgb_repeats_the_gray(demo_root: Path) -> None:
    gray = demo_arrays(demo_root / "testA")[0]
    rgb = gray_as_rgb(gray)
    assert rgb.shape == (*gray.shape, 3) and rgb.dtype == np.uint8
    for channel in range(3):
        np.testing.assert_array_equal(rgb[..., channel], gray)
    with pytest.raises(ValueError, match="gray"):
        gray_as_rgb(rgb)


def test_beer_lambert_constants_are_giacomellis_table_1() -> None:
    assert tuple(HEMATOXYLIN_BETA) == (0.860, 1.000, 0.300)
    assert tuple(EOSIN_BETA) == (0.050, 1.000, 0.544)


def test_background_level_maps_to_no_nuclear_stain() -> None:
    gray = np.full((10, 10), 220, np.uint8)
    gray[0, :5] = 0  # 5% black: a nucleus
    gray[1, :5] = 110  # half as dark as the background
    intensity = nuclear_intensity(gray)
    assert intensity[5, 5] == 0.0 and intensity[0, 0] == 1.0 and intensity[1, 0] == pytest.approx(0.5)


def test_beer_lambert_follows_the_formula_at_the_extremes() -> None:
    # Written out per channel: 255 * exp(-beta_H * k * I_nuc) * exp(-beta_E * k * I_eos).
    gray = np.full((4, 4), 230, np.uint8)
    gray[0, 0] = 0  # black input = full nucleus; the background 230 = no nucleus
    rgb = beer_lambert_he(gray, eosin_level=0.2, k=2.5)
    beta_h, beta_e = (0.860, 1.000, 0.300), (0.050, 1.000, 0.544)
    nucleus = [round(255 * math.exp(-h * 2.5) * math.exp(-e * 2.5 * 0.2)) for h, e in zip(beta_h, beta_e, strict=True)]
    background = [round(255 * math.exp(-e * 2.5 * 0.2)) for e in beta_e]
    assert rgb[0, 0].tolist() == nucleus
    assert rgb[3, 3].tolist() == background
    assert beer_lambert_he(gray, eosin_level=0.0)[3, 3].tolist() == [255, 255, 255]  # no stain at all: white
    with pytest.raises(ValueError, match="gray"):
        beer_lambert_he(gray.astype(np.float32), 0.1)


def test_eosin_level_gives_the_background_the_eosin_of_real_tissue(demo_root: Path, stain_model: StainModel) -> None:
    tiles = list(demo_arrays(demo_root / "trainB"))
    level = calibrate_eosin_level(stain_model, tiles)
    assert 0.02 < level < 1.0
    pixels = np.concatenate([tile.reshape(-1, 3) for tile in tiles])
    target = np.median(stain_model.eosin(pixels[~stain_model.nuclear(pixels)]))
    background = beer_lambert_he(np.full((2, 2), 200, np.uint8), level)[0, 0]
    assert stain_model.eosin(background[None])[0] == pytest.approx(target, abs=0.03)


def test_beer_lambert_on_real_crops_gives_purple_nuclei_on_pink(demo_root: Path, stain_model: StainModel) -> None:
    grays, masks = demo_arrays(demo_root / "valA"), demo_arrays(demo_root / "valA_GT") > 0
    level = calibrate_eosin_level(stain_model, list(demo_arrays(demo_root / "trainB")))
    rgb = np.stack([beer_lambert_he(gray, level) for gray in grays])
    hue = rgb2hsv(rgb)[..., 0] * 360
    assert rgb[masks].mean() < rgb[~masks].mean() - 40  # nuclei darker
    assert np.mean((hue[masks] >= 230) & (hue[masks] <= 330)) > 0.9  # blue-purple
    clear = hue[~masks & (grays >= np.percentile(grays, 90))]
    assert np.mean((clear >= 290) | (clear <= 20)) > 0.9  # pink


def test_lookup_table_maps_dark_input_to_dark_he_and_keeps_structure(demo_root: Path) -> None:
    gray_train, he_train = list(demo_arrays(demo_root / "trainA")), list(demo_arrays(demo_root / "trainB"))
    lookup = QuantileLookup.fit(gray_train, he_train)
    assert lookup.table.shape == (256, 3) and lookup.table.dtype == np.uint8
    luma = lookup.table @ np.array([0.299, 0.587, 0.114])
    levels = np.unique(np.concatenate([image.ravel() for image in gray_train]))
    assert np.all(np.diff(luma[levels]) >= -1.0)  # darker input, darker colour (up to rounding)
    assert luma[levels[0]] < 90 and luma[levels[-1]] > 170
    gray = demo_arrays(demo_root / "valA")[0]
    np.testing.assert_array_equal(lookup(gray), lookup.table[gray])
    # Same inputs, shuffled: the same table.
    again = QuantileLookup.fit(gray_train[::-1], he_train[::-1])
    np.testing.assert_array_equal(again.table, lookup.table)


def test_real_tiles_ignore_the_input_and_not_its_order(demo_root: Path) -> None:
    tiles = list(demo_arrays(demo_root / "trainB"))
    names = [f"crop{index}" for index in range(6)]
    chosen = real_tiles_ignoring_input(names, [(128, 100)] * 6, tiles)
    assert all(image.shape == (128, 100, 3) and image.dtype == np.uint8 for image in chosen)
    reversed_chosen = real_tiles_ignoring_input(names[::-1], [(128, 100)] * 6, tiles)
    for image, other in zip(chosen, reversed_chosen[::-1], strict=True):
        np.testing.assert_array_equal(image, other)
    wrapped = real_tiles_ignoring_input(["x"], [(200, 64)], tiles)[0]
    np.testing.assert_array_equal(wrapped[128:], wrapped[: 200 - 128])
