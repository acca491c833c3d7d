"""The seg_cycle_gan losses: values against NumPy/scikit-image references, limits, and gradients."""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.color import rgb2hsv
from skimage.metrics import structural_similarity

from models import improved_losses as losses
from models.networks import define_generator
from tests.helpers import demo_batch


@pytest.fixture(scope="module")
def crops(demo_root: Path) -> dict[str, torch.Tensor]:
    return {
        "gray": demo_batch(demo_root / "trainA", 4),
        "mask": demo_batch(demo_root / "trainA_GT", 4),
        "he": demo_batch(demo_root / "trainB", 8),
    }


def rendered(mask: torch.Tensor, channels: int = 1) -> torch.Tensor:
    """An image that is black exactly on the mask and white elsewhere."""
    return (1.0 - 2.0 * mask).expand(-1, channels, -1, -1)


# -- ground truth -------------------------------------------------------------------------------
@pytest.mark.parametrize("channels", [1, 3])
def test_gt_loss_is_minimal_for_the_mask_itself_and_maximal_for_its_inverse(
    crops: dict[str, torch.Tensor], channels: int
) -> None:
    mask = crops["mask"]
    assert losses.gt_loss(rendered(mask, channels), mask).item() < 2e-3
    assert losses.gt_loss(rendered(1.0 - mask, channels), mask).item() > 0.999
    bright = losses.gt_loss(-rendered(mask, channels), mask, polarity="bright")
    assert bright.item() < 2e-3
    sharper = losses.gt_loss(rendered(mask, channels), mask, temperature=0.02)
    assert sharper.item() < 1e-6


def test_gt_loss_weights_nuclei_and_background_equally(crops: dict[str, torch.Tensor]) -> None:
    """Missing every nucleus costs as much as darkening all background, however sparse the nuclei."""
    mask = crops["mask"]
    assert 0.05 < mask.mean() < 0.4
    white, black = torch.ones_like(mask), -torch.ones_like(mask)
    missed_all = losses.gt_loss(white, mask).item()
    assert missed_all == pytest.approx(losses.gt_loss(black, mask).item(), abs=1e-6)
    sparser = mask.clone()
    sparser[:, :, :, 64:] = 0.0  # half the nuclei gone
    assert losses.gt_loss(white, sparser).item() == pytest.approx(missed_all, abs=1e-6)
    empty = torch.zeros_like(mask)
    assert losses.gt_loss(white, empty).item() < 1e-3  # no nuclei: judged on the background alone
    assert losses.gt_loss(black, empty).item() > 0.99


def test_gt_loss_is_finite_and_bounded_for_constant_images(crops: dict[str, torch.Tensor]) -> None:
    mask = crops["mask"]
    for value in (-1.0, 0.0, 1.0):
        loss = losses.gt_loss(torch.full((4, 3, 128, 128), value), mask)
        assert torch.isfinite(loss) and 0.0 <= loss.item() <= 1.0


def test_input_threshold_is_the_midpoint_of_nucleus_and_background() -> None:
    mask = torch.zeros(2, 1, 8, 8)
    mask[:, :, :4] = 1.0
    image = torch.where(mask > 0, torch.tensor(-0.2), torch.tensor(0.6))  # darkness 0.6 and 0.2
    image[1] = 0.0  # second image: no contrast at all, darkness 0.5 everywhere
    threshold = losses.input_threshold(image, mask)
    assert threshold.tolist() == pytest.approx([0.4, 0.5])
    assert losses.input_threshold(image, torch.zeros_like(mask), fallback=0.3).tolist() == pytest.approx([0.3, 0.3])


def test_gt_reconstruction_loss_only_counts_what_the_reconstruction_loses(crops: dict[str, torch.Tensor]) -> None:
    gray, mask = crops["gray"], crops["mask"]
    assert losses.gt_reconstruction_loss(gray, gray, mask).item() == 0.0
    faded = torch.full_like(gray, gray.mean().item())  # nuclei gone
    assert losses.gt_reconstruction_loss(faded, gray, mask).item() > 0.02
    sharper = rendered(mask)  # more contrast than the input: nothing to punish
    assert losses.gt_reconstruction_loss(sharper, gray, mask).item() == 0.0


# -- structure ----------------------------------------------------------------------------------
def test_ssim_equals_scikit_image_on_real_crops(crops: dict[str, torch.Tensor]) -> None:
    gray, he_gray = crops["gray"], losses.match_channels(crops["he"][:4], 1)
    for first, second in ((gray, he_gray), (gray, gray.flip(-1)), (he_gray, he_gray * 0.5)):
        for index in range(len(first)):
            ours = losses.ssim(first[index : index + 1], second[index : index + 1]).item()
            reference = structural_similarity(
                first[index, 0].numpy(),
                second[index, 0].numpy(),
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
                data_range=2.0,
            )
            assert ours == pytest.approx(reference, abs=1e-3)


def test_color_variation_loss_ignores_colour_but_not_structure(crops: dict[str, torch.Tensor]) -> None:
    gray = crops["gray"]
    assert losses.color_variation_loss(gray.expand(-1, 3, -1, -1), gray).item() == pytest.approx(0.0, abs=1e-5)
    scrambled = gray.flip(-1).flip(-2)
    assert losses.color_variation_loss(scrambled, gray).item() > 0.25
    for value in (-1.0, 0.5):
        constant = losses.color_variation_loss(torch.full((2, 3, 32, 32), value), torch.full((2, 1, 32, 32), value))
        assert torch.isfinite(constant) and constant.item() == pytest.approx(0.0, abs=1e-6)


def test_ssim_refuses_images_smaller_than_its_window() -> None:
    with pytest.raises(ValueError, match="at least 11x11"):
        losses.ssim(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))


# -- colour -------------------------------------------------------------------------------------
def numpy_hard_histogram(
    rgb: torch.Tensor, hue_bins: int = 36, saturation_bins: int = 8, value_bins: int = 4
) -> np.ndarray:
    """Reference: scikit-image HSV, hard bins, chroma-weighted, plus one achromatic bin per value bin."""
    pixels = ((rgb.permute(0, 2, 3, 1).reshape(-1, 1, 3).double().numpy()) + 1.0) / 2.0
    hsv = rgb2hsv(pixels)[:, 0]
    chroma = pixels[:, 0].max(axis=1) - pixels[:, 0].min(axis=1)
    hue_index = np.minimum((hsv[:, 0] * hue_bins).astype(int), hue_bins - 1)
    saturation_index = np.minimum((hsv[:, 1] * saturation_bins).astype(int), saturation_bins - 1)
    value_index = np.minimum((hsv[:, 2] * value_bins).astype(int), value_bins - 1)
    chromatic = np.zeros((hue_bins, saturation_bins, value_bins))
    np.add.at(chromatic, (hue_index, saturation_index, value_index), chroma)
    achromatic = np.zeros(value_bins)
    np.add.at(achromatic, value_index, 1.0 - chroma)
    return np.concatenate([chromatic.ravel(), achromatic]) / len(chroma)


def test_hsv_loss_with_narrow_kernel_matches_a_hard_histogram(crops: dict[str, torch.Tensor]) -> None:
    he = crops["he"]
    shifted = (he[4:, [2, 0, 1]] * 0.8 + 0.1).contiguous()  # another palette, same structure
    for value_bins in (1, 4):
        for first, second in ((he[:4], he[4:]), (he[:4], shifted)):
            p, q = (
                numpy_hard_histogram(first, value_bins=value_bins),
                numpy_hard_histogram(second, value_bins=value_bins),
            )
            reference = 1.0 - np.sqrt(p * q).sum()
            ours = losses.hsv_loss(first, second, value_bins=value_bins, bandwidth=1e-3).item()
            assert ours == pytest.approx(reference, abs=1e-3)
    histogram = losses.soft_hsv_histogram(he, bandwidth=1e-3)
    assert histogram.sum().item() == pytest.approx(1.0, abs=1e-4)
    assert np.abs(histogram.numpy() - numpy_hard_histogram(he)).max() < 2e-3


def test_hsv_loss_is_zero_for_identical_batches_and_grows_with_colour_change(crops: dict[str, torch.Tensor]) -> None:
    he = crops["he"]
    assert losses.hsv_loss(he, he).item() < 1e-4
    other_crops = losses.hsv_loss(he[:4], he[4:]).item()
    gray = losses.hsv_loss(losses.match_channels(losses.match_channels(he, 1), 3), he).item()
    assert other_crops < 0.05 < gray <= 1.0  # same stain, other crops: close; no colour at all: far


def solid(hue_degrees: float, saturation: float = 0.8, value: float = 0.8) -> torch.Tensor:
    """A 1x3x16x16 image of one HSV colour, in [-1, 1]."""
    sector, fraction = divmod(hue_degrees / 60.0, 1.0)
    chroma = saturation * value
    low, rising, falling = value - chroma, value - chroma + chroma * fraction, value - chroma * fraction
    rgb = [
        (value, rising, low),
        (falling, value, low),
        (low, value, rising),
        (low, falling, value),
        (rising, low, value),
        (value, low, falling),
    ][int(sector) % 6]
    return (torch.tensor(rgb).view(1, 3, 1, 1) * 2.0 - 1.0).expand(1, 3, 16, 16)


def test_hue_is_circular() -> None:
    """357 and 3 degrees are as close as 177 and 183: H&E hues sit at the 0/360 wrap."""
    across_wrap = losses.hsv_loss(solid(357.0), solid(3.0)).item()
    inside = losses.hsv_loss(solid(177.0), solid(183.0)).item()
    far = losses.hsv_loss(solid(357.0), solid(177.0)).item()
    assert across_wrap == pytest.approx(inside, abs=2e-3)
    assert across_wrap < 0.5 * far


def test_hsv_gradient_stays_bounded_on_gray_and_constant_images(crops: dict[str, torch.Tensor]) -> None:
    he = crops["he"]
    near_gray = (torch.zeros(2, 3, 32, 32) + 1e-4 * torch.randn(2, 3, 32, 32)).requires_grad_()
    loss = losses.hsv_loss(near_gray, he)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(near_gray.grad).all()
    assert near_gray.grad.abs().max() < 1.0
    for value in (-1.0, 0.0, 1.0):
        constant = torch.full((2, 3, 16, 16), value, requires_grad=True)
        loss = losses.hsv_loss(constant, he)
        loss.backward()
        assert torch.isfinite(loss) and 0.0 <= loss.item() <= 1.0 and torch.isfinite(constant.grad).all()


# -- every loss trains the generator ------------------------------------------------------------
LOSSES: dict[str, Callable[[torch.Tensor, dict[str, torch.Tensor]], torch.Tensor]] = {
    "gt": lambda fake, crops: losses.gt_loss(fake, crops["mask"]),
    "gt_rec": lambda fake, crops: losses.gt_reconstruction_loss(
        losses.match_channels(fake, 1), crops["gray"], crops["mask"]
    ),
    "cv": lambda fake, crops: losses.color_variation_loss(fake, crops["gray"]),
    "hsv": lambda fake, crops: losses.hsv_loss(fake, crops["he"]),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_each_loss_alone_reaches_the_generator_parameters(crops: dict[str, torch.Tensor], name: str) -> None:
    torch.manual_seed(0)
    generator = define_generator("resnet_6blocks", 1, 3, ngf=4, norm="instance", use_dropout=False)
    fake = generator(crops["gray"][:2, :, :64, :64])
    sliced = {key: value[:2, :, :64, :64] for key, value in crops.items()}
    loss = LOSSES[name](fake, sliced)
    assert loss.ndim == 0 and 0.0 <= loss.item() <= 1.0
    loss.backward()
    gradients = [parameter.grad for parameter in generator.parameters()]
    assert all(gradient is not None and torch.isfinite(gradient).all() for gradient in gradients)
    assert sum(gradient.abs().sum().item() for gradient in gradients) > 0.0


def test_histogram_refuses_a_bandwidth_outside_one_bin(crops: dict[str, torch.Tensor]) -> None:
    for bandwidth in (0.0, 1.5):
        with pytest.raises(ValueError, match=r"bandwidth must be in \(0, 1\]"):
            losses.soft_hsv_histogram(crops["he"], bandwidth=bandwidth)
