"""Per-sample geometric augmentation and the conversion between images and model tensors.

Random parameters are drawn once per sample (:meth:`Preprocessing.draw`) and then applied by
:meth:`Augmentation.apply` to every image of that sample, so an image and its mask always get
the same crop and flip. Images stay float until they reach the model: 16-bit precision is kept.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from util.errors import DatasetError

PREPROCESS_MODES = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")
_CROPPING_MODES = ("resize_and_crop", "crop", "scale_width_and_crop")


@dataclass(frozen=True)
class Augmentation:
    """The geometric changes for one sample: resize, then crop, then horizontal flip."""

    resize_to: tuple[int, int] | None = None  # (height, width)
    crop_box: tuple[int, int, int, int] | None = None  # (top, left, height, width)
    flip: bool = False
    input_size: tuple[int, int] | None = None  # (height, width) of the images it was drawn for

    def apply(self, image: torch.Tensor, interpolation: str = "bilinear") -> torch.Tensor:
        """Apply to a (C, H, W) tensor; use ``interpolation="nearest"`` for masks and labels.

        Every image of a sample must have the size the augmentation was drawn for: a mask of
        another size would be cropped at the wrong place without any visible error.
        """
        if self.input_size is not None and tuple(image.shape[-2:]) != self.input_size:
            raise ValueError(
                f"augmentation drawn for {self.input_size[1]}x{self.input_size[0]} images applied to a "
                f"{image.shape[-1]}x{image.shape[-2]} image"
            )
        if self.resize_to is not None and tuple(image.shape[-2:]) != self.resize_to:
            smooth = interpolation != "nearest"
            image = F.interpolate(
                image[None],
                size=self.resize_to,
                mode=interpolation,
                antialias=smooth,
                align_corners=False if smooth else None,
            )[0]
        if self.crop_box is not None:
            top, left, height, width = self.crop_box
            image = image[:, top : top + height, left : left + width]
        if self.flip:
            image = image.flip(-1)
        return image


@dataclass(frozen=True)
class Preprocessing:
    """How training images are resized, cropped and flipped (from ``--preprocess`` and friends).

    Modes: ``resize_and_crop`` (resize to load_size square, random crop_size crop), ``crop``
    (random crop at the original scale, which keeps the size of nuclei in pixels),
    ``scale_width`` (width to load_size, aspect kept), ``scale_width_and_crop``, ``none``.
    """

    mode: str = "crop"
    load_size: int = 128
    crop_size: int = 128
    flip: bool = True

    def __post_init__(self) -> None:
        if self.mode not in PREPROCESS_MODES:
            raise ValueError(f"unknown preprocess mode {self.mode!r}; choose from {PREPROCESS_MODES}")

    @classmethod
    def from_options(cls, opt: argparse.Namespace) -> Preprocessing:
        return cls(opt.preprocess, opt.load_size, opt.crop_size, not opt.no_flip)

    def draw(self, height: int, width: int, rng: np.random.Generator, source: str = "image") -> Augmentation:
        """Draw the augmentation for one sample whose images are ``height`` x ``width`` pixels."""
        input_size = (height, width)
        resize_to = self._resized_size(height, width)
        if resize_to is not None:
            height, width = resize_to
        crop_box = None
        if self.mode in _CROPPING_MODES:
            if height < self.crop_size or width < self.crop_size:
                raise DatasetError(
                    f"{source} is {width}x{height} pixels (after --preprocess {self.mode}), smaller than "
                    f"--crop_size {self.crop_size}; use a smaller --crop_size or --preprocess resize_and_crop"
                )
            top = int(rng.integers(0, height - self.crop_size + 1))
            left = int(rng.integers(0, width - self.crop_size + 1))
            crop_box = (top, left, self.crop_size, self.crop_size)
        flip = bool(self.flip and rng.random() < 0.5)
        return Augmentation(resize_to, crop_box, flip, input_size)

    def _resized_size(self, height: int, width: int) -> tuple[int, int] | None:
        if self.mode == "resize_and_crop":
            return (self.load_size, self.load_size)
        if self.mode in ("scale_width", "scale_width_and_crop"):
            new_height = max(1, round(height * self.load_size / width))
            if self.mode == "scale_width_and_crop":
                new_height = max(new_height, self.crop_size)
            return (new_height, self.load_size)
        return None


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, C) float array in [0, 1] -> (C, H, W) float32 tensor in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))


def gray_to_tensor(gray: np.ndarray) -> torch.Tensor:
    """(H, W) uint8 gray -> (1, H, W) float32 tensor in [0, 1]: how every driver feeds a prepared source image."""
    return torch.from_numpy(gray[None].astype(np.float32) / np.float32(255.0))


def normalize(image: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1], the range of the generators' tanh output."""
    return image * 2.0 - 1.0


def to_uint8_image(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) tensor in [-1, 1] -> (H, W) or (H, W, 3) uint8 array, ready to save or show."""
    pixels = ((image.detach().float().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)
    array = pixels.cpu().numpy().transpose(1, 2, 0)
    return array[:, :, 0] if array.shape[2] == 1 else array
