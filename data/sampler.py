"""The training sampler: a reproducible order and per-sample seeds for every epoch, shared among processes."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler


class EpochSampler(Sampler[tuple[int, int]]):
    """Yields ``(index, sample_seed)`` pairs derived only from ``(seed, epoch)``.

    Because the order and every sample's random augmentation follow from the epoch number
    alone, a run resumed at epoch ``k`` sees exactly the data an uninterrupted run would have
    seen, with any number of loader workers, persistent or not. Call :meth:`set_epoch` before
    iterating.

    With ``world_size`` > 1 (distributed training) it does what ``DistributedSampler`` does,
    keeping the per-sample seeds: every process draws the same epoch order, pads it by repeating
    its start to a multiple of ``world_size``, and takes every ``world_size``-th entry from
    ``rank``, so the processes see disjoint shares of equal length.
    """

    def __init__(self, dataset_size: int, shuffle: bool, seed: int, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside a world of {world_size}")
        self.dataset_size = dataset_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[int, int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(self.dataset_size) if self.shuffle else np.arange(self.dataset_size)
        sample_seeds = rng.integers(0, 2**62, size=self.dataset_size)
        padded = np.resize(order, len(self) * self.world_size)  # repeats the start when too short
        for index in padded[self.rank :: self.world_size]:
            yield int(index), int(sample_seeds[index])

    def __len__(self) -> int:
        """Samples this process sees per epoch."""
        return math.ceil(self.dataset_size / self.world_size)
