"""Unpaired training data: every source image with a randomly chosen target image, optionally with its
nucleus mask (``--dataset_mode improvedunaligned``).

The masks (``<phase>A_GT``) belong to domain A and travel with their image through the same
crop and flip, so a loss or metric on the nuclei sees exactly the pixels of the image it gets.
"""

from __future__ import annotations

import argparse
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from data.base_dataset import BaseDataset
from data.image_io import image_from_array, list_images
from data.intensity import IntensityNormalization
from util.errors import DatasetError, OptionError

logger = logging.getLogger(__name__)


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

    def __init__(self, opt: argparse.Namespace, source_normalization: IntensityNormalization | None = None) -> None:
        super().__init__(opt, source_normalization)
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
        image, _ = self.load_source_image(path, rng)
        return {"A": image, "A_paths": str(path)}


#: How many offending file names an error message lists before it only gives the count.
_NAMES_SHOWN = 10


class ImprovedUnalignedDataset(UnalignedDataset):
    """:class:`UnalignedDataset` whose items also hold ``A_GT``, the nucleus mask of ``A``.

    Masks are paired with images by name (relative path without extension), never by sorted
    position, so ``trainA/x.png`` pairs with ``trainA_GT/x.tif``. ``A_GT`` is a float32 (1, H, W)
    tensor of exact 0/1 values that received the same resize, crop and flip as ``A``.
    """

    layout = (
        "<dataroot>/trainA (source: grayscale/fluorescence), "
        "<dataroot>/trainA_GT: binary nucleus masks (0/255), same file names as trainA, "
        "<dataroot>/trainB (target: H&E), and testA/testA_GT/testB for test.py"
    )

    def __init__(self, opt: argparse.Namespace, source_normalization: IntensityNormalization | None = None) -> None:
        if opt.direction != "AtoB":
            raise OptionError(
                f"--dataset_mode improvedunaligned cannot run with --direction {opt.direction}: the masks in "
                f"{opt.phase}A_GT belong to domain A (the gray/fluorescence source), so the translation must start "
                "from A. Use --direction AtoB, or --dataset_mode unaligned to train without masks."
            )
        super().__init__(opt, source_normalization)
        self.warned_about_mask_values = False  # once per dataset object (per loader worker)
        self.gt_paths = self._pair_masks(f"{opt.phase}A", f"{opt.phase}A_GT")

    def _pair_masks(self, image_folder_name: str, mask_folder_name: str) -> dict[Path, Path]:
        """The mask of every used source image, matched by name; one error listing every mismatch."""
        image_folder, mask_folder = self.root / image_folder_name, self.root / mask_folder_name
        if not mask_folder.is_dir():
            raise DatasetError(
                f"mask folder {mask_folder} does not exist. Expected layout: {self.layout}. "
                "Without masks, use --dataset_mode unaligned."
            )
        masks_by_name = _group_by_name(list_images(mask_folder), mask_folder)
        # Extra masks are judged against the whole folder, not the part kept by --max_dataset_size.
        images_by_name = _group_by_name(list_images(image_folder), image_folder)

        problems = []
        shared = [_with_files(name, paths) for name, paths in images_by_name.items() if len(paths) > 1]
        if shared:
            problems.append(
                f"images in {image_folder} that share a name {_listing(shared)}; masks are paired with images "
                "by file name without extension, so rename one of each"
            )
        duplicates = [_with_files(name, paths) for name, paths in masks_by_name.items() if len(paths) > 1]
        if duplicates:
            problems.append(f"images with more than one mask in {mask_folder} {_listing(duplicates)}; keep one")
        missing = [
            _relative(path, image_folder) for path in self.paths_A if _name(path, image_folder) not in masks_by_name
        ]
        if missing:
            problems.append(
                f"images in {image_folder} without a mask in {mask_folder} {_listing(missing)}; add a mask with "
                f"the same file name (any image extension) or move the image out of {image_folder}"
            )
        extra = [
            _relative(path, mask_folder)
            for name, paths in masks_by_name.items()
            if name not in images_by_name
            for path in paths
        ]
        if extra:
            problems.append(
                f"masks in {mask_folder} without an image in {image_folder} {_listing(extra)}; masks are paired "
                "with images by file name, so rename each to match its image or remove it"
            )
        if problems:
            raise DatasetError("masks do not match their images: " + ". ".join(problems) + ".")
        return {path: masks_by_name[_name(path, image_folder)][0] for path in self.paths_A}

    def files_to_cache(self) -> list[tuple[str, Path]]:
        return [*super().files_to_cache(), *(("mask", mask) for mask in self.gt_paths.values())]

    def load_source(self, path: Path, rng: np.random.Generator) -> dict[str, Any]:
        """The A image and its mask, both through the one augmentation drawn for this sample."""
        image, augmentation = self.load_source_image(path, rng)
        mask_path = self.gt_paths[path]
        mask = self.read_mask(mask_path)
        if tuple(mask.shape[1:]) != augmentation.input_size:
            height, width = augmentation.input_size
            raise DatasetError(
                f"mask {mask_path} is {mask.shape[2]}x{mask.shape[1]} pixels but its image {path} is "
                f"{width}x{height}; a mask must have exactly the size of its image, so re-export it at that size"
            )
        return {
            "A": image,
            "A_paths": str(path),
            "A_GT": augmentation.apply(mask, interpolation="nearest"),
            "A_GT_paths": str(mask_path),
        }

    def read_mask(self, path: Path) -> torch.Tensor:
        """The mask at ``path`` as a (1, H, W) float32 tensor of 0 (background) and 1 (nucleus).

        Raw values are read (:func:`data.image_io.read_mask_values`): any channel above zero is
        foreground, and an alpha channel is ignored.
        """
        array = self.read(path, "mask")
        values = np.unique(array)
        if not self.warned_about_mask_values and not np.isin(values, (0, 255)).all():
            self.warned_about_mask_values = True
            logger.warning(
                "mask %s holds %s, not 0/255; reading foreground as value > 0 "
                "(warned once; other masks may differ too)",
                path,
                _describe(values),
            )
        return torch.from_numpy((array > 0)[None].astype(np.float32))


def _name(path: Path, folder: Path) -> str:
    """The pairing key: the path inside ``folder`` without its extension."""
    return path.relative_to(folder).with_suffix("").as_posix()


def _relative(path: Path, folder: Path) -> str:
    return path.relative_to(folder).as_posix()


def _group_by_name(paths: list[Path], folder: Path) -> dict[str, list[Path]]:
    groups: dict[str, list[Path]] = defaultdict(list)
    for path in paths:
        groups[_name(path, folder)].append(path)
    return groups


def _with_files(name: str, paths: list[Path]) -> str:
    return f"{name} ({', '.join(path.name for path in paths)})"


def _listing(names: list[str]) -> str:
    """``(count): a, b, ...`` naming at most _NAMES_SHOWN entries, for error messages."""
    shown = ", ".join(sorted(names)[:_NAMES_SHOWN])
    more = f", and {len(names) - _NAMES_SHOWN} more" if len(names) > _NAMES_SHOWN else ""
    return f"({len(names)}): {shown}{more}"


def _describe(values: np.ndarray) -> str:
    """The distinct values of a mask in a few words, e.g. ``values 0..17 (instance labels?)``."""
    if values.dtype == np.bool_:
        return "boolean values"
    if values.size <= 4:
        return "values " + ", ".join(f"{value:g}" for value in values.tolist())
    labels = "instance labels?" if values.dtype.kind in "iu" else f"{values.size} distinct"
    return f"values {values.min().item():g}..{values.max().item():g} ({labels})"
