"""evaluation.inception: FID/KID equal torch-fidelity's, the weights file is checked, features are computed."""

from __future__ import annotations

import os
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
        inception.load_weights(tmp_path / "missing.pth")
    wrong_keys = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, wrong_keys)
    with pytest.raises(EvaluationError, match="not the FID Inception-v3 state dict"):
        inception.load_weights(wrong_keys)
    with_code = tmp_path / "pickled.pth"
    torch.save({"fc.weight": torch.zeros(1), "hook": Path("anything")}, with_code)  # a class: refused unread
    with pytest.raises(EvaluationError, match="as plain tensors"):
        inception.load_weights(with_code)
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(EvaluationError, match="cannot read"):
        inception.load_weights(corrupt)


def test_features_of_real_crops(random_inception_weights: Path, demo_root: Path) -> None:
    extractor = inception.InceptionFeatures(random_inception_weights, "-1", batch_size=2)
    he = list(demo_arrays(demo_root / "testB")[:3])
    features = extractor([*he, he[0][:100, :90]])  # a smaller image joins its own batch
    assert features.shape == (4, 2048) and np.isfinite(features).all()
    np.testing.assert_allclose(extractor(he[:1]), features[:1], rtol=1e-5, atol=1e-6)  # batch-independent
    assert not np.allclose(features[0], features[1])


def test_the_weights_are_read_once_and_only_as_plain_tensors(
    random_inception_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch-fidelity's own load (``weights_only=False``) and its download never happen: it is handed our tensors."""
    from torch_fidelity import feature_extractor_inceptionv3 as module

    loads: list[tuple[object, object]] = []
    real_load = torch.load

    def recording_load(source: object, *args: object, **kwargs: object) -> object:
        loads.append((source, kwargs.get("weights_only")))
        return real_load(source, *args, **kwargs)

    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("torch-fidelity was left to download or load the weights itself")

    monkeypatch.setattr(torch, "load", recording_load)
    monkeypatch.setattr(module, "load_state_dict_from_url", no_download)
    extractor = inception.InceptionFeatures(random_inception_weights, "-1")
    assert loads == [(random_inception_weights, True)]
    assert module.load_state_dict_from_url is no_download  # put back after the network was built
    state = real_load(random_inception_weights, weights_only=True)
    network = extractor.network.state_dict()
    assert set(network) == set(state)
    assert all(torch.equal(network[key], state[key]) for key in ("fc.weight", "Mixed_7c.branch_pool.conv.weight"))


class _MakesFolder:
    """Pickled as a call of ``os.mkdir``: only an unsafe load of a file holding it makes the folder."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.mkdir, (str(self.path),)


def test_a_file_that_would_run_code_is_refused_without_running_it(
    random_inception_weights: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "code-ran"
    state = torch.load(random_inception_weights, weights_only=True)
    torch.save({**state, "payload": _MakesFolder(marker)}, tmp_path / "booby-trapped.pth")
    with pytest.raises(EvaluationError, match="as plain tensors"):
        inception.InceptionFeatures(tmp_path / "booby-trapped.pth", "-1")
    assert not marker.exists()


def test_weights_of_other_shapes_are_one_line(random_inception_weights: Path, tmp_path: Path) -> None:
    state = torch.load(random_inception_weights, weights_only=True)
    state["fc.weight"] = torch.zeros(10, 2048)
    torch.save(state, tmp_path / "other.pth")
    with pytest.raises(EvaluationError) as raised:
        inception.InceptionFeatures(tmp_path / "other.pth", "-1")
    assert str(raised.value).startswith(
        f"{tmp_path / 'other.pth'} does not fit the FID Inception-v3 (size mismatch for fc.weight: copying a param "
        "with shape torch.Size([10, 2048]) from checkpoint"
    )
    assert "\n" not in str(raised.value)
