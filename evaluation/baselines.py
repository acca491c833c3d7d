"""Colorizations computed from the gray input alone, which a trained generator should beat.

- :func:`gray_as_rgb`: no colour at all. Its structure SSIM is 1 by construction, so it bounds
  the structure measure from above and the colour measures from below.
- :func:`beer_lambert_he`: the physics-based false-colour H&E of Giacomelli et al. 2016,
  "Virtual Hematoxylin and Eosin Transillumination Microscopy Using Epi-Fluorescence Imaging",
  PLOS ONE 11(8): e0159337, doi 10.1371/journal.pone.0159337. Each stain attenuates white light
  per channel by the Beer-Lambert law,

      RGB = 255 * exp(-beta_H * k * I_nuc) * exp(-beta_E * k * I_eos),

  with stain intensities I in [0, 1], a gain k and the per-channel absorption coefficients beta
  of their Table 1. A colorizer that cannot beat this, without learning anything, is not useful.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Absorption(NamedTuple):
    """Relative attenuation of the red, green and blue channels by one stain (dimensionless)."""

    red: float
    green: float
    blue: float


#: Hematoxylin absorption coefficients, Giacomelli et al. 2016 (PLOS ONE, doi 10.1371/journal.pone.0159337), Table 1.
HEMATOXYLIN_BETA = Absorption(red=0.860, green=1.000, blue=0.300)
#: Eosin absorption coefficients, Giacomelli et al. 2016, Table 1.
EOSIN_BETA = Absorption(red=0.050, green=1.000, blue=0.544)


def _check_gray(gray: np.ndarray) -> np.ndarray:
    gray = np.asarray(gray)
    if gray.dtype != np.uint8 or gray.ndim != 2:
        raise ValueError(f"expected a gray (H, W) uint8 image, got {gray.dtype} {gray.shape}")
    return gray


def gray_as_rgb(gray: np.ndarray) -> np.ndarray:
    """The "no colour" baseline: (H, W) uint8 gray -> (H, W, 3) uint8 with the gray in every channel."""
    return np.repeat(_check_gray(gray)[:, :, None], 3, axis=2)


def beer_lambert_he(gray: np.ndarray, k: float = 2.5, eosin_level: float = 0.15) -> np.ndarray:
    """Physics-based false-colour H&E of an (H, W) uint8 gray input: (H, W, 3) uint8 RGB.

    The Beer-Lambert mapping of Giacomelli et al. 2016 (see the module docstring) with their gain
    ``k = 2.5``. The nuclear intensity is the darkness of the input, ``I_nuc = 1 - gray / 255``,
    because this project's fluorescence is inverted (nuclei dark on light); the paper maps bright
    nuclear fluorescence directly. There is no eosin (cytoplasm) channel here, so ``I_eos`` is a
    documented stand-in: the constant ``eosin_level`` everywhere, which tints the background pale
    pink as in real H&E. Dark input becomes dark blue-purple nuclei, light input pale pink.
    """
    nuclear = 1.0 - _check_gray(gray).astype(np.float64) / 255.0
    hematoxylin = np.asarray(HEMATOXYLIN_BETA, np.float64)
    eosin = np.asarray(EOSIN_BETA, np.float64)
    # exp(-a) * exp(-b) = exp(-(a + b)): the two stains' optical densities add.
    optical_density = k * (nuclear[:, :, None] * hematoxylin + eosin_level * eosin)
    rgb = 255.0 * np.exp(-optical_density)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
