"""How good is a virtual stain? Realism and faithfulness measures on NumPy images.

Conventions: RGB images are (H, W, 3) uint8, gray images (H, W) uint8, masks (H, W) bool; a
batch is a stacked (N, H, W, 3) uint8 array or a list of (H, W, 3) arrays (sizes may differ
where only the pixels matter). Every measure is vectorised over all pixels of a batch.

**Realism** (how H&E-like; a set of colorizations against a set of real H&E tiles):

- :func:`hsv_correlation`: Pearson correlation of the normalised 3-D HSV histograms (1 = the
  same colours). Coarse and bounded: it saturates near 1.
- :func:`sliced_wasserstein_lab`: sliced Wasserstein-1 distance of the CIELAB pixel
  distributions, in CIELAB units (about "just noticeable differences"); 0 for the same colours.
- Region-aware CIELAB distances (:func:`summarize_colors` with ``regions``): the colours inside
  the nuclei against the real nuclei's colours, and the rest against the real non-nuclear
  tissue. A global histogram mostly measures how much of the image is nucleus, which the
  input decides; these compare like with like.
- Stain statistics: Wasserstein-1 distances of the hematoxylin and eosin amounts of colour
  deconvolution (:class:`util.stain.StainModel`, OD units, log10 absorbance).

**Faithfulness** (does the stain follow the input; a colorization against its input and mask):

- Nuclei are read off a colorization by one rule (:func:`nucleus_map`): the stain model's
  nucleus score (hematoxylin colour, :class:`util.stain.StainModel`), smoothed by a Gaussian of
  :data:`SMOOTHING_SIGMA` pixel, above the threshold calibrated on real H&E. It does not depend
  on the image's tone curve, darkness or its own histogram (no per-image Otsu). Components
  smaller than an eighth of the median true nucleus (:func:`minimum_nucleus_area`) are specks.
- :func:`match_objects`: connected components of the mask matched one-to-one to components of
  the nucleus map at IoU > 0.5 (the rule of the 2018 Data Science Bowl), giving nucleus recall,
  precision and F1.
- :func:`invented_area`: nucleus-map area further than :data:`INVENTED_TOLERANCE` pixels from
  every mask pixel, as a fraction of the image: nuclei the input does not have.
- :func:`rank_correlation`: Spearman correlation between the input's and the output's
  luminance: 1 for any output whose lightness is an increasing function of the input's, however
  it is coloured (a tone curve keeps it at 1; ignoring the input gives about 0).

Subsampling: pixels are drawn per image at positions seeded by the image's *name* (the same
positions in every epoch, and independent of file order), so a result never depends on the
order in which the images are listed.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.stats import wasserstein_distance
from skimage.color import rgb2lab

from util.color import LUMA_WEIGHTS
from util.stain import StainModel

#: Bins of hue, saturation and value of the HSV histogram (and so of :func:`hsv_correlation`).
HSV_BINS = (32, 32, 32)
#: Most bins per HSV channel: keeps the exact float32 binning of :func:`_hsv_bin_index` exact.
MAX_HSV_BINS = 4096
#: Levels of the common quantile grid on which projections of unequal sample counts are compared.
QUANTILE_LEVELS = 1000
#: Random CIELAB directions of the sliced Wasserstein distance.
PROJECTIONS = 64
#: Most pixels per set (and region) that the distribution distances read.
MAX_PIXELS = 100_000
#: IoU above which a predicted nucleus matches a true one (unique at > 0.5).
MATCH_IOU = 0.5
#: Nucleus scores are smoothed by a Gaussian of this sigma (pixels) before the threshold: chromatin
#: texture then neither breaks a nucleus into pieces nor scatters single pixels over the tissue.
SMOOTHING_SIGMA = 0.5
#: Components smaller than this fraction of the median true nucleus (and than :data:`MIN_NUCLEUS_AREA`
#: pixels) are specks or slivers cut by the crop border, not nuclei, in the nucleus map and the masks alike.
MIN_AREA_FRACTION = 1.0 / 8.0
MIN_NUCLEUS_AREA = 10
#: A nucleus-map pixel within this many pixels (chessboard distance) of the mask is not invented.
INVENTED_TOLERANCE = 2


# -- input handling ------------------------------------------------------------------------------
def _check_rgb(image: np.ndarray) -> np.ndarray:
    """``image`` as an array of uint8 RGB pixels (..., 3), or a ValueError naming what is wrong."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim < 3 or image.shape[-1] != 3:
        raise ValueError(f"expected uint8 RGB images (..., H, W, 3), got {image.dtype} {image.shape}")
    return image


def _pixels(images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """All pixels of a batch (stacked array or list of images of any sizes) as one (P, 3) uint8 array."""
    if isinstance(images, list | tuple):
        parts = [_check_rgb(image).reshape(-1, 3) for image in images]
        pixels = np.concatenate(parts) if parts else np.empty((0, 3), np.uint8)
    else:
        pixels = _check_rgb(images).reshape(-1, 3)
    if len(pixels) == 0:
        raise ValueError("the batch holds no pixels")
    return pixels


def name_seed(name: str, seed: int = 0) -> int:
    """A 64-bit seed from an image's name: its pixel sample is the same wherever it is listed."""
    digest = hashlib.blake2b(f"{seed}:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def sample_positions(names: Sequence[str], pixels_per_image: Sequence[int], max_pixels: int) -> list[np.ndarray]:
    """Per image, sorted flat pixel positions: all of them, or an even share of ``max_pixels``, seeded by name."""
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be positive, got {max_pixels}")
    quota = max(1, -(-max_pixels // max(len(names), 1)))
    positions = []
    for name, count in zip(names, pixels_per_image, strict=True):
        if count <= quota:
            positions.append(np.arange(count))
        else:
            rng = np.random.default_rng(name_seed(name))
            positions.append(np.sort(rng.choice(count, quota, replace=False)))
    return positions


def _luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma of uint8 RGB (..., 3) -> float32 (...) in [0, 255], the weights Pillow's "L" mode uses."""
    rgb = _check_rgb(rgb)
    red, green, blue = (np.float32(weight) for weight in LUMA_WEIGHTS)
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
        colors = np.stack([codes >> 16, (codes >> 8) & 255, codes & 255], axis=1).astype(np.uint8)
        table[start : start + chunk] = _hsv_bin_index(colors, bins)
    return table


def hsv_histogram(images: np.ndarray | Sequence[np.ndarray], bins: tuple[int, int, int] = HSV_BINS) -> np.ndarray:
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


def hsv_correlation(images: np.ndarray | Sequence[np.ndarray], reference: np.ndarray | Sequence[np.ndarray]) -> float:
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


def _directions(projections: int, seed: int) -> np.ndarray:
    """(projections, 3) float32 random unit directions of CIELAB, from ``seed``."""
    if projections < 1:
        raise ValueError(f"projections must be positive, got {projections}")
    directions = np.random.default_rng((seed, 1)).normal(size=(projections, 3))
    return (directions / np.linalg.norm(directions, axis=1, keepdims=True)).astype(np.float32)


def _sorted_lab_projections(pixels: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """(projections, samples) float32: the Lab colours of (P, 3) uint8 pixels on every direction, rows ascending."""
    lab = rgb2lab(pixels[:, None, :])[:, 0, :].astype(np.float32)
    return np.sort(directions @ lab.T, axis=1)


def _sliced_distance(first: np.ndarray, second: np.ndarray) -> float:
    """Mean over directions of the 1-D W1 between two sets of sorted projections (NaN when a side is empty)."""
    if first.shape[1] == 0 or second.shape[1] == 0:
        return float("nan")
    if first.shape != second.shape:
        levels = (np.arange(QUANTILE_LEVELS) + 0.5) / QUANTILE_LEVELS
        first, second = _quantiles_of_sorted(first, levels), _quantiles_of_sorted(second, levels)
    return float(np.mean(np.abs(first - second), dtype=np.float64))


def sliced_wasserstein_lab(
    images: np.ndarray | Sequence[np.ndarray],
    reference: np.ndarray | Sequence[np.ndarray],
    projections: int = PROJECTIONS,
    seed: int = 0,
) -> float:
    """Sliced Wasserstein-1 distance, in CIELAB units, between the Lab pixel distributions of two batches.

    All pixels of both sides are converted by ``skimage.color.rgb2lab`` and projected on
    ``projections`` random unit directions (from ``seed``); the 1-D W1 of each projection is the
    mean gap between the sorted projections (equal counts) or between their quantiles on a grid
    of :data:`QUANTILE_LEVELS` levels; the result is the mean over directions. For large sets use
    :func:`summarize_colors`, which subsamples.
    """
    directions = _directions(projections, seed)
    return _sliced_distance(
        _sorted_lab_projections(_pixels(images), directions), _sorted_lab_projections(_pixels(reference), directions)
    )


def _wasserstein_of_sorted(first: np.ndarray, second: np.ndarray) -> float:
    """W1 of two ascending 1-D samples: for equal sizes, the mean gap between order statistics (exact)."""
    if len(first) == len(second):
        return float(np.mean(np.abs(first - second)))
    return float(wasserstein_distance(first, second))


# -- all realism distances against one reference -------------------------------------------------
#: The regions of the region-aware distances, and what each is inside.
REGIONS = ("nuclei", "tissue")


@dataclass(frozen=True)
class ColorSummary:
    """What the realism distances need of one set of images, computed once.

    ``lab``: sorted CIELAB projections (projections, samples) of all sampled pixels and of each
    region's; ``hematoxylin``/``eosin``: ascending stain amounts of the sampled pixels.
    """

    hsv_histogram: np.ndarray  # flat, sums to 1
    lab: dict[str, np.ndarray]  # "all", and "nuclei"/"tissue" when regions were given
    hematoxylin: np.ndarray
    eosin: np.ndarray


def summarize_colors(
    images: Sequence[np.ndarray],
    names: Sequence[str],
    stain_model: StainModel,
    regions: Sequence[np.ndarray] | None = None,
    max_pixels: int = MAX_PIXELS,
) -> ColorSummary:
    """The :class:`ColorSummary` of (H, W, 3) uint8 ``images`` called ``names``.

    ``regions``: one bool (H, W) nucleus mask per image (the GT masks for colorizations, the
    stain model's nuclear pixels for real H&E), for the region-aware distances; None for none.
    Distances read at most ``max_pixels`` pixels per region, sampled per image (see the module
    docstring); the HSV histogram reads every pixel.
    """
    if regions is not None and len(regions) != len(images):
        raise ValueError(f"{len(regions)} region masks for {len(images)} images")
    directions = _directions(PROJECTIONS, 0)
    all_pixels = _pixels(list(images))
    budget = max_pixels if regions is None else 2 * max_pixels  # each region then keeps about max_pixels
    positions = sample_positions(names, [image.shape[0] * image.shape[1] for image in images], budget)
    sampled = np.concatenate([image.reshape(-1, 3)[where] for image, where in zip(images, positions, strict=True)])
    lab = {"all": _sorted_lab_projections(_thin(sampled, max_pixels), directions)}
    if regions is not None:
        inside = np.concatenate(
            [np.asarray(region, bool).ravel()[where] for region, where in zip(regions, positions, strict=True)]
        )
        for name, chosen in (("nuclei", inside), ("tissue", ~inside)):
            pixels = _thin(sampled[chosen], max_pixels)
            lab[name] = _sorted_lab_projections(pixels, directions) if len(pixels) else np.empty((PROJECTIONS, 0))
    stains = _thin(sampled, max_pixels)
    return ColorSummary(
        hsv_histogram=_hsv_histogram_of_pixels(all_pixels, HSV_BINS).ravel(),
        lab=lab,
        hematoxylin=np.sort(stain_model.hematoxylin(stains)),
        eosin=np.sort(stain_model.eosin(stains)),
    )


def _thin(pixels: np.ndarray, max_pixels: int) -> np.ndarray:
    """At most ``max_pixels`` of (P, 3) uint8 pixels: evenly spaced in colour order, so the result
    does not depend on the order the pixels came in (a stratified sample of the colours)."""
    if len(pixels) <= max_pixels:
        return pixels
    codes = (pixels[:, 0].astype(np.int32) << 16) | (pixels[:, 1].astype(np.int32) << 8) | pixels[:, 2]
    chosen = np.sort(codes)[np.linspace(0, len(pixels) - 1, max_pixels).astype(np.intp)]
    return np.stack([chosen >> 16, (chosen >> 8) & 255, chosen & 255], axis=1).astype(np.uint8)


def color_distances(summary: ColorSummary, reference: ColorSummary) -> dict[str, float]:
    """Realism distances of a summary to the reference's: ``hsv_correlation`` (higher is better), and
    ``lab_swd``, ``lab_swd_nuclei``, ``lab_swd_tissue``, ``lab_swd_regions`` (their mean),
    ``hematoxylin_w1``, ``eosin_w1`` (lower is better); region distances NaN without regions."""
    scores = {
        "hsv_correlation": _correlation(summary.hsv_histogram, reference.hsv_histogram),
        "lab_swd": _sliced_distance(summary.lab["all"], reference.lab["all"]),
        "hematoxylin_w1": _wasserstein_of_sorted(summary.hematoxylin, reference.hematoxylin),
        "eosin_w1": _wasserstein_of_sorted(summary.eosin, reference.eosin),
    }
    for region in REGIONS:
        mine, theirs = summary.lab.get(region), reference.lab.get(region)
        scores[f"lab_swd_{region}"] = (
            _sliced_distance(mine, theirs) if mine is not None and theirs is not None else float("nan")
        )
    scores["lab_swd_regions"] = (scores["lab_swd_nuclei"] + scores["lab_swd_tissue"]) / 2.0
    return scores


# -- faithfulness ---------------------------------------------------------------------------------
def label_objects(masks: np.ndarray, min_area: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Connected components (8-connected) of every image of an (N, H, W) bool batch.

    Returns ``labels`` (N, H, W) int32 numbered across the batch (0 = none), and per label
    (index 0 unused) its ``image`` and ``area``. Components under ``min_area`` pixels are dropped.
    """
    masks = np.asarray(masks, bool)
    if masks.ndim != 3:
        raise ValueError(f"expected an (N, H, W) batch of masks, got shape {masks.shape}")
    structure = np.zeros((3, 3, 3), bool)
    structure[1] = True  # connected within an image only
    labels, count = ndimage.label(masks, structure)
    labels = labels.astype(np.int32, copy=False)
    area = np.bincount(labels.ravel(), minlength=count + 1)
    image = np.zeros(count + 1, np.int64)
    if count:
        slices = ndimage.find_objects(labels)
        image[1:] = [piece[0].start for piece in slices]
    if min_area > 0 and count:
        small = area < min_area
        small[0] = False
        if small.any():
            keep = np.flatnonzero(~small)  # includes 0
            renumber = np.zeros(count + 1, np.int32)
            renumber[keep] = np.arange(len(keep), dtype=np.int32)
            labels = renumber[labels]
            area, image = area[keep], image[keep]
    return labels, image, area


@dataclass(frozen=True)
class ObjectCounts:
    """Per image (N,): true nuclei, predicted nuclei, and the matched pairs among them."""

    truth: np.ndarray
    predicted: np.ndarray
    matched: np.ndarray

    def f1(self) -> np.ndarray:
        """Per-image object F1 (1 when an image has neither true nor predicted nuclei)."""
        total = self.truth + self.predicted
        return np.where(total > 0, 2.0 * self.matched / np.maximum(total, 1), 1.0)


def match_objects(predicted: np.ndarray, truth: np.ndarray, min_area: int = MIN_NUCLEUS_AREA) -> ObjectCounts:
    """Match the components of (N, H, W) labelled nucleus maps to those of (N, H, W) bool masks at IoU > :data:`MATCH_IOU`.

    ``predicted``: labels from :func:`label_objects` (specks already dropped); mask components under
    ``min_area`` pixels are not counted either. At IoU > 0.5 a
    component can match at most one other, so the matching is unique without an assignment step.
    """
    truth = np.asarray(truth, bool)
    if predicted.shape != truth.shape:
        raise ValueError(f"mask shapes differ: {predicted.shape} and {truth.shape}")
    count = len(truth)
    truth_labels, truth_image, truth_area = label_objects(truth, min_area)
    predicted_count = int(predicted.max(initial=0)) + 1
    predicted_image = np.zeros(predicted_count, np.int64)
    nonzero = predicted > 0
    predicted_image[predicted[nonzero]] = np.nonzero(nonzero)[0]
    predicted_area = np.bincount(predicted.ravel(), minlength=predicted_count)
    both = (truth_labels > 0) & nonzero
    pairs = truth_labels[both].astype(np.int64) * predicted_count + predicted[both]
    pair_codes, overlap = np.unique(pairs, return_counts=True)
    truth_of_pair, predicted_of_pair = np.divmod(pair_codes, predicted_count)
    union = truth_area[truth_of_pair] + predicted_area[predicted_of_pair] - overlap
    matched_pairs = overlap > MATCH_IOU * union
    return ObjectCounts(
        truth=np.bincount(truth_image[1:], minlength=count),
        predicted=np.bincount(predicted_image[1:], minlength=count),
        matched=np.bincount(truth_image[truth_of_pair[matched_pairs]], minlength=count),
    )


def invented_area(predicted: np.ndarray, truth: np.ndarray, tolerance: int = INVENTED_TOLERANCE) -> np.ndarray:
    """Per image (N,): the fraction of pixels of the (specks removed) nucleus map further than
    ``tolerance`` pixels from every mask pixel; both (N, H, W) bool."""
    predicted, truth = np.asarray(predicted, bool), np.asarray(truth, bool)
    near = ndimage.maximum_filter(truth, size=(1, 2 * tolerance + 1, 2 * tolerance + 1)) if tolerance else truth
    return np.count_nonzero(predicted & ~near, axis=(1, 2)) / (predicted.shape[1] * predicted.shape[2])


def minimum_nucleus_area(masks: Sequence[np.ndarray]) -> int:
    """The smallest component (pixels) that counts as a nucleus: :data:`MIN_AREA_FRACTION` of the median
    area of the masks' components, at least :data:`MIN_NUCLEUS_AREA` (which it is without masks)."""
    areas = [label_objects(np.asarray(mask, bool)[None], MIN_NUCLEUS_AREA)[2][1:] for mask in masks]
    areas = np.concatenate(areas) if areas else np.empty(0)
    if len(areas) == 0:
        return MIN_NUCLEUS_AREA
    return max(MIN_NUCLEUS_AREA, int(np.median(areas) * MIN_AREA_FRACTION))


def nucleus_map(colorized: np.ndarray, stain_model: StainModel) -> np.ndarray:
    """Where an (N, H, W, 3) uint8 batch has nuclei: (N, H, W) bool, the smoothed nucleus score above threshold."""
    score = stain_model.nucleus_score(_check_rgb(colorized))
    smoothed = ndimage.gaussian_filter(score, (0, SMOOTHING_SIGMA, SMOOTHING_SIGMA), mode="nearest")
    return smoothed > stain_model.nucleus_threshold


def nucleus_objects(colorized: np.ndarray, stain_model: StainModel, min_area: int = MIN_NUCLEUS_AREA) -> np.ndarray:
    """The nuclei of an (N, H, W, 3) uint8 batch as labels (N, H, W) int32: the components of
    :func:`nucleus_map`, 8-connected, those under ``min_area`` pixels dropped."""
    labels, _, _ = label_objects(nucleus_map(colorized, stain_model), min_area)
    return labels


def pixel_dice(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per image (N,): Dice of two (N, H, W) bool batches (1 when both are empty)."""
    overlap = np.count_nonzero(predicted & truth, axis=(1, 2))
    total = np.count_nonzero(predicted, axis=(1, 2)) + np.count_nonzero(truth, axis=(1, 2))
    return np.where(total > 0, 2.0 * overlap / np.maximum(total, 1), 1.0)


def rank_correlation(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Per image (N,): Spearman correlation of two (N, H, W) uint8 batches (average ranks for ties).

    Ranks of 8-bit values come from a per-image histogram (no sort). An image constant on
    either side has no defined correlation: 0.
    """
    first, second = np.asarray(first), np.asarray(second)
    if first.shape != second.shape or first.dtype != np.uint8 or second.dtype != np.uint8 or first.ndim != 3:
        raise ValueError(
            f"expected two (N, H, W) uint8 batches, got {first.dtype} {first.shape} and {second.dtype} {second.shape}"
        )
    ranks = [_ranks_uint8(values.reshape(len(values), -1)) for values in (first, second)]
    centered = [rank - rank.mean(axis=1, keepdims=True) for rank in ranks]
    covariance = np.einsum("ij,ij->i", centered[0], centered[1])
    scale = np.sqrt(np.einsum("ij,ij->i", centered[0], centered[0]) * np.einsum("ij,ij->i", centered[1], centered[1]))
    return np.where(scale > 0, covariance / np.where(scale > 0, scale, 1.0), 0.0)


def _ranks_uint8(values: np.ndarray) -> np.ndarray:
    """Average ranks (N, P) float64 of each row of (N, P) uint8 values (1 = smallest)."""
    count = len(values)
    offsets = (np.arange(count) * 256)[:, None]
    histogram = np.bincount((values + offsets).ravel(), minlength=count * 256).reshape(count, 256)
    below = np.cumsum(histogram, axis=1) - histogram
    level_rank = below + (histogram + 1) / 2.0
    return np.take_along_axis(level_rank, values.astype(np.intp), axis=1)


def faithfulness_scores(
    colorized: np.ndarray,
    gray: np.ndarray,
    stain_model: StainModel,
    truth: np.ndarray | None = None,
    min_area: int = MIN_NUCLEUS_AREA,
) -> dict[str, np.ndarray]:
    """The per-image faithfulness measures of a batch, each (N,) float64.

    ``colorized`` (N, H, W, 3) uint8, ``gray`` (N, H, W) uint8 (the input), ``truth`` (N, H, W)
    bool masks or None; ``min_area`` from :func:`minimum_nucleus_area`. Always ``structure_spearman``; with masks also ``nucleus_f1``,
    ``nucleus_recall``, ``nucleus_precision`` (per image), the object counts ``nuclei_true``,
    ``nuclei_predicted``, ``nuclei_matched``, ``invented_area`` and the pixel ``dice``.
    """
    colorized = _check_rgb(colorized)
    gray = np.asarray(gray)
    if gray.dtype != np.uint8 or gray.shape != colorized.shape[:-1] or gray.ndim != 3:
        raise ValueError(f"gray must be (N, H, W) uint8 matching {colorized.shape[:-1]}, got {gray.dtype} {gray.shape}")
    luma = np.rint(_luma(colorized)).astype(np.uint8)
    scores = {"structure_spearman": rank_correlation(gray, luma)}
    if truth is None:
        return scores
    truth = np.asarray(truth, bool)
    objects = nucleus_objects(colorized, stain_model, min_area)
    counts = match_objects(objects, truth, min_area)
    scores.update(
        nucleus_f1=counts.f1(),
        nucleus_recall=np.where(counts.truth > 0, counts.matched / np.maximum(counts.truth, 1), 1.0),
        nucleus_precision=np.where(counts.predicted > 0, counts.matched / np.maximum(counts.predicted, 1), 1.0),
        nuclei_true=counts.truth.astype(np.float64),
        nuclei_predicted=counts.predicted.astype(np.float64),
        nuclei_matched=counts.matched.astype(np.float64),
        invented_area=invented_area(objects > 0, truth),
        dice=pixel_dice(objects > 0, truth),
    )
    return scores


# -- uncertainty ----------------------------------------------------------------------------------
#: Resamples of the bootstrap intervals, and their seed.
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0


def bootstrap_interval(
    numerator: np.ndarray, denominator: np.ndarray | None = None, confidence: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval over images of a mean (or of ``sum(numerator) / sum(denominator)``).

    ``numerator`` (N,) per-image values; ``denominator`` (N,) per-image weights for a pooled ratio
    such as object F1 = sum(2 matched) / sum(true + predicted). Seeded: the same data give the
    same interval. One image gives (value, value).
    """
    numerator = np.asarray(numerator, np.float64)
    denominator = np.ones_like(numerator) if denominator is None else np.asarray(denominator, np.float64)
    if len(numerator) == 0:
        return float("nan"), float("nan")
    draws = np.random.default_rng(BOOTSTRAP_SEED).integers(0, len(numerator), (BOOTSTRAP_RESAMPLES, len(numerator)))
    with np.errstate(invalid="ignore", divide="ignore"):
        statistics = numerator[draws].sum(axis=1) / denominator[draws].sum(axis=1)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.nanpercentile(statistics, [tail, 100.0 - tail])
    return float(low), float(high)
