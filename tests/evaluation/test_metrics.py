"""evaluation.metrics on real demo crops and on images built to have a known answer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.stats import wasserstein_distance
from skimage.color import rgb2hed, rgb2hsv, rgb2lab
from skimage.filters import threshold_otsu

from evaluation import metrics
from evaluation.baselines import beer_lambert_he, gray_as_rgb
from tests.helpers import demo_arrays

DARK_PURPLE = (70, 40, 120)  # a hematoxylin-stained nucleus
PALE_PINK = (240, 170, 210)  # eosin-stained background


def paint(mask: np.ndarray, nucleus: tuple[int, int, int], background: tuple[int, int, int]) -> np.ndarray:
    """(H, W, 3) uint8: ``nucleus`` colour exactly on ``mask``, ``background`` elsewhere."""
    return np.where(mask[..., None], np.array(nucleus, np.uint8), np.array(background, np.uint8))


def single_colour(colour: tuple[int, int, int], size: int = 8) -> np.ndarray:
    return np.broadcast_to(np.array(colour, np.uint8), (1, size, size, 3)).copy()


# -- colour distributions ------------------------------------------------------------------------
def test_identical_batches_score_perfectly(demo_root: Path) -> None:
    he = demo_arrays(demo_root / "testB")
    assert metrics.hsv_correlation(he, he.copy()) == pytest.approx(1.0, abs=1e-12)
    assert metrics.sliced_wasserstein_lab(he, he.copy()) == 0.0
    assert metrics.stain_wasserstein(he, he.copy()) == {"hematoxylin": 0.0, "eosin": 0.0}
    # Subsampling draws the same pixels on both sides, so a batch larger than max_pixels still scores 0.
    assert metrics.sliced_wasserstein_lab(he, he.copy(), max_pixels=5000) == 0.0
    assert metrics.stain_wasserstein(he, he.copy(), max_pixels=5000) == {"hematoxylin": 0.0, "eosin": 0.0}


def test_rolled_channels_score_worse_than_real_he(demo_root: Path) -> None:
    reference = demo_arrays(demo_root / "trainB")
    real = demo_arrays(demo_root / "testB")  # other crops of the same slide: close, not identical
    rolled = real[..., [1, 2, 0]]  # pink becomes green-blue
    assert metrics.hsv_correlation(real, reference) > 0.9 > 0.5 > metrics.hsv_correlation(rolled, reference)
    assert (
        metrics.sliced_wasserstein_lab(real, reference) < 2.0 < 10.0 < metrics.sliced_wasserstein_lab(rolled, reference)
    )
    real_stains = metrics.stain_wasserstein(real, reference)
    rolled_stains = metrics.stain_wasserstein(rolled, reference)
    for stain in ("hematoxylin", "eosin"):
        assert rolled_stains[stain] > 5 * real_stains[stain] > 0


def test_hsv_histogram_is_normalised_and_bins_known_colours() -> None:
    red, gray = single_colour((255, 0, 0)), single_colour((128, 128, 128))
    histogram = metrics.hsv_histogram(np.concatenate([red, gray]))
    assert histogram.shape == (32, 32, 32) and histogram.dtype == np.float64
    assert histogram.sum() == pytest.approx(1.0)
    assert histogram[0, 31, 31] == 0.5  # hue 0, saturation 1, value 1
    assert histogram[0, 0, 16] == 0.5  # gray: hue 0, saturation 0, value 128/255 -> bin 16
    violet = metrics.hsv_histogram(single_colour((128, 0, 255)), bins=(12, 4, 4))  # hue 270 degrees = 9/12
    assert violet[9, 3, 3] == 1.0


@pytest.mark.parametrize("bins", [(32, 16, 8), (7, 100, 200)])
def test_hsv_bins_agree_with_skimage_except_float_rounding_on_bin_edges(bins: tuple[int, int, int]) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (200_000, 3), dtype=np.uint8)
    hsv = rgb2hsv(pixels[:, None, :])[:, 0, :]
    scaled = hsv * np.array(bins)
    expected = np.minimum(np.floor(scaled), np.array(bins) - 1).astype(np.int64)
    expected_index = (expected[:, 0] * bins[1] + expected[:, 1]) * bins[2] + expected[:, 2]
    differs = metrics._hsv_bin_index(pixels, bins) != expected_index
    # rgb2hsv rounds some exact edges (e.g. saturation 1/2) just below; only such pixels may differ.
    on_edge = np.any(np.abs(scaled - np.rint(scaled)) < 1e-9, axis=1)
    assert differs.sum() > 0 and np.all(on_edge[differs])


def test_hsv_histogram_accepts_lists_of_images_of_any_size(demo_root: Path) -> None:
    he = demo_arrays(demo_root / "testB")
    parts = [he[0], he[1, :40, :90]]
    pooled = np.concatenate([part.reshape(1, -1, 1, 3) for part in parts], axis=1)
    np.testing.assert_array_equal(metrics.hsv_histogram(parts), metrics.hsv_histogram(pooled))
    with pytest.raises(ValueError, match="bins"):
        metrics.hsv_histogram(he, bins=(0, 32, 32))
    with pytest.raises(ValueError, match="uint8 RGB"):
        metrics.hsv_histogram(he.astype(np.float32))


def test_hsv_correlation_of_disjoint_colours_is_not_positive() -> None:
    assert metrics.hsv_correlation(single_colour((255, 0, 0)), single_colour((0, 0, 255))) < 0


def test_sliced_wasserstein_is_deterministic_and_seeded(demo_root: Path) -> None:
    he, reference = demo_arrays(demo_root / "testB"), demo_arrays(demo_root / "trainB")
    first = metrics.sliced_wasserstein_lab(he, reference, max_pixels=20_000)
    assert metrics.sliced_wasserstein_lab(he, reference, max_pixels=20_000) == first
    other_seed = metrics.sliced_wasserstein_lab(he, reference, max_pixels=20_000, seed=1)
    assert other_seed != first and other_seed == pytest.approx(first, rel=0.5)


def test_sliced_wasserstein_handles_different_sample_counts(demo_root: Path) -> None:
    he = demo_arrays(demo_root / "testB")
    # The same distribution, twice as many samples: compared through quantiles, almost 0.
    doubled = np.concatenate([he, he])
    assert metrics.sliced_wasserstein_lab(he, doubled, max_pixels=10**6) < 0.01
    brighter = np.clip(doubled.astype(np.int64) + 20, 0, 255).astype(np.uint8)
    assert metrics.sliced_wasserstein_lab(he, brighter, max_pixels=10**6) > 2.0
    # A distance grows with the size of the shift (a correlation would saturate).
    shifts = [np.clip(he.astype(np.int64) + step, 0, 255).astype(np.uint8) for step in (5, 20, 40)]
    distances = [metrics.sliced_wasserstein_lab(he, shifted) for shifted in shifts]
    assert distances == sorted(distances) and distances[-1] > 4 * distances[0]


def test_sliced_wasserstein_is_in_cielab_units() -> None:
    # For two single colours, the mean of |u . delta| over random unit directions u tends to |delta| / 2.
    first, second = (200, 120, 170), (90, 60, 140)
    delta_e = np.linalg.norm(rgb2lab(np.array([[first]], np.uint8)) - rgb2lab(np.array([[second]], np.uint8)))
    distance = metrics.sliced_wasserstein_lab(single_colour(first), single_colour(second), projections=4096)
    assert distance == pytest.approx(delta_e / 2, rel=0.03)


def test_quantiles_of_sorted_rows_match_numpy() -> None:
    rows = np.sort(np.random.default_rng(1).normal(size=(3, 57)), axis=1)
    levels = (np.arange(10) + 0.5) / 10
    np.testing.assert_allclose(metrics._quantiles_of_sorted(rows, levels), np.quantile(rows, levels, axis=1).T)


# -- stains --------------------------------------------------------------------------------------
def test_stain_densities_equal_rgb2hed(demo_root: Path) -> None:
    he = demo_arrays(demo_root / "testB")
    hematoxylin, eosin = metrics.stain_densities(he)
    expected = rgb2hed(he).reshape(-1, 3)
    assert hematoxylin.shape == eosin.shape == (he[..., 0].size,)
    np.testing.assert_allclose(hematoxylin, expected[:, 0], atol=1e-12)
    np.testing.assert_allclose(eosin, expected[:, 1], atol=1e-12)
    edge_levels = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 128]]], np.uint8)  # the 1e-6 floor and 0
    np.testing.assert_allclose(np.stack(metrics.stain_densities(edge_levels), 1), rgb2hed(edge_levels)[0, :, :2])


@pytest.mark.parametrize("reference_count", [3, 5])  # fewer samples than testB's 5 crops (scipy), as many (sorted)
def test_stain_wasserstein_is_scipys_distance_when_not_subsampled(demo_root: Path, reference_count: int) -> None:
    he, reference = demo_arrays(demo_root / "testB"), demo_arrays(demo_root / "trainB")[:reference_count]
    scores = metrics.stain_wasserstein(he, reference, max_pixels=10**6)
    mine, theirs = metrics.stain_densities(he), metrics.stain_densities(reference)
    assert scores["hematoxylin"] == pytest.approx(wasserstein_distance(mine[0], theirs[0]), rel=1e-9)
    assert scores["eosin"] == pytest.approx(wasserstein_distance(mine[1], theirs[1]), rel=1e-9)


def test_colour_distances_of_summaries_equal_the_measures(demo_root: Path) -> None:
    he = demo_arrays(demo_root / "testB")
    fake = np.clip(he.astype(int) + np.array([25, -10, 5]), 0, 255).astype(np.uint8)
    reference = metrics.summarise_colours(he[:6], max_pixels=30_000)
    distances = metrics.colour_distances(metrics.summarise_colours(fake, max_pixels=30_000), reference)
    assert distances["hsv_correlation"] == metrics.hsv_correlation(fake, he[:6])
    assert distances["lab_swd"] == pytest.approx(metrics.sliced_wasserstein_lab(fake, he[:6], max_pixels=30_000))
    stains = metrics.stain_wasserstein(fake, he[:6], max_pixels=30_000)
    assert (distances["hematoxylin_w1"], distances["eosin_w1"]) == pytest.approx(
        (stains["hematoxylin"], stains["eosin"])
    )
    with pytest.raises(ValueError, match="different settings"):
        metrics.colour_distances(metrics.summarise_colours(fake), reference)


# -- structure -----------------------------------------------------------------------------------
def test_structure_ssim_is_1_for_the_gray_input_itself(demo_root: Path) -> None:
    gray = demo_arrays(demo_root / "testA")[0]
    assert metrics.structure_ssim(gray_as_rgb(gray), gray) == pytest.approx(1.0, abs=1e-9)
    moved = np.roll(gray, 3, axis=1)
    assert metrics.structure_ssim(gray_as_rgb(moved), gray) < 0.9
    with pytest.raises(ValueError, match="gray"):
        metrics.structure_ssim(gray_as_rgb(gray), gray[:-1])


def test_structure_ssim_batch_equals_per_image_ssim(demo_root: Path) -> None:
    grays = demo_arrays(demo_root / "testA")
    rng = np.random.default_rng(2)
    colorized = np.stack([beer_lambert_he(gray) for gray in grays])
    colorized[1] = rng.integers(0, 256, colorized[1].shape, dtype=np.uint8)  # an unrelated image too
    expected = [metrics.structure_ssim(image, gray) for image, gray in zip(colorized, grays, strict=True)]
    batch = metrics.structure_ssim_batch(colorized, grays)
    assert batch.shape == (len(grays),)
    np.testing.assert_allclose(batch, expected, atol=1e-5)
    assert batch[1] < 0.2 < 0.5 < batch[0]
    with pytest.raises(ValueError, match="smaller than"):
        metrics.structure_ssim_batch(colorized[:, :10, :10], grays[:, :10, :10])


# -- nuclei --------------------------------------------------------------------------------------
def test_darkness_range_and_shapes() -> None:
    image = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0]]], np.uint8)
    np.testing.assert_allclose(metrics.darkness(image), [[1.0, 0.0, 1 - 0.299]])
    assert metrics.darkness(np.stack([image, image])).shape == (2, 1, 3)


def test_darkness_mask_of_a_colorization_painted_from_the_truth(demo_root: Path) -> None:
    masks = demo_arrays(demo_root / "testA_GT") > 0
    rng = np.random.default_rng(3)
    for mask in masks:
        painted = paint(mask, DARK_PURPLE, PALE_PINK).astype(np.int64)
        painted = np.clip(painted + rng.integers(-12, 13, painted.shape), 0, 255).astype(np.uint8)  # stain texture
        dice, iou = metrics.dice_iou(metrics.nuclei_mask_by_darkness(painted), mask)
        assert dice > 0.95 and iou == pytest.approx(dice / (2 - dice))
        shifted = np.roll(painted, (16, 16), axis=(0, 1))
        shuffled = rng.permutation(painted.reshape(-1, 3)).reshape(painted.shape)
        for wrong in (shifted, shuffled):
            assert metrics.dice_iou(metrics.nuclei_mask_by_darkness(wrong), mask)[0] < 0.6


def test_both_rules_find_ordinary_purple_nuclei(demo_root: Path) -> None:
    mask = demo_arrays(demo_root / "testA_GT")[0] > 0
    painted = paint(mask, DARK_PURPLE, PALE_PINK)
    assert metrics.dice_iou(metrics.nuclei_mask_by_darkness(painted), mask) == (1.0, 1.0)
    assert metrics.dice_iou(metrics.nuclei_mask_by_hematoxylin(painted), mask) == (1.0, 1.0)


def test_saturated_pink_background_fools_the_hematoxylin_rule_only(demo_root: Path) -> None:
    # Violet nuclei whose green is clipped to 0 (as a generator's output saturates): rgb2hed floors
    # the level at 1e-6, so green's optical density is 1 and cancels the nuclei's hematoxylin term.
    # The saturated magenta-pink background keeps a small positive density, so Otsu on H selects
    # the background, while darkness still ranks the violet nuclei darkest.
    violet, magenta_pink = (148, 0, 211), (180, 70, 175)
    mask = demo_arrays(demo_root / "testA_GT")[0] > 0
    painted = paint(mask, violet, magenta_pink)
    hematoxylin = rgb2hed(painted)[..., 0]
    assert hematoxylin[~mask].min() > 0.02 > 0.001 > hematoxylin[mask].max()  # the background reads as "more H"
    hue, saturation, _ = rgb2hsv(np.array([[magenta_pink]], np.uint8))[0, 0]
    assert 300 <= hue * 360 <= 330 and saturation > 0.5  # pink and saturated
    assert metrics.darkness(painted)[mask].min() > metrics.darkness(painted)[~mask].max() + 0.15
    assert metrics.dice_iou(metrics.nuclei_mask_by_darkness(painted), mask)[0] == 1.0
    assert metrics.dice_iou(metrics.nuclei_mask_by_hematoxylin(painted), mask)[0] == 0.0


@pytest.mark.parametrize("colour", [(0, 0, 0), (255, 255, 255), (230, 0, 120)])
def test_constant_images_give_empty_masks(colour: tuple[int, int, int]) -> None:
    image = single_colour(colour, size=16)[0]
    for rule in (metrics.nuclei_mask_by_darkness, metrics.nuclei_mask_by_hematoxylin):
        mask = rule(image)
        assert mask.dtype == bool and mask.shape == (16, 16) and not mask.any()


def test_nuclei_rules_take_an_image_or_a_batch(demo_root: Path) -> None:
    he = demo_arrays(demo_root / "testB")[:3]
    for rule in (metrics.nuclei_mask_by_darkness, metrics.nuclei_mask_by_hematoxylin):
        batch = rule(he)
        assert batch.shape == he.shape[:3]
        for image, mask in zip(he, batch, strict=True):
            np.testing.assert_array_equal(rule(image), mask)
    with pytest.raises(ValueError, match=r"one .* image or an .* batch"):
        metrics.nuclei_mask_by_darkness(he[None])
    with pytest.raises(ValueError, match="uint8 RGB"):
        metrics.nuclei_mask_by_hematoxylin(np.zeros((8, 8), np.uint8))


def test_batched_otsu_equals_scikit_image_per_image(demo_root: Path) -> None:
    rng = np.random.default_rng(5)
    images = [metrics.darkness(image) for image in demo_arrays(demo_root / "testB")]
    images += [rng.random((9, 7)), rng.integers(0, 5, (9, 7)) / 4.0, rng.integers(0, 3, (9, 7)) * 0.1]
    for values in images:  # the last two put values exactly on bin edges
        np.testing.assert_array_equal(metrics.otsu_masks(values), values > threshold_otsu(values))
    same_size = np.stack(images[:4])
    np.testing.assert_array_equal(
        metrics.otsu_masks(same_size), np.stack([values > threshold_otsu(values) for values in same_size])
    )
    assert not metrics.otsu_masks(np.full((2, 4, 4), 0.3)).any()
    with pytest.raises(ValueError, match="expected"):
        metrics.otsu_masks(np.zeros(5))


def test_image_scores_equal_the_measures_one_by_one(demo_root: Path) -> None:
    grays = demo_arrays(demo_root / "testA")[:4]
    truth = demo_arrays(demo_root / "testA_GT")[:4] > 0
    colorized = np.stack([beer_lambert_he(gray) for gray in grays])
    scores = metrics.image_scores(colorized, grays, truth)
    assert set(scores) == {"ssim", "dice", "iou", "dice_hematoxylin"}
    for index, (image, gray, mask) in enumerate(zip(colorized, grays, truth, strict=True)):
        assert scores["ssim"][index] == pytest.approx(metrics.structure_ssim(image, gray), abs=1e-5)
        dice, iou = metrics.dice_iou(metrics.nuclei_mask_by_darkness(image), mask)
        assert (scores["dice"][index], scores["iou"][index]) == pytest.approx((dice, iou), abs=1e-12)
        hematoxylin_dice = metrics.dice_iou(metrics.nuclei_mask_by_hematoxylin(image), mask)[0]
        assert scores["dice_hematoxylin"][index] == pytest.approx(hematoxylin_dice, abs=1e-12)
    assert set(metrics.image_scores(colorized, grays)) == {"ssim"}


def test_dice_iou_edge_cases() -> None:
    empty = np.zeros((4, 4), bool)
    left, right = empty.copy(), empty.copy()
    left[:, :2], right[:, 2:] = True, True
    assert metrics.dice_iou(empty, empty) == (1.0, 1.0)
    assert metrics.dice_iou(left, right) == (0.0, 0.0)
    assert metrics.dice_iou(left, empty) == (0.0, 0.0)
    assert metrics.dice_iou(left, left) == (1.0, 1.0)
    half = left.copy()
    half[:2] = False  # 4 of left's 8 pixels
    dice, iou = metrics.dice_iou(half, left)
    assert dice == pytest.approx(2 * 4 / 12) and iou == pytest.approx(4 / 8) and iou == pytest.approx(dice / (2 - dice))
    with pytest.raises(ValueError, match="shapes"):
        metrics.dice_iou(left, left[:3])


def test_dice_iou_batch_scores_each_pair() -> None:
    left = np.zeros((4, 4), bool)
    left[:, :2] = True
    predicted = np.stack([left, ~left, np.zeros_like(left)])
    truth = np.stack([left, left, np.zeros_like(left)])
    dice, iou = metrics.dice_iou_batch(predicted, truth)
    np.testing.assert_array_equal(dice, [1.0, 0.0, 1.0])
    np.testing.assert_array_equal(iou, [1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="batches"):
        metrics.dice_iou_batch(left, left)
