"""evaluation.metrics on real demo crops and on images built to have a known answer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr
from skimage.color import rgb2hsv

from evaluation import metrics
from evaluation.baselines import real_tiles_ignoring_input
from tests.helpers import demo_arrays
from util.stain import StainModel, estimate_stain_model

DARK_PURPLE = (70, 40, 120)  # a hematoxylin-stained nucleus
PALE_PINK = (240, 170, 210)  # eosin-stained background


def paint(mask: np.ndarray, nucleus: tuple[int, int, int], background: tuple[int, int, int]) -> np.ndarray:
    """(..., H, W, 3) uint8: ``nucleus`` colour exactly on ``mask``, ``background`` elsewhere."""
    return np.where(mask[..., None], np.array(nucleus, np.uint8), np.array(background, np.uint8))


def single_color(colour: tuple[int, int, int], size: int = 8) -> np.ndarray:
    return np.broadcast_to(np.array(colour, np.uint8), (1, size, size, 3)).copy()


@pytest.fixture(scope="module")
def stain_model(demo_root: Path) -> StainModel:
    return estimate_stain_model(list(demo_arrays(demo_root / "trainB")), "demo trainB")


def summary(images: np.ndarray, model: StainModel, regions: np.ndarray | None = None, **kwargs) -> metrics.ColorSummary:
    names = [f"image{index}" for index in range(len(images))]
    return metrics.summarize_colors(list(images), names, model, None if regions is None else list(regions), **kwargs)


# -- colour distributions ------------------------------------------------------------------------
def test_identical_sets_score_perfectly(demo_root: Path, stain_model: StainModel) -> None:
    he = demo_arrays(demo_root / "valB")
    regions = stain_model.nuclear(he)
    distances = metrics.color_distances(summary(he, stain_model, regions), summary(he.copy(), stain_model, regions))
    assert distances["hsv_correlation"] == pytest.approx(1.0, abs=1e-12)
    for name in ("lab_swd", "lab_swd_nuclei", "lab_swd_tissue", "lab_swd_regions", "hematoxylin_w1", "eosin_w1"):
        assert distances[name] == 0.0, name


def test_rolled_channels_score_worse_than_real_he(demo_root: Path, stain_model: StainModel) -> None:
    reference = summary(demo_arrays(demo_root / "trainB"), stain_model)
    real = demo_arrays(demo_root / "valB")  # other crops of the same slide: close, not identical
    rolled = real[..., [1, 2, 0]]  # pink becomes green-blue
    near = metrics.color_distances(summary(real, stain_model), reference)
    far = metrics.color_distances(summary(rolled, stain_model), reference)
    assert near["hsv_correlation"] > 0.9 > 0.5 > far["hsv_correlation"]
    assert near["lab_swd"] < 2.0 < 10.0 < far["lab_swd"]
    for stain in ("hematoxylin_w1", "eosin_w1"):
        assert far[stain] > 3 * near[stain] > 0


def test_region_distances_see_what_the_global_one_hides(demo_root: Path, stain_model: StainModel) -> None:
    """Real tiles that ignore the input have the right colours overall, but not where the nuclei are."""
    reference = demo_arrays(demo_root / "valB")
    reference_summary = summary(reference, stain_model, stain_model.nuclear(reference))
    masks = demo_arrays(demo_root / "valA_GT") > 0
    names = [f"image{index}" for index in range(len(masks))]
    ignoring = np.stack(
        real_tiles_ignoring_input(names, [mask.shape for mask in masks], list(demo_arrays(demo_root / "trainB")))
    )
    painted = paint(masks, DARK_PURPLE, PALE_PINK)
    cheat = metrics.color_distances(summary(ignoring, stain_model, masks), reference_summary)
    honest = metrics.color_distances(summary(painted, stain_model, masks), reference_summary)
    assert cheat["lab_swd"] < 1.0 < honest["lab_swd"]  # globally the cheat is nearly perfect...
    assert cheat["lab_swd_nuclei"] > 5 * cheat["lab_swd"]  # ...but its "nuclei" are not the colour of nuclei


def test_summaries_do_not_depend_on_image_order(demo_root: Path, stain_model: StainModel) -> None:
    images = demo_arrays(demo_root / "trainB")
    names = [f"tile{index}" for index in range(len(images))]
    regions = list(stain_model.nuclear(images))
    forward = metrics.summarize_colors(list(images), names, stain_model, regions, max_pixels=20_000)
    order = np.random.default_rng(0).permutation(len(images))
    shuffled = metrics.summarize_colors(
        [images[i] for i in order],
        [names[i] for i in order],
        stain_model,
        [regions[i] for i in order],
        max_pixels=20_000,
    )
    reference = summary(
        demo_arrays(demo_root / "valB"), stain_model, stain_model.nuclear(demo_arrays(demo_root / "valB"))
    )
    assert metrics.color_distances(forward, reference) == metrics.color_distances(shuffled, reference)


def test_hsv_histogram_is_normalised_and_bins_known_colours() -> None:
    red, gray = single_color((255, 0, 0)), single_color((128, 128, 128))
    histogram = metrics.hsv_histogram(np.concatenate([red, gray]))
    assert histogram.shape == (32, 32, 32) and histogram.dtype == np.float64
    assert histogram.sum() == pytest.approx(1.0)
    assert histogram[0, 31, 31] == 0.5  # hue 0, saturation 1, value 1
    assert histogram[0, 0, 16] == 0.5  # gray: hue 0, saturation 0, value 128/255 -> bin 16
    violet = metrics.hsv_histogram(single_color((128, 0, 255)), bins=(12, 4, 4))  # hue 270 degrees = 9/12
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


def test_hsv_correlation_of_disjoint_colours_is_not_positive() -> None:
    assert metrics.hsv_correlation(single_color((255, 0, 0)), single_color((0, 0, 255))) <= 0.0


def test_sliced_wasserstein_is_in_cielab_units() -> None:
    # Two grays 10 L* apart: every projection of the pure-lightness shift is |cos| * 10; the mean
    # over many random directions approaches 10 * E|cos| = 5 for directions uniform on the sphere.
    dark, light = single_color((100, 100, 100)), single_color((126, 126, 126))
    distance = metrics.sliced_wasserstein_lab(dark, light, projections=4096)
    assert 4.0 < distance < 6.0
    assert metrics.sliced_wasserstein_lab(dark, dark) == 0.0


# -- faithfulness ---------------------------------------------------------------------------------
def test_painting_the_mask_in_nucleus_colours_is_perfectly_faithful(demo_root: Path, stain_model: StainModel) -> None:
    gray, masks = demo_arrays(demo_root / "valA"), demo_arrays(demo_root / "valA_GT") > 0
    scores = metrics.faithfulness_scores(paint(masks, DARK_PURPLE, PALE_PINK), gray, stain_model, masks)
    assert np.all(scores["nucleus_f1"] == 1.0) and np.all(scores["invented_area"] == 0.0)
    assert np.all(scores["dice"] > 0.99)
    assert scores["nuclei_true"].sum() == scores["nuclei_matched"].sum() > 10


def test_nuclei_in_the_wrong_place_are_missed_and_invented(demo_root: Path, stain_model: StainModel) -> None:
    gray, masks = demo_arrays(demo_root / "valA"), demo_arrays(demo_root / "valA_GT") > 0
    moved = paint(np.roll(masks, (40, 50), axis=(1, 2)), DARK_PURPLE, PALE_PINK)
    scores = metrics.faithfulness_scores(moved, gray, stain_model, masks)
    assert scores["nucleus_f1"].mean() < 0.2 and scores["invented_area"].mean() > 0.05


def test_dark_nuclei_of_the_wrong_colour_are_not_nuclei(demo_root: Path, stain_model: StainModel) -> None:
    gray, masks = demo_arrays(demo_root / "valA"), demo_arrays(demo_root / "valA_GT") > 0
    green = metrics.faithfulness_scores(paint(masks, (20, 80, 20), PALE_PINK), gray, stain_model, masks)
    assert green["nucleus_f1"].max() == 0.0


def test_structure_is_invariant_to_a_tone_curve_and_blind_to_ignored_input(demo_root: Path) -> None:
    gray = demo_arrays(demo_root / "valA")
    model = StainModel(np.eye(3), 1.0)
    as_rgb = np.repeat(gray[..., None], 3, axis=3)
    curved = np.repeat((255.0 * (gray / 255.0) ** 2.2).round().astype(np.uint8)[..., None], 3, axis=3)
    assert np.allclose(metrics.faithfulness_scores(as_rgb, gray, model)["structure_spearman"], 1.0)
    assert metrics.faithfulness_scores(curved, gray, model)["structure_spearman"].min() > 0.99
    unrelated = np.repeat(np.roll(gray, 1, axis=0)[..., None], 3, axis=3)  # each input's colorization is another's
    assert np.abs(metrics.faithfulness_scores(unrelated, gray, model)["structure_spearman"]).max() < 0.5


def test_rank_correlation_equals_scipys_spearman(demo_root: Path) -> None:
    first, second = demo_arrays(demo_root / "valA"), demo_arrays(demo_root / "testA", 5)
    expected = [spearmanr(a.ravel(), b.ravel()).statistic for a, b in zip(first, second, strict=True)]
    np.testing.assert_allclose(metrics.rank_correlation(first, second), expected, atol=1e-6)
    assert metrics.rank_correlation(np.zeros((1, 4, 4), np.uint8), first[:1, :4, :4])[0] == 0.0


def test_object_matching_counts_by_hand() -> None:
    truth = np.zeros((2, 32, 32), bool)
    truth[0, 2:8, 2:8] = truth[0, 20:26, 20:26] = True  # two nuclei in image 0
    truth[1, 10:16, 10:16] = True  # one in image 1
    predicted = np.zeros_like(truth)
    predicted[0, 2:8, 2:9] = True  # IoU 36/42: matched
    predicted[0, 20:24, 20:24] = True  # IoU 16/36: not matched
    predicted[1, 28:32, 28:32] = True  # invented
    predicted[1, 0, 0] = True  # a 1-pixel speck: ignored
    labels, _, _ = metrics.label_objects(predicted, metrics.MIN_NUCLEUS_AREA)
    counts = metrics.match_objects(labels, truth)
    assert counts.truth.tolist() == [2, 1] and counts.predicted.tolist() == [2, 1] and counts.matched.tolist() == [1, 0]
    np.testing.assert_allclose(counts.f1(), [0.5, 0.0])
    np.testing.assert_allclose(metrics.invented_area(labels > 0, truth), [0.0, 16 / 1024])


def test_bootstrap_interval_brackets_the_mean_and_is_seeded() -> None:
    values = np.random.default_rng(1).normal(0.5, 0.1, 200)
    low, high = metrics.bootstrap_interval(values)
    assert low < values.mean() < high and high - low < 0.05
    assert metrics.bootstrap_interval(values) == (low, high)
    ratio_low, ratio_high = metrics.bootstrap_interval(np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 4.0]))
    assert ratio_low <= 6 / 8 <= ratio_high
    assert metrics.bootstrap_interval(np.array([0.7])) == (0.7, 0.7)
