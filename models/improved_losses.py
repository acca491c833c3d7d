"""The extra generator losses of ``seg_cycle_gan``: ground truth, structure (SSIM) and region-aware colour.

Pure tensor functions: batched, differentiable, on whatever device their inputs live. Image
arguments are (N, C, H, W) in [-1, 1] (the generators' tanh range); masks (N, 1, H, W) in {0, 1}.
Each loss is 0 (or its minimum) when the image is right, and keeps a gradient on wrong pixels.

What "nucleus" means for a colour image is the project's stain model (:mod:`util.stain`):
hematoxylin amount from colour deconvolution, less the colour no H&E mixture explains, above a
threshold calibrated on real H&E. The loss computes the same per-pixel score as the evaluation
(:func:`nucleus_score`, tested equal); the evaluation then smooths it slightly and drops specks
when it reads whole nuclei.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from util.color import match_channels
from util.stain import RESIDUAL_PENALTY


# -- colour spaces --------------------------------------------------------------------------------
def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clamped (a generator's tanh may round past the ends)."""
    return ((images + 1.0) / 2.0).clamp(0.0, 1.0)


def optical_density(rgb: torch.Tensor) -> torch.Tensor:
    """OD ``-log10((I + 1) / 256)`` of (N, 3, H, W) RGB in [-1, 1], with I = 255 x intensity: (N, 3, H, W) in [0, 2.41].

    The formula of :func:`util.stain.optical_density`, on continuous intensities.
    """
    return -torch.log10((to_unit_range(rgb) * 255.0 + 1.0) / 256.0)


def pixels_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """CIELAB of sRGB colours (..., 3) in [-1, 1]: (..., 3).

    sRGB decoding, the sRGB-to-XYZ matrix, and the CIE f(t), whose linear part near black keeps
    the gradient finite: the conversion of ``skimage.color.rgb2lab``.
    """
    unit = to_unit_range(rgb)
    linear = torch.where(unit > 0.04045, ((unit + 0.055) / 1.055).clamp(min=1e-8) ** 2.4, unit / 12.92)
    matrix = linear.new_tensor(_XYZ_FROM_RGB) / linear.new_tensor(_D65_WHITE)[:, None]
    xyz = linear @ matrix.T
    cube_limit = (6.0 / 29.0) ** 3
    f = torch.where(
        xyz > cube_limit, xyz.clamp(min=cube_limit) ** (1.0 / 3.0), xyz / (3.0 * (6.0 / 29.0) ** 2) + 4.0 / 29.0
    )
    fx, fy, fz = f.unbind(dim=-1)
    return torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=-1)


_XYZ_FROM_RGB = (
    (0.412453, 0.357580, 0.180423),
    (0.212671, 0.715160, 0.072169),
    (0.019334, 0.119193, 0.950227),
)
_D65_WHITE = (0.95047, 1.0, 1.08883)


# -- ground truth ---------------------------------------------------------------------------------
def nucleus_score(rgb: torch.Tensor, stain_inverse: torch.Tensor) -> torch.Tensor:
    """How hematoxylin-coloured each pixel is: (N, 1, H, W) in OD units.

    ``rgb`` (N, 3, H, W) in [-1, 1]; ``stain_inverse`` (3, 3), :attr:`util.stain.StainModel.inverse`
    (amounts = OD @ inverse: hematoxylin, eosin, residual). The score is the hematoxylin amount
    minus :data:`util.stain.RESIDUAL_PENALTY` times the absolute residual, as the evaluation's
    :meth:`util.stain.StainModel.nucleus_score`: dark pink and dark green score low, black less
    than hematoxylin purple.
    """
    amounts = torch.einsum("nchw,ck->nkhw", optical_density(rgb), stain_inverse.to(rgb.dtype))
    return amounts[:, 0:1] - RESIDUAL_PENALTY * amounts[:, 2:3].abs()


def darkness(gray: torch.Tensor) -> torch.Tensor:
    """``1 - luminance`` of (N, 1 or 3, H, W) images in [-1, 1]: (N, 1, H, W) in [0, 1] (nuclei dark in domain A)."""
    return 1.0 - to_unit_range(match_channels(gray, 1))


def balanced_cross_entropy(logits: torch.Tensor, mask: torch.Tensor, border: int = 0) -> torch.Tensor:
    """Per image, the binary cross-entropy of nucleus ``logits`` against ``mask``, class-balanced: (N,) >= 0.

    The mean over nucleus pixels and the mean over background pixels count equally, so sparse
    nuclei are not outweighed by the background (an image without nuclei is scored on its
    background alone). With ``border`` > 0 the background pixels within ``border`` pixels of a
    nucleus are a third group of equal weight: they are few, yet they decide whether touching
    nuclei merge into one blob and where an outline sits (the idea of U-Net's border weights).
    A confidently wrong pixel keeps a gradient of ``1 / temperature`` in its score, however
    wrong it is: no saturating wrapper.
    """
    mask = mask.to(logits.dtype)
    per_pixel = F.binary_cross_entropy_with_logits(logits, mask, reduction="none")
    groups = [mask, 1.0 - mask]
    if border > 0:
        near = F.max_pool2d(mask, 2 * border + 1, stride=1, padding=border) - mask
        groups = [mask, near, 1.0 - mask - near]
    total, count = torch.zeros_like(per_pixel[:, 0, 0, 0]), torch.zeros_like(per_pixel[:, 0, 0, 0])
    for group in groups:
        size = group.sum(dim=(1, 2, 3))
        present = (size > 0).to(logits.dtype)
        total = total + present * (per_pixel * group).sum(dim=(1, 2, 3)) / size.clamp(min=1.0)
        count = count + present
    return total / count


def gt_loss(
    image: torch.Tensor,
    mask: torch.Tensor,
    *,
    stain_inverse: torch.Tensor,
    threshold: float,
    temperature: float = 0.05,
    border: int = 0,
) -> torch.Tensor:
    """How badly a colour ``image`` marks nuclei where ``mask`` says: a scalar >= 0 (nats).

    Each pixel's :func:`nucleus_score` is compared with ``threshold`` (OD units, calibrated on
    real H&E) at softness ``temperature`` and scored by :func:`balanced_cross_entropy` (with its
    ``border`` group). About 0.69 for a pixel exactly at the threshold; near 0 when nuclei are
    clearly hematoxylin and the rest clearly not.
    """
    logits = (nucleus_score(image, stain_inverse) - threshold) / temperature
    return balanced_cross_entropy(logits, mask, border).mean()


def input_threshold(image: torch.Tensor, mask: torch.Tensor, fallback: float = 0.5) -> torch.Tensor:
    """Per gray image, the darkness half way between its mean nucleus and mean background darkness: (N,).

    Images whose mask is all background or all nucleus get ``fallback``.
    """
    score = darkness(image).detach()
    nucleus_mean, background_mean, has_foreground, has_background = _class_means(score, mask.to(score.dtype))
    midpoint = (nucleus_mean + background_mean) / 2.0
    return torch.where(has_foreground & has_background, midpoint, torch.full_like(midpoint, fallback))


def gt_reconstruction_loss(
    reconstruction: torch.Tensor, original: torch.Tensor, mask: torch.Tensor, *, temperature: float = 0.05
) -> torch.Tensor:
    """How much worse the gray ``reconstruction`` marks the nuclei than ``original`` did: a scalar >= 0.

    For ``rec_A`` against ``real_A`` (domain A, nuclei dark). Faint nuclei are only slightly
    darker than their background, so each image's darkness threshold is taken from the input
    itself (:func:`input_threshold`), and only the part of the reconstruction's cross-entropy
    above the input's own counts: 0 for a perfect reconstruction, positive when nuclei fade or
    the background darkens.
    """
    threshold = input_threshold(original, mask).view(-1, 1, 1, 1)
    with torch.no_grad():
        reference = balanced_cross_entropy((darkness(original) - threshold) / temperature, mask)
    reconstructed = balanced_cross_entropy((darkness(reconstruction) - threshold) / temperature, mask)
    return F.relu(reconstructed - reference).mean()


def _class_means(values: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Per image, the mean of ``values`` on nucleus and on background pixels, and whether each exists: (N,) x 4."""
    dims = (1, 2, 3)
    foreground = mask.sum(dims)
    background = mask[0].numel() - foreground
    nucleus_mean = (values * mask).sum(dims) / foreground.clamp(min=1.0)
    background_mean = (values * (1.0 - mask)).sum(dims) / background.clamp(min=1.0)
    return nucleus_mean, background_mean, foreground > 0, background > 0


# -- structure ------------------------------------------------------------------------------------
def gaussian_window(size: int = 11, sigma: float = 1.5, device: torch.device | None = None) -> torch.Tensor:
    """A normalised 1-D Gaussian of ``size`` taps (scipy's ``gaussian_filter`` at radius size // 2)."""
    offsets = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2.0
    window = torch.exp(-(offsets**2) / (2.0 * sigma**2))
    return window / window.sum()


def ssim(
    first: torch.Tensor, second: torch.Tensor, *, window_size: int = 11, sigma: float = 1.5, data_range: float = 1.0
) -> torch.Tensor:
    """Mean structural similarity (Wang et al. 2004) of two (N, C, H, W) batches of intensities in [0, 1]: in [-1, 1].

    SSIM's luminance term assumes non-negative intensities, so images must be in [0, 1]
    (:func:`to_unit_range`), not the generators' [-1, 1]. Gaussian window, population
    covariances, K1 = 0.01, K2 = 0.03, averaged over the pixels whose window lies inside the
    image: the value of ``skimage.metrics.structural_similarity(..., gaussian_weights=True,
    sigma=sigma, use_sample_covariance=False, data_range=data_range)``.
    """
    if first.shape != second.shape:
        raise ValueError(f"ssim needs images of one shape, got {tuple(first.shape)} and {tuple(second.shape)}")
    if min(first.shape[-2:]) < window_size:
        raise ValueError(f"ssim needs images of at least {window_size}x{window_size} pixels, got {tuple(first.shape)}")
    channels = first.shape[1]
    window = gaussian_window(window_size, sigma, first.device).to(first.dtype)
    horizontal = window.view(1, 1, 1, -1).repeat(5 * channels, 1, 1, 1)
    vertical = window.view(1, 1, -1, 1).repeat(5 * channels, 1, 1, 1)
    stacked = torch.cat([first, second, first * first, second * second, first * second], dim=1)
    filtered = F.conv2d(F.conv2d(stacked, horizontal, groups=5 * channels), vertical, groups=5 * channels)
    mean_1, mean_2, square_1, square_2, product = filtered.split(channels, dim=1)
    variance_1 = square_1 - mean_1**2
    variance_2 = square_2 - mean_2**2
    covariance = product - mean_1 * mean_2
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    similarity = ((2 * mean_1 * mean_2 + c1) * (2 * covariance + c2)) / (
        (mean_1**2 + mean_2**2 + c1) * (variance_1 + variance_2 + c2)
    )
    return similarity.mean()


def structure_loss(
    colorized: torch.Tensor, gray: torch.Tensor, *, window_size: int = 11, sigma: float = 1.5
) -> torch.Tensor:
    """Luminance structure lost by colouring: ``(1 - SSIM(luma(colorized), luma(gray))) / 2``, in [0, 1].

    Both images are reduced to BT.601 luma in [0, 1] first, so the colour may change freely while
    the light-dark structure (nuclei, their edges, texture) of the gray image is kept. It
    measures structure, not colour (the seed called it ``color_variation_loss``).
    """
    first, second = (to_unit_range(match_channels(image, 1)) for image in (colorized, gray))
    return (1.0 - ssim(first, second, window_size=window_size, sigma=sigma)) / 2.0


#: The seed's name of :func:`structure_loss`.
color_variation_loss = structure_loss


# -- colour ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SlicedDistribution:
    """A distribution of points (colours) as its quantiles along fixed unit directions, computed once.

    ``directions`` (P, D); ``quantiles`` (P, S), each row ascending: the values of the projections
    at the levels ``(i + 0.5) / S``, so S samples are compared with it without interpolating.
    The reference side is never recomputed; a step sorts only its own samples.
    """

    directions: torch.Tensor
    quantiles: torch.Tensor

    @classmethod
    def of(cls, points: torch.Tensor, directions: torch.Tensor, levels: int) -> SlicedDistribution:
        """The quantiles of (R, D) ``points`` at ``levels`` levels along (P, D) unit ``directions``."""
        projections = directions @ points.T.to(directions.dtype)
        projections = projections.gather(1, _argsort_rows(projections))
        position = ((torch.arange(levels, dtype=torch.float64) + 0.5) / levels * len(points) - 0.5).clamp(
            0.0, len(points) - 1.0
        )
        below = position.floor().long()
        above = (below + 1).clamp(max=len(points) - 1)
        fraction = (position - below).to(projections.dtype)
        return cls(directions, projections[:, below] * (1.0 - fraction) + projections[:, above] * fraction)

    @property
    def levels(self) -> int:
        return self.quantiles.shape[1]

    def to(self, device: torch.device | str) -> SlicedDistribution:
        return SlicedDistribution(self.directions.to(device), self.quantiles.to(device))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"directions": self.directions.cpu(), "quantiles": self.quantiles.cpu()}


def sphere_directions(count: int) -> torch.Tensor:
    """(count, 3) unit vectors spread evenly over a hemisphere (a Fibonacci lattice), float32.

    A direction and its opposite give the same 1-D Wasserstein distance, so a hemisphere covers
    every slice; an even spread needs fewer directions than random ones for the same coverage.
    """
    index = torch.arange(count, dtype=torch.float64) + 0.5
    height = 1.0 - index / count  # z in (0, 1): the upper hemisphere
    radius = torch.sqrt(1.0 - height**2)
    angle = index * torch.pi * (3.0 - 5.0**0.5)  # the golden angle
    return torch.stack([radius * torch.cos(angle), radius * torch.sin(angle), height], dim=1).float()


def sliced_wasserstein(samples: torch.Tensor, reference: SlicedDistribution) -> torch.Tensor:
    """Sliced Wasserstein-1 distance between (S, D) ``samples`` and a :class:`SlicedDistribution` of S levels.

    Along each direction the sorted projections of the samples are compared with the reference's
    quantiles; the mean gap is the 1-D W1, and the result its mean over the directions. Unlike a
    histogram distance it has a gradient wherever the two differ, however far apart they are.
    """
    if len(samples) != reference.levels:
        raise ValueError(f"{len(samples)} samples for a reference of {reference.levels} levels")
    projections = reference.directions.to(samples.dtype) @ samples.T  # (P, S)
    ordered = projections.gather(1, _argsort_rows(projections.detach()))
    return (ordered - reference.quantiles.to(samples.dtype)).abs().mean()


def _argsort_rows(values: torch.Tensor) -> torch.Tensor:
    """The order of each row of a detached (P, S) tensor. On a CPU NumPy's sort: torch 2.14's CPU sort
    took 6.7 ms for 64 rows of 2048 floats on the project's machine, NumPy's 0.19 ms; GPUs sort in torch."""
    if values.device.type == "cpu":
        return torch.from_numpy(np.argsort(values.numpy(), axis=1))
    return torch.argsort(values, dim=1)


@dataclass(frozen=True)
class ColorReference:
    """The CIELAB colours of a target domain, computed once: of its nuclear pixels, its non-nuclear
    pixels, and all of them, each a :class:`SlicedDistribution` along the same directions."""

    nuclei: SlicedDistribution
    tissue: SlicedDistribution
    whole: SlicedDistribution

    @classmethod
    def of(
        cls, nucleus_colors: torch.Tensor, tissue_colors: torch.Tensor, projections: int = 32, samples: int = 1024
    ) -> ColorReference:
        """From (R, 3) and (Q, 3) CIELAB colours; ``projections`` directions (:func:`sphere_directions`) and
        ``samples`` levels, the number of pixels per region :func:`color_loss` draws."""
        directions = sphere_directions(projections)
        return cls(
            SlicedDistribution.of(nucleus_colors, directions, samples),
            SlicedDistribution.of(tissue_colors, directions, samples),
            SlicedDistribution.of(torch.cat([nucleus_colors, tissue_colors]), directions, samples),
        )

    def to(self, device: torch.device | str) -> ColorReference:
        return ColorReference(self.nuclei.to(device), self.tissue.to(device), self.whole.to(device))

    def state_dict(self) -> dict[str, dict[str, torch.Tensor]]:
        return {
            "nuclei": self.nuclei.state_dict(),
            "tissue": self.tissue.state_dict(),
            "whole": self.whole.state_dict(),
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, dict[str, torch.Tensor]]) -> ColorReference:
        return cls(*(SlicedDistribution(**state[name]) for name in ("nuclei", "tissue", "whole")))


def color_loss(image: torch.Tensor, mask: torch.Tensor | None, reference: ColorReference) -> torch.Tensor:
    """How far the colours of ``image`` are from real H&E's, region by region: a scalar >= 0 (CIELAB units / 10).

    ``image`` (N, 3, H, W) in [-1, 1]; ``mask`` (N, 1, H, W) nucleus mask, or None to compare
    the whole image with all real colours; ``reference``: the colours of the whole target domain
    (not the current batch), computed once. The pixels inside the mask are compared with the real
    nuclei and those outside with the real non-nuclear tissue, each by :func:`sliced_wasserstein`
    on as many pixels as the reference has levels, drawn at random with replacement (only those
    are converted to CIELAB); the two regions count equally. Real H&E has pink-purple tissue
    between its nuclei, so a white or gray background is as wrong here as painted nuclei.
    """
    pixels = image.movedim(1, -1).reshape(-1, 3)
    if mask is None:
        regions = [(torch.arange(len(pixels), device=image.device), reference.whole)]
    else:
        inside = mask.reshape(-1) > 0.5
        regions = [(inside.nonzero()[:, 0], reference.nuclei), ((~inside).nonzero()[:, 0], reference.tissue)]
    drawn = [
        (where[torch.randint(len(where), (distribution.levels,), device=image.device)], distribution)
        for where, distribution in regions
        if len(where) > 0
    ]
    colors = pixels_to_lab(pixels[torch.cat([indices for indices, _ in drawn])])  # one gather for both regions
    distances = [
        sliced_wasserstein(part, distribution)
        for part, (_, distribution) in zip(colors.split([len(indices) for indices, _ in drawn]), drawn, strict=True)
    ]
    return torch.stack(distances).mean() / 10.0
