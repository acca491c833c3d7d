"""What every dataset shares: options, folder checks, per-sample randomness, image loading."""

from __future__ import annotations

import argparse
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from data.image_io import IMAGE_EXTENSIONS, list_images, read_image
from data.transforms import Augmentation, Preprocessing, normalize, to_tensor
from util.errors import DatasetError

DatasetKey = int | tuple[int, int]


class BaseDataset(Dataset, ABC):
    """Base class of the datasets picked by ``--dataset_mode``.

    Items are requested either by index or by ``(index, seed)``. The seed (given by
    :class:`data.sampler.EpochSampler`) drives every random choice of that sample, so an epoch
    can be replayed exactly whatever the number of loader workers; a bare index draws fresh
    randomness.
    """

    #: One line describing the folders this dataset expects, used in error messages.
    layout = "<dataroot>/<phase>A and <dataroot>/<phase>B"

    def __init__(self, opt: argparse.Namespace) -> None:
        self.opt = opt
        self.root = Path(opt.dataroot)
        self.preprocessing = Preprocessing.from_options(opt)
        if not self.root.is_dir():
            raise DatasetError(
                f"--dataroot {self.root} does not exist. Expected layout: {self.layout}. "
                "Build the bundled demo data with: python scripts/make_demo_dataset.py"
            )

    @staticmethod
    def modify_commandline_options(parser: argparse.ArgumentParser, is_train: bool) -> argparse.ArgumentParser:
        """Add dataset-specific flags or change defaults; the base dataset adds none."""
        return parser

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def load_item(self, index: int, rng: np.random.Generator) -> dict[str, Any]:
        """The sample at ``index``, drawing all randomness from ``rng``."""

    def __getitem__(self, key: DatasetKey) -> dict[str, Any]:
        index, seed = key if isinstance(key, tuple) else (key, None)
        return self.load_item(index, np.random.default_rng(seed))

    def image_folder(self, name: str, role: str) -> list[Path]:
        """The sorted images of ``<dataroot>/<name>``; a clear error if it is missing or empty."""
        folder = self.root / name
        if not folder.is_dir():
            raise DatasetError(f"{role} folder {folder} does not exist. Expected layout: {self.layout}.")
        paths = list_images(folder)
        if not paths:
            raise DatasetError(f"{role} folder {folder} contains no images (looked for {', '.join(IMAGE_EXTENSIONS)}).")
        limit = self.opt.max_dataset_size
        return paths[:limit] if limit else paths

    def load_image(self, path: Path, channels: int, rng: np.random.Generator) -> tuple[torch.Tensor, Augmentation]:
        """Read, augment and normalise one image: (channels, H, W) in [-1, 1], plus the augmentation used."""
        image = to_tensor(read_image(path, channels))
        augmentation = self.preprocessing.draw(image.shape[1], image.shape[2], rng, source=f"image {path}")
        return normalize(augmentation.apply(image)), augmentation
