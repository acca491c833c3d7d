"""evaluation.baselines: the gray and Beer-Lambert colorizations, on real demo crops."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from skimage.color import rgb2hsv

from evaluation.baselines import EOSIN_BETA, HEMATOXYLIN_BETA, beer_lambert_he, gray_as_rgb
from evaluation.metrics import darkness
from tests.helpers import demo_arrays


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


def test_beer_lambert_follows_the_formula_at_the_extremes() -> None:
    # Written out per channel: 255 * exp(-beta_H * k * I_nuc) * exp(-beta_E * k * I_eos).
    gray = np.array([[0, 255]], np.uint8)  # black input = full nucleus, white input = no nucleus
    rgb = beer_lambert_he(gray, k=2.5, eosin_level=0.15)
    beta_h, beta_e = (0.860, 1.000, 0.300), (0.050, 1.000, 0.544)
    nucleus = [
        round(255 * math.exp(-h * 2.5 * 1.0) * math.exp(-e * 2.5 * 0.15)) for h, e in zip(beta_h, beta_e, strict=True)
    ]
    background = [round(255 * math.exp(-e * 2.5 * 0.15)) for e in beta_e]
    assert rgb[0, 0].tolist() == nucleus  # about (29, 14, 98): dark blue-purple
    assert rgb[0, 1].tolist() == background  # about (250, 175, 208): pale pink
    assert beer_lambert_he(gray, eosin_level=0.0)[0, 1].tolist() == [255, 255, 255]  # no stain at all: white


def test_beer_lambert_is_deterministic_uint8_rgb(demo_root: Path) -> None:
    gray = demo_arrays(demo_root / "testA")[0]
    first = beer_lambert_he(gray)
    assert first.shape == (*gray.shape, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, beer_lambert_he(gray.copy()))
    with pytest.raises(ValueError, match="gray"):
        beer_lambert_he(gray.astype(np.float32))


def test_beer_lambert_on_real_crops_gives_dark_purple_nuclei_on_pink(demo_root: Path) -> None:
    grays, masks = demo_arrays(demo_root / "testA"), demo_arrays(demo_root / "testA_GT") > 0
    rgb = np.stack([beer_lambert_he(gray) for gray in grays])
    hue = rgb2hsv(rgb)[..., 0] * 360
    nuclei, background = masks, ~masks
    assert darkness(rgb)[nuclei].mean() > darkness(rgb)[background].mean() + 0.2
    nuclei_hue = hue[nuclei]
    assert np.mean((nuclei_hue >= 240) & (nuclei_hue <= 330)) > 0.95  # purple
    # The background of this inverted fluorescence is light gray, not white (median level ~226), so it
    # carries a little "nuclear" signal and its hue sits on the purple side of pink; the clear background
    # (level >= 230) is pink.
    assert 295 <= np.median(hue[background]) <= 360
    clear = hue[background & (grays >= 230)]
    assert clear.size > 0.2 * background.sum()
    assert np.mean((clear >= 300) | (clear <= 20)) > 0.95
