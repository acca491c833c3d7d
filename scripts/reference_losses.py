"""NumPy/OpenCV versions of the three ``seg_cycle_gan`` losses as a published reference computed them.

Used ONLY as a speed and behaviour baseline by ``scripts/benchmark.py`` and its tests; no
model imports this module. Each function takes torch tensors (N, C, H, W) in [-1, 1], converts
them to NumPy on the CPU and returns a plain float: there is no path back into the graph, so
these losses carry no gradient and cannot train a generator. That is the reason
:mod:`models.improved_losses` exists; this module keeps the old behaviour measurable.

Written from a description of the published version, not copied from it:

- HSV: per image, a 256 x 256 x 256-bin histogram of H, S and V for each image, compared by
  correlation; the loop keeps only the last image's value, as the published code did. Two
  variants: OpenCV's ``calcHist`` (the fastest form of that approach) and NumPy's
  ``histogramdd`` (about 0.3 s per histogram, the cost the published version was measured at).
- colour variation: per image, SSIM (scikit-image, Gaussian window) between the gray of the
  colourised image and the gray input, averaged over the batch, on [-1, 1] images with a data
  range of 2 (where SSIM's luminance term changes sign across mid-gray; ours uses [0, 1]).
- ground truth: per image, a hard threshold of darkness (1 - luminance) at 0.5 scored by a
  clipped binary cross-entropy against the mask, averaged over the batch.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from skimage.metrics import structural_similarity

#: Bins per HSV channel of the reference histogram (256**3 bins, 64 MiB of float32 per histogram).
HISTOGRAM_BINS = 256
#: Probabilities are clipped to [EPSILON, 1 - EPSILON] before the logarithm of the cross-entropy.
EPSILON = 1e-7


def _to_numpy(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) tensor in [-1, 1] -> (N, H, W, C) float32 array in [-1, 1], detached, on the CPU."""
    return images.detach().float().cpu().permute(0, 2, 3, 1).contiguous().numpy()


def _to_uint8(image: np.ndarray) -> np.ndarray:
    """(H, W, C) in [-1, 1] -> uint8 [0, 255], the way images are saved."""
    return np.round((np.clip(image, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)


def _gray(image: np.ndarray) -> np.ndarray:
    """(H, W, 1 or 3) -> (H, W) luma (OpenCV's BT.601 weights, the same as the project's)."""
    if image.shape[2] == 1:
        return image[:, :, 0]
    return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)


def _hsv_histogram(rgb_uint8: np.ndarray) -> np.ndarray:
    """The normalised 256 x 256 x 256 HSV histogram of one (H, W, 3) uint8 RGB image."""
    hsv = cv2.cvtColor(rgb_uint8, cv2.COLOR_RGB2HSV)
    bins = [HISTOGRAM_BINS] * 3
    histogram = cv2.calcHist([hsv], [0, 1, 2], None, bins, [0, 256, 0, 256, 0, 256])
    return cv2.normalize(histogram, histogram)


def reference_hsv_loss(generated_rgb: torch.Tensor, real_rgb: torch.Tensor) -> float:
    """``1 - (correlation + 1) / 2`` of the full HSV histograms, of the LAST image pair only.

    0 for identical colour distributions, 0.5 for uncorrelated ones. The loop over the batch
    overwrites its result each time, as the published version did, so every image but the last
    costs time and counts for nothing.
    """
    generated, real = _to_numpy(generated_rgb), _to_numpy(real_rgb)
    loss = 0.0
    for generated_image, real_image in zip(generated, real, strict=True):
        correlation = cv2.compareHist(
            _hsv_histogram(_to_uint8(generated_image)), _hsv_histogram(_to_uint8(real_image)), cv2.HISTCMP_CORREL
        )
        loss = 1.0 - (correlation + 1.0) / 2.0
    return float(loss)


def reference_hsv_loss_numpy(generated_rgb: torch.Tensor, real_rgb: torch.Tensor) -> float:
    """:func:`reference_hsv_loss` with NumPy histograms (``histogramdd``) and ``corrcoef``, last pair only."""
    generated, real = _to_numpy(generated_rgb), _to_numpy(real_rgb)
    loss = 0.0
    for generated_image, real_image in zip(generated, real, strict=True):
        histograms = [_numpy_hsv_histogram(_to_uint8(image)).ravel() for image in (generated_image, real_image)]
        correlation = np.corrcoef(histograms[0], histograms[1])[0, 1]
        loss = 1.0 - (correlation + 1.0) / 2.0
    return float(loss)


def _numpy_hsv_histogram(rgb_uint8: np.ndarray) -> np.ndarray:
    """The normalised 256 x 256 x 256 HSV histogram of one (H, W, 3) uint8 RGB image, in NumPy."""
    hsv = cv2.cvtColor(rgb_uint8, cv2.COLOR_RGB2HSV).reshape(-1, 3)
    histogram, _ = np.histogramdd(hsv, bins=(HISTOGRAM_BINS,) * 3, range=((0, 256),) * 3)
    return histogram / histogram.sum()


def reference_color_variation_loss(colorized: torch.Tensor, gray: torch.Tensor) -> float:
    """``1 - (mean SSIM + 1) / 2`` of gray(colorized) against gray, SSIM per image by scikit-image.

    Gaussian window of sigma 1.5, population covariances, and the images as they come, in
    [-1, 1] with a data range of 2: the seed's form. :func:`models.improved_losses.structure_loss`
    computes the same SSIM on [0, 1], where it means what it should.
    """
    colorized_images, gray_images = _to_numpy(colorized), _to_numpy(gray)
    similarities = [
        structural_similarity(
            _gray(colorized_image),
            _gray(gray_image),
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=2.0,
        )
        for colorized_image, gray_image in zip(colorized_images, gray_images, strict=True)
    ]
    return float(1.0 - (np.mean(similarities) + 1.0) / 2.0)


def reference_gt_loss(image: torch.Tensor, mask: torch.Tensor) -> float:
    """Binary cross-entropy of the hard nucleus mask ``darkness > 0.5`` against ``mask``, averaged over the batch.

    The hard threshold has no slope, so even with autograd this could not guide the generator;
    the clipping keeps a wrong pixel at ``-log(EPSILON)`` (about 16) instead of infinity.
    """
    images, masks = _to_numpy(image), _to_numpy(mask)
    losses = []
    for single_image, single_mask in zip(images, masks, strict=True):
        darkness = 1.0 - (_gray(single_image) + 1.0) / 2.0
        prediction = np.clip((darkness > 0.5).astype(np.float64), EPSILON, 1.0 - EPSILON)
        target = (single_mask[:, :, 0] > 0.5).astype(np.float64)
        losses.append(-np.mean(target * np.log(prediction) + (1.0 - target) * np.log(1.0 - prediction)))
    return float(np.mean(losses))
