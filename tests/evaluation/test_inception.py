"""evaluation.inception: FID/KID equal torch-fidelity's, the weights file is checked, features are computed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric

from evaluation import inception
from tests.helpers import demo_arrays
from util.errors import EvaluationError


def correlated_features(count: int, dimension: int, seed: int, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mixing = np.random.default_rng(99).normal(size=(dimension, dimension))
    return rng.normal(size=(count, dimension)) @ mixing + shift


def torch_fidelity_fid(first: np.ndarray, second: np.ndarray) -> float:
    statistics = [fid_features_to_statistics(torch.from_numpy(side)) for side in (first, second)]
    return fid_statistics_to_metric(*statistics, verbose=False)["frechet_inception_distance"]


@pytest.mark.parametrize(("first_count", "second_count"), [(40, 30), (90, 120), (12, 200)])
def test_fid_equals_torch_fidelity(first_count: int, second_count: int) -> None:
    # 24 features: fewer images than features, more, and one of each (both ways of factoring the covariance).
    first = correlated_features(first_count, 24, seed=1)
    second = correlated_features(second_count, 24, seed=2, shift=0.7)
    distances = inception.inception_distances(inception.FeatureSummary.of(first), inception.FeatureSummary.of(second))
    assert distances["fid"] == pytest.approx(torch_fidelity_fid(first, second), rel=1e-7)
    assert distances["fid"] > 10


def test_fid_of_one_set_with_itself_is_zero() -> None:
    features = correlated_features(50, 24, seed=3)
    summary = inception.FeatureSummary.of(features)
    assert inception.inception_distances(summary, summary)["fid"] == pytest.approx(0.0, abs=1e-8)


@pytest.mark.parametrize(("first_count", "second_count"), [(30, 30), (30, 45)])
def test_kid_equals_torch_fidelity(first_count: int, second_count: int) -> None:
    first = correlated_features(first_count, 16, seed=4) / 4
    second = correlated_features(second_count, 16, seed=5, shift=3.0) / 4
    expected = kid_features_to_metric(
        torch.from_numpy(first),
        torch.from_numpy(second),
        kid_subset_size=min(first_count, second_count),
        verbose=False,
    )["kernel_inception_distance_mean"]
    assert inception.kernel_inception_distance(first, second) == pytest.approx(expected, rel=1e-9)
    assert expected > 0


def test_weights_file_is_checked_before_use(tmp_path: Path) -> None:
    with pytest.raises(EvaluationError, match=r"not found.*weights-inception-2015-12-05"):
        inception.check_weights(tmp_path / "missing.pth")
    wrong_keys = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, wrong_keys)
    with pytest.raises(EvaluationError, match="not the FID Inception-v3 state dict"):
        inception.check_weights(wrong_keys)
    with_code = tmp_path / "pickled.pth"
    torch.save({"fc.weight": torch.zeros(1), "hook": Path("anything")}, with_code)  # a class: refused unread
    with pytest.raises(EvaluationError, match="as plain tensors"):
        inception.check_weights(with_code)
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(EvaluationError, match="cannot read"):
        inception.check_weights(corrupt)


def test_features_of_real_crops(random_inception_weights: Path, demo_root: Path) -> None:
    extractor = inception.InceptionFeatures(random_inception_weights, "-1", batch_size=2)
    he = list(demo_arrays(demo_root / "testB")[:3])
    features = extractor([*he, he[0][:100, :90]])  # a smaller image joins its own batch
    assert features.shape == (4, 2048) and np.isfinite(features).all()
    np.testing.assert_allclose(extractor(he[:1]), features[:1], rtol=1e-5, atol=1e-6)  # batch-independent
    assert not np.allclose(features[0], features[1])
