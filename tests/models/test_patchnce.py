"""PatchNCE: lowest when output patches equal input patches at their own places, negatives from the same image only,
and the encoder features and projection heads it reads."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from models import networks, patchnce
from util.errors import OptionError


def unit_vectors(*shape: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=generator), dim=-1)


def test_the_loss_is_lowest_when_queries_equal_their_keys_and_grows_when_places_are_shuffled() -> None:
    keys = unit_vectors(2, 64, 16)
    matched = float(patchnce.patch_nce_loss(keys, keys, 0.07))
    generator = torch.Generator().manual_seed(1)
    for _ in range(5):
        shuffled = keys[:, torch.randperm(64, generator=generator)]
        assert float(patchnce.patch_nce_loss(shuffled, keys, 0.07)) > matched + 1.0
    # Partly shuffled lies in between: the more places lose their own patch, the higher the loss.
    half = keys.clone()
    half[:, :32] = keys[:, torch.randperm(32, generator=generator)]
    assert (
        matched
        < float(patchnce.patch_nce_loss(half, keys, 0.07))
        < float(patchnce.patch_nce_loss(shuffled, keys, 0.07))
    )
    # Queries that tell no place from another score chance, log(P).
    assert float(patchnce.patch_nce_loss(torch.zeros_like(keys), keys, 0.07)) == pytest.approx(math.log(64), rel=1e-6)


def test_negatives_come_from_the_same_image_only() -> None:
    """A batch's loss is the mean of its images' losses: another image's patches never enter as negatives."""
    queries, keys = unit_vectors(3, 32, 8, seed=2), unit_vectors(3, 32, 8, seed=3)
    alone = [float(patchnce.patch_nce_loss(queries[i : i + 1], keys[i : i + 1], 0.07)) for i in range(3)]
    assert float(patchnce.patch_nce_loss(queries, keys, 0.07)) == pytest.approx(sum(alone) / 3, rel=1e-6)
    # Image 1's queries equal image 0's keys: if other images' keys were negatives, image 0's loss would change.
    queries[1] = keys[0]
    assert float(patchnce.patch_nce_loss(queries[:1], keys[:1], 0.07)) == pytest.approx(alone[0], rel=1e-6)


def test_gradients_reach_the_queries_and_never_the_keys() -> None:
    keys = unit_vectors(1, 16, 8, seed=4).requires_grad_(True)
    queries = unit_vectors(1, 16, 8, seed=5).requires_grad_(True)
    patchnce.patch_nce_loss(queries, keys, 0.07).backward()
    assert queries.grad is not None and queries.grad.abs().sum() > 0
    assert keys.grad is None


def test_a_lower_temperature_sharpens_a_correct_match() -> None:
    keys = unit_vectors(1, 32, 16, seed=6)
    losses = [float(patchnce.patch_nce_loss(keys, keys, temperature)) for temperature in (1.0, 0.2, 0.07)]
    assert losses[0] > losses[1] > losses[2]


def test_sampled_locations_are_distinct_shared_by_keys_and_queries_and_too_many_are_refused() -> None:
    maps = [torch.zeros(2, 3, 8, 8), torch.zeros(2, 5, 4, 4)]
    locations = patchnce.sample_locations(maps, 16, layers=(4, 10))
    for where in locations:
        assert where.shape == (16,) and len(set(where.tolist())) == 16
    assert int(locations[0].max()) < 64 and int(locations[1].max()) < 16
    with pytest.raises(OptionError, match=r"--num_patches 17 .* 4x4 = 16 locations of encoder layer 10.*1\.\.16"):
        patchnce.sample_locations(maps, 17, layers=(4, 10))


def test_gathered_patches_are_the_feature_vectors_at_those_places() -> None:
    features = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    where = torch.tensor([0, 7, 19])  # (row, column) = (0, 0), (1, 2), (3, 4)
    patches = patchnce.gather_patches(features, where)
    assert patches.shape == (2, 3, 3)
    assert torch.equal(patches[1, 1], features[1, :, 1, 2]) and torch.equal(patches[0, 2], features[0, :, 3, 4])


# -- what the loss reads: the generator's encoder and the projection heads ---------------------------------------
def test_encode_returns_the_body_outputs_the_forward_pass_computes() -> None:
    torch.manual_seed(0)
    generator = networks.define_generator("resnet_6blocks", 1, 3, ngf=4)
    assert generator.encoder_layer_count() == 16
    images = torch.rand(2, 1, 30, 34) * 2 - 1  # padded to 32 x 36 inside, as forward pads
    layers = (0, 2, 4, 7, 10, 15)
    features = generator.encode(images, layers)
    x = generator.pad_to_fit(images)
    expected = {}
    for index in range(16):
        x = generator.body[index](x)
        expected[index] = x.clone()
    for layer, feature_map in zip(layers, features, strict=True):
        assert torch.equal(feature_map, expected[layer]), layer
    # Layer 2 is a norm followed by an in-place ReLU: the map keeps its negative values.
    assert features[1].min() < 0
    assert [tuple(f.shape[1:]) for f in features] == generator.feature_shapes(layers, 30, 34)
    assert features[0].shape[-2:] == (38, 42) and features[3].shape[-2:] == (8, 9)
    with pytest.raises(ValueError, match=r"0\.\.15"):
        generator.encode(images, (16,))


def test_encode_adds_no_weights_and_the_dry_run_leaves_batch_norm_statistics_alone() -> None:
    torch.manual_seed(0)
    generator = networks.define_generator("resnet_6blocks", 1, 3, ngf=4, norm="batch")
    keys = list(generator.state_dict())
    before = {key: value.clone() for key, value in generator.state_dict().items()}
    generator.feature_shapes((0, 4, 7, 10, 14), 32, 32)
    assert generator.training and list(generator.state_dict()) == keys
    assert all(torch.equal(before[key], value) for key, value in generator.state_dict().items())


def test_projection_heads_give_unit_vectors_per_layer() -> None:
    heads = networks.init_weights(networks.ProjectionHeads([1, 8], units=16))
    outputs = heads([torch.randn(2, 5, 1), torch.randn(2, 5, 8)])
    assert [tuple(output.shape) for output in outputs] == [(2, 5, 16), (2, 5, 16)]
    assert all(torch.allclose(output.norm(dim=-1), torch.ones(2, 5), atol=1e-5) for output in outputs)
    with pytest.raises(ValueError, match="2 projection heads"):
        heads([torch.randn(2, 5, 1)])
