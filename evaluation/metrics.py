"""How good is a virtual stain? Colour, stain, structure and nuclei measures on NumPy images.

Conventions: RGB images are (H, W, 3) uint8, gray images (H, W) uint8, masks (H, W) bool; a
batch is a stacked (N, H, W, 3) uint8 array or a list of (H, W, 3) arrays (sizes may differ
where only the pixels matter). Every batch measure pools all pixels of all images and is
vectorised over them, so scoring hundreds of images per epoch for many epochs stays cheap.

Colour (generated batch against real H&E):

- :func:`hsv_correlation`: Pearson correlation of the normalised 3-D HSV histograms, the
  project's traditional colour measure. 1 for identical distributions; coarse and bounded, so it
  saturates near 1 and says nothing about how far apart two colours are.
- :func:`sliced_wasserstein_lab`: sliced Wasserstein-1 distance between the CIELAB pixel
  distributions, in CIELAB units (roughly "just noticeable differences"). 0 for identical
  inputs; it grows with the size of a colour shift instead of saturating.
- :func:`stain_wasserstein`: Wasserstein-1 distances between the hematoxylin and the eosin
  optical densities (Ruifrok-Johnston colour deconvolution, ``skimage.color.rgb2hed``), i.e.
  whether the amounts of each stain look like real H&E.

Structure: :func:`structure_ssim` is the SSIM between the luma of the colourised image and its
gray input; colouring must not move, blur or invent structure.

Nuclei: a mask is read off the colourised image and scored against the ground truth with
:func:`dice_iou`. The primary rule is :func:`nuclei_mask_by_darkness` (Otsu threshold of
``1 - luminance``): nuclei are the darkest objects in H&E and in this project's inverted
fluorescence. :func:`nuclei_mask_by_hematoxylin` (Otsu threshold of the H channel of
``rgb2hed``) is kept as a secondary rule because it misreads a saturated pink background as
hematoxylin: measured on this project's data, Dice 0.48 by the H channel against 0.87 by
darkness on the same images. The H density is not a nucleus detector for generated colours: a
clean pink keeps it near 0 (its red level is high), but where the nuclei's colour has a clipped
channel, e.g. green 0, that channel's optical density hits rgb2hed's 1e-6 floor and cancels their
H, so a pink background carries more "hematoxylin" than the nuclei (the tests build such a case).
Darkness needs no stain model and ranks such nuclei darkest all the same.

Speed: HSV bins come from a table of all 2**24 colours, stain densities from per-level tables,
and distances from seeded pixel subsamples. A reference is summarised once
(:func:`summarise_colours`) and compared with every epoch (:func:`colour_distances`); the
per-image measures run on whole batches (:func:`image_scores`, with a batched Otsu threshold
equal to scikit-image's).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.stats import wasserstein_distance
from skimage.color import hed_from_rgb, rgb2lab
from skimage.metrics import structural_similarity

from util.color import LUMA_WEIGHTS

#: Bins of hue, saturation and value of the HSV histogram (and so of :func:`hsv_correlation`).
HSV_BINS = (32, 32, 32)
#: Most bins per HSV channel: keeps the exact float32 binning of :func:`_hsv_bin_index` exact.
MAX_HSV_BINS = 4096
#: Levels of the common quantile grid on which projections of unequal sample counts are compared.
QUANTILE_LEVELS = 1000
#: Histogram bins of the Otsu threshold (threshold_otsu's default).
OTSU_BINS = 256
#: SSIM window: Gaussian sigma (pixels) and truncation (in sigmas) giving the 11-tap window of Wang et al. 2004.
SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
#: SSIM stabilising constants (Wang et al. 2004) for a data range of 255.
SSIM_K1, SSIM_K2 = 0.01, 0.03
# rgb2hed clips intensities at this value before the logarithm and divides by its logarithm.
_HED_FLOOR = 1e-6
# Optical density of each uint8 level exactly as rgb2hed computes it, times the weight of each input
# channel in the hematoxylin and eosin rows of its inverse stain matrix: (256, 3) each. A density
# is then three table look-ups and two additions per pixel, with no float copy of the image.
_OPTICAL_DENSITY = np.log(np.maximum(np.arange(256) / 255.0, _HED_FLOOR)) / np.log(_HED_FLOOR)
_HEMATOXYLIN_TABLE = _OPTICAL_DENSITY[:, None] * hed_from_rgb[:, 0]
_EOSIN_TABLE = _OPTICAL_DENSITY[:, None] * hed_from_rgb[:, 1]


# -- input handling ------------------------------------------------------------------------------
def _check_rgb(image: np.ndarray) -> np.ndarray:
    """``image`` as an array of uint8 RGB pixels (..., 3), or a ValueError naming what is wrong."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim < 3 or image.shape[-1] != 3:
        raise ValueError(f"expected uint8 RGB images (..., H, W, 3), got {image.dtype} {image.shape}")
    return image


def _pixels(images: np.ndarray) -> np.ndarray:
    """All pixels of a batch (stacked array or list of images of any sizes) as one (P, 3) uint8 array."""
    if isinstance(images, list | tuple):
        parts = [_check_rgb(image).reshape(-1, 3) for image in images]
        pixels = np.concatenate(parts) if parts else np.empty((0, 3), np.uint8)
    else:
        pixels = _check_rgb(images).reshape(-1, 3)
    if len(pixels) == 0:
        raise ValueError("the batch holds no pixels")
    return pixels


def _subsample(pixels: np.ndarray, max_pixels: int, seed: int) -> np.ndarray:
    """At most ``max_pixels`` rows of (P, 3) ``pixels``, drawn uniformly with replacement from ``seed``.

    The same seed and pixel count give the same rows, so identical batches give identical samples
    (and distances of exactly 0). Drawing with replacement is an i.i.d. sample of the pixel
    distribution and costs O(max_pixels), where a permutation of millions of pixels would not.
    """
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be positive, got {max_pixels}")
    if len(pixels) <= max_pixels:
        return pixels
    return np.take(pixels, np.random.default_rng(seed).integers(0, len(pixels), max_pixels), axis=0)


def _luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma of uint8 RGB (..., 3) -> float64 (...) in [0, 255], the weights Pillow's "L" mode uses."""
    rgb = _check_rgb(rgb)
    red, green, blue = LUMA_WEIGHTS
    return rgb[..., 0] * red + rgb[..., 1] * green + rgb[..., 2] * blue


# -- colour: HSV histogram -----------------------------------------------------------------------
def _hsv_bin_index(pixels: np.ndarray, bins: tuple[int, int, int]) -> np.ndarray:
    """Flat HSV bin index (P,) int64 of (P, 3) uint8 RGB colours, exact.

    HSV as ``skimage.color.rgb2hsv`` defines it (hexcone; hue a fraction of the turn in [0, 1),
    0 for grays; saturation ``(max - min) / max``; value ``max / 255``), but binned without the
    float rounding by which rgb2hsv puts colours lying exactly on a bin edge (common for uint8
    ratios such as saturation 1/2) into the bin below.
    """
    hue_bins, saturation_bins, value_bins = bins
    # Each bin is floor(p / q) of two integers with q <= 6 * 255 and p < 2**24 (bins <= MAX_HSV_BINS), both
    # exact in float32. A fraction p / q lies at least 1 / q from an integer, far more than the rounding
    # error of the quotient (<= MAX_HSV_BINS * 2**-24), so the float32 floor is the exact integer floor.
    red, green, blue = (pixels[:, channel].astype(np.float32) for channel in range(3))
    top = np.maximum(np.maximum(red, green), blue)
    delta = top - np.minimum(np.minimum(red, green), blue)
    # Hue times 6 * delta: the sextant offset of the largest channel plus the signed difference of the others.
    sixths = np.where(
        blue == top,
        4 * delta + red - green,
        np.where(green == top, 2 * delta + blue - red, np.where(green >= blue, green - blue, 6 * delta + green - blue)),
    )
    with np.errstate(invalid="ignore", divide="ignore"):  # gray and black pixels: 0 / 0, replaced by where()
        hue = np.where(delta > 0, np.floor(sixths * hue_bins / (6 * delta)), 0).astype(np.int64)
        saturation = np.where(top > 0, np.floor(delta * saturation_bins / top), 0).astype(np.int64)
    value = np.floor(top * value_bins / 255).astype(np.int64)
    saturation = np.minimum(saturation, saturation_bins - 1)  # saturation and value 1 belong to the top bin
    value = np.minimum(value, value_bins - 1)
    return (hue * saturation_bins + saturation) * value_bins + value


@functools.lru_cache(maxsize=4)
def _hsv_bin_table(bins: tuple[int, int, int]) -> np.ndarray:
    """HSV bin of every 24-bit colour ``(r << 16) | (g << 8) | b``: (2**24,) uint16 or int32, built once per ``bins``.

    Histogramming then costs one look-up per pixel instead of an HSV conversion (about 0.5 s once,
    32 MiB for up to 65536 bins).
    """
    dtype = np.uint16 if int(np.prod(bins)) <= 1 << 16 else np.int32
    table = np.empty(1 << 24, dtype)
    chunk = 1 << 20  # 16 values of red at a time: a few MiB of temporaries
    for start in range(0, 1 << 24, chunk):
        codes = np.arange(start, start + chunk, dtype=np.int32)
        colours = np.stack([codes >> 16, (codes >> 8) & 255, codes & 255], axis=1).astype(np.uint8)
        table[start : start + chunk] = _hsv_bin_index(colours, bins)
    return table


def hsv_histogram(images: np.ndarray, bins: tuple[int, int, int] = HSV_BINS) -> np.ndarray:
    """Normalised HSV histogram (hue, saturation, value bins) float64, summing to 1, of all pixels of a batch.

    ``images``: (N, H, W, 3) uint8 RGB (or a list of (H, W, 3)). Hue is circular in [0, 1) and
    gray pixels have hue 0, as in ``skimage.color.rgb2hsv``; each channel is cut into equal bins.
    """
    bins = tuple(int(count) for count in bins)
    if len(bins) != 3 or not all(1 <= count <= MAX_HSV_BINS for count in bins):
        raise ValueError(f"bins must be three counts in [1, {MAX_HSV_BINS}], got {bins}")
    return _hsv_histogram_of_pixels(_pixels(images), bins)


def _hsv_histogram_of_pixels(pixels: np.ndarray, bins: tuple[int, int, int]) -> np.ndarray:
    """:func:`hsv_histogram` of (P, 3) uint8 pixels: each pixel's 24-bit colour code looked up in the bin table."""
    codes = pixels[:, 0].astype(np.int32)
    for channel in (1, 2):
        codes <<= 8
        codes |= pixels[:, channel]
    counts = np.bincount(np.take(_hsv_bin_table(bins), codes), minlength=int(np.prod(bins)))
    return (counts / len(pixels)).reshape(bins)


def hsv_correlation(images: np.ndarray, reference: np.ndarray) -> float:
    """Pearson correlation in [-1, 1] of the flattened :func:`hsv_histogram` of two batches; 1 when identical.

    Two histograms that are both constant (only possible with a single bin) have no defined
    correlation; they count as 1 when equal and 0 otherwise.
    """
    return _correlation(hsv_histogram(images).ravel(), hsv_histogram(reference).ravel())


def _correlation(first: np.ndarray, second: np.ndarray) -> float:
    """Pearson correlation of two flat histograms (see :func:`hsv_correlation`)."""
    first, second = first - first.mean(), second - second.mean()
    scale = np.sqrt(np.dot(first, first) * np.dot(second, second))
    if scale == 0:
        return 1.0 if np.array_equal(first, second) else 0.0
    return float(np.clip(np.dot(first, second) / scale, -1.0, 1.0))


# -- colour: sliced Wasserstein in CIELAB ---------------------------------------------------------
def _quantiles_of_sorted(rows: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Quantiles (R, L) of each ascending row of (R, S) ``rows`` at ``levels`` in [0, 1], as np.quantile's linear rule."""
    position = levels * (rows.shape[1] - 1)
    below = np.floor(position).astype(np.intp)
    above = np.minimum(below + 1, rows.shape[1] - 1)
    fraction = position - below
    return rows[:, below] * (1.0 - fraction) + rows[:, above] * fraction


def sliced_wasserstein_lab(
    images: np.ndarray, reference: np.ndarray, projections: int = 64, seed: int = 0, max_pixels: int = 200_000
) -> float:
    """Sliced Wasserstein-1 distance, in CIELAB units, between the Lab pixel distributions of two batches.

    Each side is reduced to at most ``max_pixels`` pixels (seeded, so the value is deterministic),
    converted by ``skimage.color.rgb2lab`` and projected on ``projections`` random unit directions
    (seeded; an independent stream of the same seed). The 1-D W1 of each projection is the mean gap
    between the sorted projections when both sides have as many samples, otherwise the mean gap
    between their quantiles on a grid of :data:`QUANTILE_LEVELS` levels. The result is the mean
    over directions: 0 for identical inputs, and larger the further the colours are moved.
    Projections are float32 (sorting twice as fast); their error, ~1e-5 Lab units, is negligible.
    """
    directions = _directions(projections, seed)
    first = _sorted_lab_projections(_subsample(_pixels(images), max_pixels, seed), directions)
    second = _sorted_lab_projections(_subsample(_pixels(reference), max_pixels, seed), directions)
    return _sliced_distance(first, second)


def _directions(projections: int, seed: int) -> np.ndarray:
    """(projections, 3) float32 random unit directions of CIELAB, from an independent stream of ``seed``."""
    if projections < 1:
        raise ValueError(f"projections must be positive, got {projections}")
    directions = np.random.default_rng((seed, 1)).normal(size=(projections, 3))
    return (directions / np.linalg.norm(directions, axis=1, keepdims=True)).astype(np.float32)


def _sorted_lab_projections(pixels: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """(projections, samples) float32: the Lab colours of (P, 3) uint8 pixels on every direction, rows ascending."""
    lab = rgb2lab(pixels[:, None, :])[:, 0, :].astype(np.float32)
    return np.sort(directions @ lab.T, axis=1)


def _sliced_distance(first: np.ndarray, second: np.ndarray) -> float:
    """Mean over directions of the 1-D W1 between two sets of sorted projections (see :func:`sliced_wasserstein_lab`)."""
    if first.shape != second.shape:
        levels = (np.arange(QUANTILE_LEVELS) + 0.5) / QUANTILE_LEVELS
        first, second = _quantiles_of_sorted(first, levels), _quantiles_of_sorted(second, levels)
    return float(np.mean(np.abs(first - second), dtype=np.float64))


# -- stains ---------------------------------------------------------------------------------------
def _density(pixels: np.ndarray, table: np.ndarray) -> np.ndarray:
    """One stain's optical density (P,) float64 >= 0 of (P, 3) uint8 pixels, equal to rgb2hed's channel."""
    density = np.take(table[:, 0], pixels[:, 0])
    density += np.take(table[:, 1], pixels[:, 1])
    density += np.take(table[:, 2], pixels[:, 2])
    return np.maximum(density, 0.0, out=density)


def _densities(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hematoxylin and eosin optical densities (P,) float64 >= 0 of (P, 3) uint8 pixels, equal to rgb2hed's."""
    return _density(pixels, _HEMATOXYLIN_TABLE), _density(pixels, _EOSIN_TABLE)


def stain_densities(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hematoxylin and eosin optical densities of all pixels of a batch: two flat float64 arrays (P,), >= 0.

    The H and E channels of ``skimage.color.rgb2hed`` (Ruifrok-Johnston colour deconvolution, with
    its 1e-6 floor and normalisation), computed through per-level tables instead of a float copy.
    Accepts one (H, W, 3) image, an (N, H, W, 3) batch or a list.
    """
    return _densities(_pixels(images))


def stain_wasserstein(
    images: np.ndarray, reference: np.ndarray, max_pixels: int = 200_000, seed: int = 0
) -> dict[str, float]:
    """Wasserstein-1 distances (optical density units) of the hematoxylin and eosin densities of two batches.

    ``{"hematoxylin": W1, "eosin": W1}`` between at most ``max_pixels`` pixels per side, drawn as
    in :func:`sliced_wasserstein_lab` (same seed, same pixels). 0 for identical inputs. The value
    is ``scipy.stats.wasserstein_distance``'s; when both sides hold as many samples it is computed
    as the mean gap between the sorted samples, the same number several times faster.
    """

    def sorted_densities(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        hematoxylin, eosin = _densities(pixels)
        return np.sort(hematoxylin), np.sort(eosin)

    first = sorted_densities(_subsample(_pixels(images), max_pixels, seed))
    sample = _subsample(_pixels(reference), max_pixels, seed)
    second = sorted_densities(sample)
    return {
        name: _wasserstein_of_sorted(mine, theirs)
        for name, mine, theirs in zip(("hematoxylin", "eosin"), first, second, strict=True)
    }


def _wasserstein_of_sorted(first: np.ndarray, second: np.ndarray) -> float:
    """W1 of two ascending 1-D samples: for equal sizes, the mean gap between order statistics (exact)."""
    if len(first) == len(second):
        return float(np.mean(np.abs(first - second)))
    return float(wasserstein_distance(first, second))


# -- all colour distances against one reference -------------------------------------------------
@dataclass(frozen=True)
class ColourSummary:
    """What the colour and stain distances need of one batch, computed once.

    Summarise the real H&E reference once and compare every epoch with it through
    :func:`colour_distances`: the reference's half of the work is then not redone per epoch.
    """

    hsv_histogram: np.ndarray  # flat, sums to 1
    lab_projections: np.ndarray  # (projections, samples) float32, each row ascending
    hematoxylin: np.ndarray  # ascending optical densities of the sampled pixels
    eosin: np.ndarray
    settings: tuple[int, int, int]  # (projections, seed, max_pixels) the samples were drawn with


def summarise_colours(
    images: np.ndarray, projections: int = 64, seed: int = 0, max_pixels: int = 200_000
) -> ColourSummary:
    """The :class:`ColourSummary` of a batch; the arguments mean what they mean in :func:`sliced_wasserstein_lab`."""
    pixels = _pixels(images)
    sample = _subsample(pixels, max_pixels, seed)
    hematoxylin, eosin = _densities(sample)
    return ColourSummary(
        hsv_histogram=_hsv_histogram_of_pixels(pixels, HSV_BINS).ravel(),
        lab_projections=_sorted_lab_projections(sample, _directions(projections, seed)),
        hematoxylin=np.sort(hematoxylin),
        eosin=np.sort(eosin),
        settings=(projections, seed, max_pixels),
    )


def colour_distances(summary: ColourSummary, reference: ColourSummary) -> dict[str, float]:
    """``hsv_correlation``, ``lab_swd``, ``hematoxylin_w1`` and ``eosin_w1`` of two summaries.

    The same numbers as :func:`hsv_correlation`, :func:`sliced_wasserstein_lab` and
    :func:`stain_wasserstein` of the two batches with the same settings.
    """
    if summary.settings != reference.settings:
        raise ValueError(f"summaries drawn with different settings: {summary.settings} and {reference.settings}")
    return {
        "hsv_correlation": _correlation(summary.hsv_histogram, reference.hsv_histogram),
        "lab_swd": _sliced_distance(summary.lab_projections, reference.lab_projections),
        "hematoxylin_w1": _wasserstein_of_sorted(summary.hematoxylin, reference.hematoxylin),
        "eosin_w1": _wasserstein_of_sorted(summary.eosin, reference.eosin),
    }


# -- structure ------------------------------------------------------------------------------------
def structure_ssim(colorized: np.ndarray, gray: np.ndarray) -> float:
    """SSIM in [-1, 1] between the BT.601 luma of (H, W, 3) uint8 ``colorized`` and (H, W) uint8 ``gray``.

    ``skimage.metrics.structural_similarity`` with a Gaussian window (sigma 1.5, as Wang et al.
    2004), population covariances and a data range of 255, on float64 arrays. 1 when the stain
    kept the gray input exactly. For many images at once :func:`structure_ssim_batch` is faster.
    """
    luma, gray = _check_structure_pair(colorized, gray)
    return float(
        structural_similarity(
            luma, gray, gaussian_weights=True, sigma=SSIM_SIGMA, use_sample_covariance=False, data_range=255
        )
    )


def _check_structure_pair(colorized: np.ndarray, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Luma of ``colorized`` (..., H, W) float64 and ``gray`` as float64, or a ValueError if they do not match."""
    gray = np.asarray(gray)
    luma = _luma(colorized)
    if gray.dtype != np.uint8 or gray.shape != luma.shape:
        raise ValueError(f"gray must be uint8 of shape {luma.shape}, got {gray.dtype} {gray.shape}")
    return luma, gray.astype(np.float64)


def structure_ssim_batch(colorized: np.ndarray, gray: np.ndarray) -> np.ndarray:
    """:func:`structure_ssim` of every pair of an (N, H, W, 3) uint8 and an (N, H, W) uint8 batch: (N,) float64.

    scikit-image's computation, several times faster and within 1e-5 of it: all images are
    filtered in one OpenCV call on the images stacked as rows, in float32 on values centred at
    128 (so that variances do not cancel). scikit-image averages SSIM only over pixels at least
    the window radius (5) from the border, whose windows lie wholly inside their own image, so
    neither the border rule nor the neighbouring image in the stack changes the result.
    """
    luma, gray = _check_structure_pair(colorized, gray)
    if luma.ndim != 3:
        raise ValueError(f"expected a batch (N, H, W, 3), got colorized of shape {np.shape(colorized)}")
    return _ssim_of_luma(luma, gray)


def _ssim_of_luma(luma: np.ndarray, gray: np.ndarray) -> np.ndarray:
    """SSIM (N,) of (N, H, W) luma against (N, H, W) gray, both in [0, 255] (see :func:`structure_ssim_batch`)."""
    count, height, width = luma.shape
    radius = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)
    if min(height, width) < 2 * radius + 1:
        raise ValueError(f"images of {height}x{width} are smaller than the {2 * radius + 1}-pixel SSIM window")
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (offsets / SSIM_SIGMA) ** 2)
    kernel = (kernel / kernel.sum()).astype(np.float32)
    interior = (slice(None), slice(radius, height - radius), slice(radius, width - radius))

    def smooth(values: np.ndarray) -> np.ndarray:
        """The Gaussian-weighted local mean of (N, H, W) ``values``, on the interior only: (N, H - 10, W - 10)."""
        rows = values.reshape(count * height, width)
        smoothed = cv2.sepFilter2D(rows, cv2.CV_32F, kernel, kernel, borderType=cv2.BORDER_REFLECT)
        return smoothed.reshape(values.shape)[interior]

    x = (luma - 128.0).astype(np.float32)
    y = gray.astype(np.float32) - 128.0
    centred_x, centred_y = smooth(x), smooth(y)
    variances = smooth(x * x) + smooth(y * y) - (centred_x * centred_x + centred_y * centred_y)
    covariance = smooth(x * y) - centred_x * centred_y
    mean_x, mean_y = centred_x + 128.0, centred_y + 128.0
    c1, c2 = (SSIM_K1 * 255) ** 2, (SSIM_K2 * 255) ** 2
    ssim = (
        (2 * mean_x * mean_y + c1)
        * (2 * covariance + c2)
        / ((mean_x * mean_x + mean_y * mean_y + c1) * (variances + c2))
    )
    return ssim.mean(axis=(1, 2), dtype=np.float64)


# -- nuclei ---------------------------------------------------------------------------------------
def darkness(rgb: np.ndarray) -> np.ndarray:
    """``1 - luminance`` (BT.601) in [0, 1], float64 (H, W) for an (H, W, 3) uint8 image, (N, H, W) for a batch.

    Nuclei are the darkest objects of H&E and of this project's inverted fluorescence, so this is
    the primary nucleus score.
    """
    return _darkness_of_luma(_luma(rgb))


def _darkness_of_luma(luma: np.ndarray) -> np.ndarray:
    return np.clip(1.0 - luma / 255.0, 0.0, 1.0)


def otsu_masks(values: np.ndarray) -> np.ndarray:
    """``values > Otsu threshold`` per image of an (N, H, W) float batch (or one (H, W) image), as bool.

    The threshold ``skimage.filters.threshold_otsu`` picks (256 bins spanning each image's own
    range, bin edges as ``np.histogram`` places them), computed for all images at once. A
    constant image has no two classes to separate and gives an all-False mask.
    """
    values = np.asarray(values, dtype=np.float64)
    single = values.ndim == 2
    batch = values[None] if single else values
    if batch.ndim != 3 or batch.shape[1] * batch.shape[2] == 0:
        raise ValueError(f"expected (N, H, W) or (H, W) values, got shape {values.shape}")
    flat = batch.reshape(len(batch), -1)
    low, high = flat.min(axis=1), flat.max(axis=1)
    constant = low == high
    high = np.where(constant, low + 1.0, high)  # any range: these images are all False anyway
    bins = OTSU_BINS
    edges = np.linspace(low, high, bins + 1, axis=1)
    scaled = (flat - low[:, None]) * (bins / (high - low))[:, None]
    index = np.minimum(scaled.astype(np.intp), bins - 1)
    # np.histogram's correction of values that rounding put one bin off: only possible within a
    # tiny distance of an edge, so only those few values are checked against the edges themselves.
    rows, columns = np.nonzero(np.abs(scaled - np.rint(scaled)) < 1e-6)
    near = index[rows, columns]
    values = flat[rows, columns]
    near -= values < edges[rows, near]
    near += (values >= edges[rows, near + 1]) & (near != bins - 1)
    index[rows, columns] = near
    offsets = np.arange(len(flat))[:, None] * bins
    counts = np.bincount((index + offsets).ravel(), minlength=len(flat) * bins).reshape(len(flat), bins)
    counts = counts.astype(np.float32)  # as threshold_otsu, whose class weights are float32 sums
    centers = (edges[:, :-1] + edges[:, 1:]) / 2.0
    weight_below = np.cumsum(counts, axis=1)
    weight_above = np.cumsum(counts[:, ::-1], axis=1)[:, ::-1]
    mass = counts * centers
    mean_below = np.cumsum(mass, axis=1) / weight_below
    with np.errstate(invalid="ignore", divide="ignore"):  # 0 / 0 only in constant images, masked out below
        mean_above = (np.cumsum(mass[:, ::-1], axis=1) / weight_above[:, ::-1])[:, ::-1]
        between = weight_below[:, :-1] * weight_above[:, 1:] * (mean_below[:, :-1] - mean_above[:, 1:]) ** 2
    threshold = np.take_along_axis(centers, np.argmax(between, axis=1)[:, None], axis=1)
    masks = (flat > threshold) & ~constant[:, None]
    masks = masks.reshape(batch.shape)
    return masks[0] if single else masks


def nuclei_mask_by_darkness(rgb: np.ndarray) -> np.ndarray:
    """Nuclei as a bool mask: :func:`darkness` above its Otsu threshold, per image.

    ``rgb``: one (H, W, 3) uint8 image, giving (H, W), or an (N, H, W, 3) batch, giving (N, H, W).
    """
    return otsu_masks(darkness(_check_image_or_batch(rgb)))


def nuclei_mask_by_hematoxylin(rgb: np.ndarray) -> np.ndarray:
    """Nuclei as a bool mask: hematoxylin density above its Otsu threshold, per image (shapes as above).

    Secondary rule: a saturated pink background can carry more H density than nuclei whose colour
    has a clipped channel, and Otsu then selects the background (see the module docstring).
    """
    rgb = _check_image_or_batch(rgb)
    return otsu_masks(_density(rgb.reshape(-1, 3), _HEMATOXYLIN_TABLE).reshape(rgb.shape[:-1]))


def _check_image_or_batch(rgb: np.ndarray) -> np.ndarray:
    rgb = _check_rgb(rgb)
    if rgb.ndim not in (3, 4):
        raise ValueError(f"expected one (H, W, 3) image or an (N, H, W, 3) batch, got shape {rgb.shape}")
    return rgb


def dice_iou(predicted: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Dice and IoU in [0, 1] of two bool masks of the same shape; (1.0, 1.0) when both are empty.

    Dice = 2|P and T| / (|P| + |T|), IoU = |P and T| / |P or T|, so IoU = Dice / (2 - Dice).
    """
    predicted, truth = np.asarray(predicted, bool), np.asarray(truth, bool)
    if predicted.shape != truth.shape:
        raise ValueError(f"mask shapes differ: {predicted.shape} and {truth.shape}")
    dice, iou = dice_iou_batch(predicted[None], truth[None])
    return float(dice[0]), float(iou[0])


def dice_iou_batch(predicted: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`dice_iou` of every pair of two (N, H, W) bool batches: two (N,) float64 arrays."""
    predicted, truth = np.asarray(predicted, bool), np.asarray(truth, bool)
    if predicted.shape != truth.shape or predicted.ndim != 3:
        raise ValueError(f"expected two (N, H, W) batches of one shape, got {predicted.shape} and {truth.shape}")
    overlap = np.count_nonzero(predicted & truth, axis=(1, 2)).astype(np.float64)
    total = np.count_nonzero(predicted, axis=(1, 2)) + np.count_nonzero(truth, axis=(1, 2)).astype(np.float64)
    empty = total == 0
    total = np.where(empty, 1.0, total)
    dice = np.where(empty, 1.0, 2.0 * overlap / total)
    iou = np.where(empty, 1.0, overlap / np.maximum(total - overlap, 1.0))
    return dice, iou


def image_scores(colorized: np.ndarray, gray: np.ndarray, truth: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The per-image measures of a batch at once, each (N,) float64: ``ssim`` and, given ``truth``
    masks, ``dice``, ``iou`` (darkness rule) and ``dice_hematoxylin``.

    ``colorized`` (N, H, W, 3) uint8, ``gray`` (N, H, W) uint8, ``truth`` (N, H, W) bool. The
    same values as :func:`structure_ssim_batch`, :func:`nuclei_mask_by_darkness`,
    :func:`nuclei_mask_by_hematoxylin` and :func:`dice_iou` one by one; the luma is computed once.
    """
    luma, gray = _check_structure_pair(colorized, gray)
    if luma.ndim != 3:
        raise ValueError(f"expected a batch (N, H, W, 3), got colorized of shape {np.shape(colorized)}")
    scores = {"ssim": _ssim_of_luma(luma, gray)}
    if truth is not None:
        scores["dice"], scores["iou"] = dice_iou_batch(otsu_masks(_darkness_of_luma(luma)), truth)
        scores["dice_hematoxylin"], _ = dice_iou_batch(nuclei_mask_by_hematoxylin(colorized), truth)
    return scores
