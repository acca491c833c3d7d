"""Colour conventions shared by the data pipeline and the models."""

from __future__ import annotations

import torch

# ITU-R BT.601 luma weights for R, G, B: the same weights Pillow uses for its "L" mode,
# so an RGB image converted here and one converted by Pillow agree.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def rgb_to_gray(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) -> (N, 1, H, W) luma, in whatever range the input uses (e.g. [-1, 1])."""
    weights = images.new_tensor(LUMA_WEIGHTS).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


def match_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """Convert (N, C, H, W) to ``channels`` channels: gray -> RGB by repeating, RGB -> gray by luma."""
    current = images.shape[1]
    if current == channels:
        return images
    if current == 1 and channels == 3:
        return images.expand(-1, 3, -1, -1)
    if current == 3 and channels == 1:
        return rgb_to_gray(images)
    raise ValueError(f"cannot convert {current}-channel images to {channels} channels")
