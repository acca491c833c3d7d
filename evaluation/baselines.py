"""Colorizations a trained generator must beat, and one it must never be confused with.

Computed from the gray input (and, for the lookup table, the training folders) alone:

- :func:`gray_as_rgb`: no colour at all. Perfectly faithful in structure, unrealistic in colour.
- :func:`beer_lambert_he`: the physics-based false-colour H&E of Giacomelli et al. 2016,
  "Virtual Hematoxylin and Eosin Transillumination Microscopy Using Epi-Fluorescence Imaging",
  PLOS ONE 11(8): e0159337, doi 10.1371/journal.pone.0159337. Each stain attenuates white light
  per channel by the Beer-Lambert law,

      RGB = 255 * exp(-k * (beta_H * I_nuc + beta_E * I_eos)),

  with their gain k = 2.5 and absorption coefficients beta (Table 1). Nuclei where the input is
  dark, in colours no slide has: the faithfulness yardstick.
- :class:`QuantileLookup`: a 256-entry table from input level to H&E colour, fit by quantile
  matching on the training folders: the cheapest colour mapping, which keeps every structure.
  A model whose colours are not closer to real H&E than this has learned nothing about colour.
- :func:`real_tiles_ignoring_input`: real H&E tiles that have nothing to do with the input.
  Perfectly realistic and unfaithful; the faithfulness guards must reject it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from evaluation.metrics import name_seed
from util.color import LUMA_WEIGHTS
from util.stain import StainModel, sample_pixels


class Absorption(NamedTuple):
    """Relative attenuation of the red, green and blue channels by one stain (dimensionless)."""

    red: float
    green: float
    blue: float


#: Hematoxylin absorption coefficients, Giacomelli et al. 2016 (PLOS ONE, doi 10.1371/journal.pone.0159337), Table 1.
HEMATOXYLIN_BETA = Absorption(red=0.860, green=1.000, blue=0.300)
#: Eosin absorption coefficients, Giacomelli et al. 2016, Table 1.
EOSIN_BETA = Absorption(red=0.050, green=1.000, blue=0.544)
#: Their gain k.
GAIN = 2.5
#: The input's background level is this percentile of its own pixels (nuclei dark, so background is the bright bulk).
BACKGROUND_PERCENTILE = 90.0
#: Most pixels the eosin level is calibrated on.
EOSIN_FIT_PIXELS = 200_000
#: Most pixels the lookup table is fit on, per side.
LOOKUP_FIT_PIXELS = 1_000_000


def _check_gray(gray: np.ndarray) -> np.ndarray:
    gray = np.asarray(gray)
    if gray.dtype != np.uint8 or gray.ndim != 2:
        raise ValueError(f"expected a gray (H, W) uint8 image, got {gray.dtype} {gray.shape}")
    return gray


def gray_as_rgb(gray: np.ndarray) -> np.ndarray:
    """The "no colour" baseline: (H, W) uint8 gray -> (H, W, 3) uint8 with the gray in every channel."""
    return np.repeat(_check_gray(gray)[:, :, None], 3, axis=2)


# -- Beer-Lambert ---------------------------------------------------------------------------------
def nuclear_intensity(gray: np.ndarray) -> np.ndarray:
    """Giacomelli's nuclear intensity I_nuc in [0, 1] of an (H, W) uint8 input whose nuclei are dark.

    Background-subtracted: the input's background level (its :data:`BACKGROUND_PERCENTILE`-th
    percentile) maps to 0, no stain, and black to 1: ``I_nuc = clip((b - gray) / b, 0, 1)``.
    Without the subtraction a light-gray background (level ~226 in the demo) would carry 11% of
    a nucleus's stain everywhere.
    """
    gray = _check_gray(gray).astype(np.float64)
    background = max(float(np.percentile(gray, BACKGROUND_PERCENTILE)), 1.0)
    return np.clip((background - gray) / background, 0.0, 1.0)


def beer_lambert_he(gray: np.ndarray, eosin_level: float, k: float = GAIN) -> np.ndarray:
    """Physics-based false-colour H&E of an (H, W) uint8 gray input: (H, W, 3) uint8 RGB.

    ``I_nuc`` is :func:`nuclear_intensity`. The input has no cytoplasm channel, so eosin is
    uniform, ``I_eos = eosin_level`` everywhere; :func:`calibrate_eosin_level` chooses the level
    whose background has the eosin amount of real non-nuclear tissue.
    """
    nuclear = nuclear_intensity(gray)
    optical_density = k * (nuclear[:, :, None] * np.asarray(HEMATOXYLIN_BETA) + eosin_level * np.asarray(EOSIN_BETA))
    return np.clip(np.rint(255.0 * np.exp(-optical_density)), 0, 255).astype(np.uint8)


def calibrate_eosin_level(stain_model: StainModel, reference: Sequence[np.ndarray], k: float = GAIN) -> float:
    """The eosin level at which the Beer-Lambert background carries the median eosin amount of the
    reference's non-nuclear pixels (by ``stain_model``); searched on a grid of 0.005 in [0, 2]."""
    pixels = sample_pixels(reference, EOSIN_FIT_PIXELS)
    tissue = pixels[~stain_model.nuclear(pixels)]
    target = float(np.median(stain_model.eosin(tissue if len(tissue) else pixels)))
    levels = np.linspace(0.0, 2.0, 401)
    backgrounds = np.clip(np.rint(255.0 * np.exp(-k * levels[:, None] * np.asarray(EOSIN_BETA))), 0, 255)
    amounts = stain_model.eosin(backgrounds.astype(np.uint8))
    return float(levels[np.argmin(np.abs(amounts - target))])


# -- quantile lookup table ------------------------------------------------------------------------
@dataclass(frozen=True)
class QuantileLookup:
    """Input level -> H&E colour: ``table`` (256, 3) uint8, applied as ``table[gray]``."""

    table: np.ndarray

    @classmethod
    def fit(cls, gray_images: Sequence[np.ndarray], he_images: Sequence[np.ndarray]) -> QuantileLookup:
        """Quantile matching of input levels to H&E pixels ranked from dark to light.

        The input levels of ``gray_images`` (H, W) uint8 take quantile bands of their pooled
        distribution, ``[F(v - 1), F(v)]``; level ``v`` gets the mean colour of the H&E pixels of
        ``he_images`` (H, W, 3) uint8 whose luminance rank falls in the same band. Dark input
        becomes the darkest H&E colours (nuclei), light input the lightest (background), in the
        proportions of the two training folders. Levels absent from the input get the colour at
        their quantile.
        """
        gray = sample_pixels([np.asarray(image)[..., None] for image in gray_images], LOOKUP_FIT_PIXELS)[:, 0]
        he = sample_pixels(he_images, LOOKUP_FIT_PIXELS).astype(np.float64)
        he = he[np.argsort(he @ np.asarray(LUMA_WEIGHTS), kind="stable")]
        cumulative = np.concatenate([np.zeros((1, 3)), np.cumsum(he, axis=0)])
        fraction = np.cumsum(np.bincount(gray, minlength=256)) / len(gray)
        start = np.floor(np.concatenate([[0.0], fraction[:-1]]) * len(he)).astype(np.intp)
        stop = np.minimum(np.maximum(np.ceil(fraction * len(he)).astype(np.intp), start + 1), len(he))
        start = np.minimum(start, stop - 1)
        means = (cumulative[stop] - cumulative[start]) / (stop - start)[:, None]
        return cls(np.clip(np.rint(means), 0, 255).astype(np.uint8))

    def __call__(self, gray: np.ndarray) -> np.ndarray:
        """(H, W) uint8 gray -> (H, W, 3) uint8 colours."""
        return self.table[_check_gray(gray)]


# -- sanity row -----------------------------------------------------------------------------------
def real_tiles_ignoring_input(
    names: Sequence[str], shapes: Sequence[tuple[int, int]], tiles: Sequence[np.ndarray]
) -> list[np.ndarray]:
    """For each input (by name and (H, W) shape), a real H&E tile unrelated to it: (H, W, 3) uint8 each.

    The tile is picked by a hash of the input's name (so file order does not matter) and cut or
    wrapped to the input's size.
    """
    if not tiles:
        raise ValueError("no real tiles to stand in for the colorizations")
    chosen = []
    for name, (height, width) in zip(names, shapes, strict=True):
        tile = np.asarray(tiles[name_seed(name) % len(tiles)])
        rows = np.arange(height) % tile.shape[0]
        columns = np.arange(width) % tile.shape[1]
        chosen.append(np.ascontiguousarray(tile[np.ix_(rows, columns)][..., :3]))
    return chosen
