"""What every dataset shares: options, folder checks, per-sample randomness, image loading."""

from __future__ import annotations

import argparse
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from data.image_io import IMAGE_EXTENSIONS, image_from_array, list_images, read_array, read_mask_values
from data.intensity import IntensityNormalization, prepare_source, recorded_normalization
from data.transforms import Augmentation, Preprocessing, gray_to_tensor, normalize, to_tensor
from util.errors import DatasetError, ImageReadError
from util.progress import progress_bar

logger = logging.getLogger(__name__)

#: How each kind of file is read: images as stored, masks as raw values.
READERS: dict[str, Callable[[Path], np.ndarray]] = {"image": read_array, "mask": read_mask_values}

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

    def __init__(self, opt: argparse.Namespace, source_normalization: IntensityNormalization | None = None) -> None:
        self.opt = opt
        self.root = Path(opt.dataroot)
        self.preprocessing = Preprocessing.from_options(opt)
        #: Decoded pixels by (kind, path), filled by :meth:`fill_cache` (``--cache``).
        self.cache: dict[tuple[str, Path], np.ndarray] = {}
        if not self.root.is_dir():
            raise DatasetError(
                f"--dataroot {self.root} does not exist. Expected layout: {self.layout}. "
                "Build the bundled demo data with: python scripts/make_demo_dataset.py"
            )
        #: How raw source frames become 8-bit (see :func:`data.intensity.prepare_source`): the rule given
        #: (test.py passes the training data's), else the one recorded with this dataroot.
        self.source_normalization = source_normalization or recorded_normalization(self.root)

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
        try:
            return self.load_item(index, np.random.default_rng(seed))
        except ImageReadError as error:
            raise self.with_check_hint(error) from error

    def check_hint(self) -> str:
        """How to find every bad file at once, for read errors: one bad file stops a run where it is met,
        perhaps hours into an epoch. Empty where the check does not apply."""
        return f"Find every bad file at once with: python scripts/make_dataset.py --check {self.root}"

    def with_check_hint(self, error: ImageReadError) -> ImageReadError:
        """``error`` with :meth:`check_hint` appended (once), as the same one-line message."""
        hint = self.check_hint()
        if not hint or hint in str(error):
            return error
        return ImageReadError(f"{error} {hint}")

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

    def files_to_cache(self) -> list[tuple[str, Path]]:
        """Every file an epoch reads, as (kind of file, path) with a kind of :data:`READERS`."""
        return []

    def fill_cache(self) -> None:
        """Decode every file once into memory, in the main process before the loader's workers start
        (they share the pages), unless the decoded pixels would take more than half the free memory."""
        files = self.files_to_cache()
        budget, used = _available_memory_bytes() // 2, 0
        cache = {}
        for kind, path in progress_bar(files, desc="caching images", unit="image", leave=False):
            try:
                pixels = READERS[kind](path)
            except ImageReadError as error:
                raise self.with_check_hint(error) from error
            used += pixels.nbytes
            if used > budget:
                logger.warning(
                    "--cache ignored: the decoded images need more than half of the free memory (%.1f GB); "
                    "they are read from disk every epoch instead",
                    budget * 2 / 1e9,
                )
                return
            cache[(kind, path)] = pixels
        self.cache = cache
        logger.info("--cache: %d files decoded into memory (%.1f MB)", len(cache), used / 1e6)

    def read(self, path: Path, kind: str = "image") -> np.ndarray:
        """The stored pixels of ``path`` (``kind`` a key of :data:`READERS`): from the cache, else from disk."""
        cached = self.cache.get((kind, path))
        return cached if cached is not None else READERS[kind](path)

    def load_image(self, path: Path, channels: int, rng: np.random.Generator) -> tuple[torch.Tensor, Augmentation]:
        """Read, augment and normalize one target image: (channels, H, W) in [-1, 1], plus the augmentation used."""
        return self._augment(to_tensor(image_from_array(self.read(path), channels, path)), path, rng)

    def load_source_image(self, path: Path, rng: np.random.Generator) -> tuple[torch.Tensor, Augmentation]:
        """A source image as every driver prepares it (:func:`data.intensity.prepare_source` for a gray
        source), augmented and normalized: (input_nc, H, W) in [-1, 1], plus the augmentation used."""
        if self.opt.input_nc != 1:
            return self.load_image(path, self.opt.input_nc, rng)
        gray = prepare_source(self.read(path), self.source_normalization, path)
        return self._augment(gray_to_tensor(gray), path, rng)

    def _augment(self, image: torch.Tensor, path: Path, rng: np.random.Generator) -> tuple[torch.Tensor, Augmentation]:
        augmentation = self.preprocessing.draw(image.shape[1], image.shape[2], rng, source=f"image {path}")
        return normalize(augmentation.apply(image)), augmentation


def _available_memory_bytes() -> int:
    """Memory the system can give without swapping (Linux MemAvailable; free pages elsewhere)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
