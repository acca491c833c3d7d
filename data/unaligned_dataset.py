"""Unpaired training data: every source image with a randomly chosen target image."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from data.base_dataset import BaseDataset
from data.image_io import image_from_array


class UnalignedDataset(BaseDataset):
    """Images of ``<dataroot>/<phase>A`` (source) and ``<dataroot>/<phase>B`` (target), unpaired.

    Each item holds one source image and a target image drawn at random (or in order with
    ``--serial_batches``); an epoch is as long as the larger domain. With ``--direction BtoA``
    the folders swap roles: ``<phase>B`` becomes the source, and ``--input_nc``/``--output_nc``
    describe the source and target of that translation.
    """

    layout = (
        "<dataroot>/trainA (source: grayscale/fluorescence), <dataroot>/trainB (target: H&E), "
        "and testA/testB for test.py"
    )

    def __init__(self, opt: argparse.Namespace) -> None:
        super().__init__(opt)
        source, target = ("A", "B") if opt.direction == "AtoB" else ("B", "A")
        self.paths_A = self.image_folder(f"{opt.phase}{source}", "source-domain")
        self.paths_B = self.image_folder(f"{opt.phase}{target}", "target-domain")

    def __len__(self) -> int:
        return max(len(self.paths_A), len(self.paths_B))

    def files_to_cache(self) -> list[tuple[str, Path]]:
        return [("image", path) for path in (*self.paths_A, *self.paths_B)]

    def load_item(self, index: int, rng: np.random.Generator) -> dict[str, Any]:
        path_A = self.paths_A[index % len(self.paths_A)]
        if self.opt.serial_batches:
            path_B = self.paths_B[index % len(self.paths_B)]
        else:
            path_B = self.paths_B[int(rng.integers(len(self.paths_B)))]
        item = self.load_source(path_A, rng)
        image_B, _ = self.load_image(path_B, self.opt.output_nc, rng)
        return {**item, "B": image_B, "B_paths": str(path_B)}

    def target_images(self) -> list[np.ndarray]:
        """Every target-domain image, whole and unaugmented, as (H, W, 3) uint8: what a model calibrates
        its statistics of the target domain on (e.g. the stain model of ``seg_cycle_gan``)."""
        return [np.rint(image_from_array(self.read(path), 3, path) * 255.0).astype(np.uint8) for path in self.paths_B]

    def load_source(self, path: Path, rng: np.random.Generator) -> dict[str, Any]:
        """The source-domain part of an item (``A``, ``A_paths``); subclasses add what travels with it."""
        image, _ = self.load_image(path, self.opt.input_nc, rng)
        return {"A": image, "A_paths": str(path)}
