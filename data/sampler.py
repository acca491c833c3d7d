"""The training sampler: a reproducible order and per-sample seeds for every epoch."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler


class EpochSampler(Sampler[tuple[int, int]]):
    """Yields ``(index, sample_seed)`` pairs derived only from ``(seed, epoch)``.

    Because the order and every sample's random augmentation follow from the epoch number
    alone, a run resumed at epoch ``k`` sees exactly the data an uninterrupted run would have
    seen, with any number of loader workers, persistent or not. Call :meth:`set_epoch` before
    iterating.
    """

    def __init__(self, dataset_size: int, shuffle: bool, seed: int) -> None:
        self.dataset_size = dataset_size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[int, int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(self.dataset_size) if self.shuffle else np.arange(self.dataset_size)
        sample_seeds = rng.integers(0, 2**62, size=self.dataset_size)
        for index in order:
            yield int(index), int(sample_seeds[index])

    def __len__(self) -> int:
        return self.dataset_size
