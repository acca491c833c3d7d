"""Datasets, found by name: ``--dataset_mode foo`` loads class ``FooDataset`` from ``data/foo_dataset.py``.

A new dataset is one new file; it declares its own flags in ``modify_commandline_options``.
"""

from __future__ import annotations

import argparse
import multiprocessing
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from data.base_dataset import BaseDataset
from data.intensity import IntensityNormalization
from data.sampler import EpochSampler
from util.registry import find_class, registered_names

OptionSetter = Callable[[argparse.ArgumentParser, bool], argparse.ArgumentParser]


def dataset_names() -> list[str]:
    """Every valid ``--dataset_mode``: the files ``data/<name>_dataset.py``."""
    return registered_names(Path(__file__).parent, "dataset")


def find_dataset_class(name: str) -> type[BaseDataset]:
    """The dataset class for ``name``; an :class:`OptionError` listing the valid names otherwise."""
    return find_class(__name__, Path(__file__).parent, "dataset", name, BaseDataset, "--dataset_mode")


def get_option_setter(name: str) -> OptionSetter:
    """The ``modify_commandline_options`` of dataset ``name``."""
    return find_dataset_class(name).modify_commandline_options


def create_dataset(opt: argparse.Namespace, source_normalization: IntensityNormalization | None = None) -> BaseDataset:
    """Build the dataset chosen by ``--dataset_mode``; with ``--cache`` its images are decoded into memory now.

    ``source_normalization``: how raw source frames become 8-bit (default: the rule recorded with the dataroot).
    """
    dataset = find_dataset_class(opt.dataset_mode)(opt, source_normalization)
    if opt.cache:
        dataset.fill_cache()
    return dataset


def create_dataloader(
    dataset: BaseDataset, opt: argparse.Namespace, device: torch.device
) -> tuple[DataLoader, EpochSampler]:
    """A DataLoader over ``dataset`` and its :class:`EpochSampler` (call ``set_epoch`` each epoch).

    Training shuffles unless ``--serial_batches`` and drops a last incomplete batch (a batch of
    one breaks batch norm); testing keeps every image in order. Under ``torchrun`` each process
    loads its own share of every epoch. Workers stay alive between epochs, and batches go to a
    GPU from pinned memory.
    """
    shuffle = opt.is_train and not opt.serial_batches
    # The --cache pages reach the workers only through fork; other start methods (the default
    # from Python 3.14) would pickle a copy of the whole cache into every worker.
    fork_shares_cache = bool(dataset.cache) and "fork" in multiprocessing.get_all_start_methods()
    sampler = EpochSampler(len(dataset), shuffle=shuffle, seed=opt.seed, rank=opt.rank, world_size=opt.world_size)
    loader = DataLoader(
        dataset,
        batch_size=opt.batch_size,
        sampler=sampler,
        num_workers=opt.num_threads,
        pin_memory=device.type == "cuda",
        drop_last=opt.is_train and len(sampler) >= opt.batch_size,
        persistent_workers=opt.num_threads > 0,
        multiprocessing_context="fork" if fork_shares_cache and opt.num_threads > 0 else None,
        # A private generator keeps the loader from consuming the global torch RNG, whose
        # state belongs to the model (dropout) and is saved with each checkpoint.
        generator=torch.Generator(),
    )
    return loader, sampler
