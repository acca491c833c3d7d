"""EpochSampler: reproducible epochs, and equal disjoint shares for distributed processes."""

from __future__ import annotations

import pytest

from data.sampler import EpochSampler


def draws(size: int, epoch: int, rank: int = 0, world_size: int = 1) -> list[tuple[int, int]]:
    sampler = EpochSampler(size, shuffle=True, seed=3, rank=rank, world_size=world_size)
    sampler.set_epoch(epoch)
    return list(sampler)


def test_an_epoch_is_replayed_exactly_and_epochs_differ() -> None:
    assert draws(10, epoch=4) == draws(10, epoch=4)
    assert draws(10, epoch=4) != draws(10, epoch=5)
    assert sorted(index for index, _ in draws(10, epoch=4)) == list(range(10))


@pytest.mark.parametrize(("size", "world_size"), [(10, 2), (7, 2), (7, 3), (2, 4)])
def test_processes_share_the_epoch_in_equal_parts_with_the_same_seeds(size: int, world_size: int) -> None:
    whole = dict(draws(size, epoch=2))
    shares = [draws(size, epoch=2, rank=rank, world_size=world_size) for rank in range(world_size)]
    assert {len(share) for share in shares} == {-(-size // world_size)}  # equal lengths: no rank waits
    seen = [index for share in shares for index, _ in share]
    assert set(seen) == set(range(size))  # every image is used
    assert len(seen) - len(set(seen)) == len(seen) - size  # only the padding repeats images
    assert all(whole[index] == seed for share in shares for index, seed in share)  # same augmentation seeds


def test_a_rank_outside_the_world_is_refused() -> None:
    with pytest.raises(ValueError, match="outside a world of 2"):
        EpochSampler(5, shuffle=True, seed=0, rank=2, world_size=2)
