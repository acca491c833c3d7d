"""The seg_cycle_gan losses: values against NumPy/scikit-image references, signs and minima on wrong images."""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.color import rgb2lab
from skimage.metrics import structural_similarity

from models import improved_losses as losses
from models.networks import define_generator
from tests.helpers import demo_arrays, demo_batch
from util.color import match_channels
from util.stain import StainModel, estimate_stain_model, sample_pixels

HEMATOXYLIN = (70, 40, 120)  # dark purple: a real nucleus colour
TISSUE = (225, 160, 200)  # pink


@pytest.fixture(scope="module")
def crops(demo_root: Path) -> dict[str, torch.Tensor]:
    return {
        "gray": demo_batch(demo_root / "trainA", 4),
        "mask": demo_batch(demo_root / "trainA_GT", 4),
        "he": demo_batch(demo_root / "trainB", 8),
    }


@pytest.fixture(scope="module")
def stain(demo_root: Path) -> StainModel:
    return estimate_stain_model(list(demo_arrays(demo_root / "trainB")), "demo trainB")


@pytest.fixture(scope="module")
def real_colors(demo_root: Path, stain: StainModel) -> losses.ColorReference:
    """The CIELAB colours of real nuclear and non-nuclear pixels, as seg_cycle_gan calibrates them."""
    pixels = sample_pixels(list(demo_arrays(demo_root / "trainB")), 50_000)
    lab = torch.from_numpy(rgb2lab(pixels[:, None])[:, 0].astype(np.float32))
    nuclear = torch.from_numpy(stain.nuclear(pixels))
    return losses.ColorReference.of(lab[nuclear], lab[~nuclear])


def painted(mask: torch.Tensor, nucleus: tuple[int, int, int], background: tuple[int, int, int]) -> torch.Tensor:
    """(N, 3, H, W) in [-1, 1]: ``nucleus`` colour on the mask, ``background`` elsewhere."""
    colour = {key: torch.tensor(value, dtype=torch.float32).view(1, 3, 1, 1) / 127.5 - 1.0
              for key, value in (("nucleus", nucleus), ("background", background))}  # fmt: skip
    return torch.where(mask > 0.5, colour["nucleus"], colour["background"])


def gt(image: torch.Tensor, mask: torch.Tensor, stain: StainModel, **kwargs: float) -> torch.Tensor:
    inverse = torch.as_tensor(stain.inverse, dtype=torch.float32)
    options = {"threshold": stain.nucleus_threshold} | kwargs
    return losses.gt_loss(image, mask, stain_inverse=inverse, **options)


# -- colour spaces --------------------------------------------------------------------------------
def test_optical_density_and_nucleus_score_equal_the_evaluation_s(
    crops: dict[str, torch.Tensor], stain: StainModel
) -> None:
    he = crops["he"][:2]
    pixels = np.rint((he.permute(0, 2, 3, 1).numpy() + 1.0) * 127.5).astype(np.uint8)
    ours = losses.nucleus_score(torch.from_numpy(pixels).permute(0, 3, 1, 2) / 127.5 - 1.0,
                                torch.as_tensor(stain.inverse, dtype=torch.float32))  # fmt: skip
    np.testing.assert_allclose(ours[:, 0].numpy(), stain.nucleus_score(pixels), atol=1e-4)


def test_lab_equals_scikit_image(crops: dict[str, torch.Tensor]) -> None:
    rgb = torch.cat([crops["he"][:2], torch.rand(1, 3, 128, 128) * 2 - 1, -torch.ones(1, 3, 128, 128)])
    expected = rgb2lab(((rgb.permute(0, 2, 3, 1).double() + 1) / 2).numpy())
    np.testing.assert_allclose(losses.pixels_to_lab(rgb.permute(0, 2, 3, 1)).numpy(), expected, atol=2e-3)


# -- ground truth ---------------------------------------------------------------------------------
def test_gt_loss_is_lowest_for_hematoxylin_nuclei_on_the_mask(
    crops: dict[str, torch.Tensor], stain: StainModel
) -> None:
    mask = crops["mask"]
    right = gt(painted(mask, HEMATOXYLIN, TISSUE), mask, stain).item()
    assert right < 0.05
    for wrong_nucleus in ((20, 80, 20), (150, 50, 120), (235, 170, 205)):  # dark green, dark pink, pale pink
        assert gt(painted(mask, wrong_nucleus, TISSUE), mask, stain).item() > 10 * right, wrong_nucleus
    inverted = gt(painted(mask, TISSUE, HEMATOXYLIN), mask, stain).item()
    assert inverted > 5.0  # confidently wrong everywhere: large, not saturated at 1
    assert gt(painted(mask, HEMATOXYLIN, TISSUE), mask, stain, temperature=0.02).item() < right


def test_gt_gradient_darkens_nuclei_and_lightens_background_of_an_inverted_image(
    crops: dict[str, torch.Tensor], stain: StainModel
) -> None:
    """Light nuclei on a dark background: every wrong pixel is pushed the right way, and strongly."""
    mask = crops["mask"]
    wrong = painted(mask, TISSUE, HEMATOXYLIN).requires_grad_()
    gt(wrong, mask, stain).backward()
    brighter = wrong.grad.sum(dim=1, keepdim=True)  # d loss / d (all channels brighter)
    nuclei, background = mask.expand_as(brighter) > 0.5, mask.expand_as(brighter) < 0.5
    assert (brighter[nuclei] > 0).float().mean() > 0.99  # brightening a nucleus costs: darken it
    assert (brighter[background] < 0).float().mean() > 0.99  # brightening the background helps
    # No saturating wrapper: the gradient of a fully wrong image is not smaller than a nearly right one's.
    nearly = painted(mask, (110, 80, 150), (200, 140, 180)).requires_grad_()
    gt(nearly, mask, stain).backward()
    assert wrong.grad.abs().mean() > 0.5 * nearly.grad.abs().mean()


def test_gt_loss_weights_nuclei_and_background_equally(crops: dict[str, torch.Tensor], stain: StainModel) -> None:
    """Missing every nucleus costs as much as staining all background, however sparse the nuclei."""
    mask = crops["mask"]
    assert 0.05 < mask.mean() < 0.4
    pink, purple = painted(mask, TISSUE, TISSUE), painted(mask, HEMATOXYLIN, HEMATOXYLIN)
    missed_all = gt(pink, mask, stain).item()
    sparser = mask.clone()
    sparser[:, :, :, 64:] = 0.0  # half the nuclei gone
    assert gt(pink, sparser, stain).item() == pytest.approx(missed_all, rel=1e-5)
    empty = torch.zeros_like(mask)
    assert gt(pink, empty, stain).item() < 0.05 < gt(purple, empty, stain).item()


def test_border_group_punishes_nuclei_that_merge(stain: StainModel) -> None:
    """Two nuclei 4 px apart painted as one blob: the few pixels between them matter only with a border group."""
    mask = torch.zeros(1, 1, 32, 32)
    mask[:, :, 8:24, 4:14] = mask[:, :, 8:24, 18:28] = 1.0
    blob = torch.zeros_like(mask)
    blob[:, :, 8:24, 4:28] = 1.0
    separate, merged = painted(mask, HEMATOXYLIN, TISSUE), painted(blob, HEMATOXYLIN, TISSUE)
    plain = gt(merged, mask, stain).item() - gt(separate, mask, stain).item()
    with_border = gt(merged, mask, stain, border=2).item() - gt(separate, mask, stain, border=2).item()
    assert with_border > 1.8 * plain > 0


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
    assert losses.gt_reconstruction_loss(faded, gray, mask).item() > 0.5
    sharper = 1.0 - 2.0 * mask  # black nuclei on white: more contrast than the input
    assert losses.gt_reconstruction_loss(sharper, gray, mask).item() == 0.0


# -- structure ------------------------------------------------------------------------------------
def test_ssim_equals_scikit_image_on_unit_range_crops(crops: dict[str, torch.Tensor]) -> None:
    gray, he_gray = losses.to_unit_range(crops["gray"]), losses.to_unit_range(match_channels(crops["he"][:4], 1))
    for first, second in ((gray, he_gray), (gray, gray.flip(-1)), (he_gray, he_gray * 0.5)):
        for index in range(len(first)):
            ours = losses.ssim(first[index : index + 1], second[index : index + 1]).item()
            reference = structural_similarity(
                first[index, 0].numpy(), second[index, 0].numpy(),
                gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0,
            )  # fmt: skip
            assert ours == pytest.approx(reference, abs=1e-3)


def test_ssim_does_not_change_sign_across_mid_gray() -> None:
    """Flat 0.45 against flat 0.55: nearly the same image, SSIM +0.98 (on [-1, 1] it was -0.96)."""
    first, second = torch.full((1, 1, 16, 16), 0.45), torch.full((1, 1, 16, 16), 0.55)
    assert losses.ssim(first, second).item() == pytest.approx(0.980, abs=2e-3)
    assert losses.structure_loss(first * 2 - 1, second * 2 - 1).item() < 0.02


def test_structure_loss_ignores_colour_but_not_structure(crops: dict[str, torch.Tensor]) -> None:
    gray = crops["gray"]
    assert losses.structure_loss(gray.expand(-1, 3, -1, -1), gray).item() == pytest.approx(0.0, abs=1e-5)
    inverted = -gray
    assert losses.structure_loss(inverted, gray).item() > 0.4
    assert losses.color_variation_loss is losses.structure_loss  # the seed's name
    for value in (-1.0, 0.5):
        constant = losses.structure_loss(torch.full((2, 3, 32, 32), value), torch.full((2, 1, 32, 32), value))
        assert torch.isfinite(constant) and constant.item() == pytest.approx(0.0, abs=1e-6)


def test_structure_gradient_moves_an_inverted_image_towards_its_input(crops: dict[str, torch.Tensor]) -> None:
    gray = crops["gray"]
    wrong = (-gray).expand(-1, 3, -1, -1).clone().requires_grad_()
    losses.structure_loss(wrong, gray).backward()
    step = -wrong.grad.sum(dim=1, keepdim=True)  # the descent direction, in luminance
    centred_input = gray - gray.mean(dim=(2, 3), keepdim=True)
    assert (step * centred_input).sum() > 0  # it brightens what is bright in the input


def test_ssim_refuses_images_smaller_than_its_window() -> None:
    with pytest.raises(ValueError, match="at least 11x11"):
        losses.ssim(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))


# -- colour ---------------------------------------------------------------------------------------
def test_sliced_wasserstein_of_a_shift_is_its_mean_projection() -> None:
    torch.manual_seed(0)
    points = torch.randn(40_000, 3)
    reference = losses.SlicedDistribution.of(points, losses.sphere_directions(256), levels=2048)
    assert losses.sliced_wasserstein(points[:2048], reference).item() < 0.08  # a sample of the same distribution
    # |<(10, 0, 0), u>| averaged over unit u spread evenly is 10 * E|u_x| = 5.
    shifted = points[:2048] + torch.tensor([10.0, 0.0, 0.0])
    assert losses.sliced_wasserstein(shifted, reference).item() == pytest.approx(5.0, rel=0.05)
    with pytest.raises(ValueError, match="2047 samples for a reference of 2048 levels"):
        losses.sliced_wasserstein(points[:2047], reference)


def test_sphere_directions_are_unit_and_spread_evenly() -> None:
    directions = losses.sphere_directions(32)
    assert directions.shape == (32, 3) and torch.allclose(directions.norm(dim=1), torch.ones(32))
    assert (directions[:, 2] > 0).all()  # one hemisphere: u and -u slice alike
    cosines = (directions @ directions.T).abs() - torch.eye(32)
    assert cosines.max() < 0.99  # no two directions (or opposites) the same
    assert directions.abs().mean(dim=0).min() > 0.3  # every axis is seen


def test_sliced_wasserstein_sorts_alike_on_every_device_path() -> None:
    """NumPy orders the rows on a CPU, torch elsewhere: both give torch.sort's values."""
    values = torch.randn(8, 300)
    order = losses._argsort_rows(values)
    assert torch.equal(values.gather(1, order), torch.sort(values, dim=1).values)


def test_color_loss_is_lowest_for_real_colours_in_the_right_regions(
    crops: dict[str, torch.Tensor], real_colors: losses.ColorReference
) -> None:
    mask = crops["mask"]
    torch.manual_seed(0)

    def loss(image: torch.Tensor) -> float:
        return losses.color_loss(image, mask, real_colors).item()

    right = loss(painted(mask, HEMATOXYLIN, TISSUE))
    swapped = loss(painted(mask, TISSUE, HEMATOXYLIN))
    gray = loss(match_channels(crops["gray"], 3))
    white_background = loss(painted(mask, HEMATOXYLIN, (255, 255, 255)))
    assert right < 0.75 * min(swapped, gray, white_background)


def test_color_loss_has_a_gradient_everywhere_and_colours_gray_pixels(
    crops: dict[str, torch.Tensor], real_colors: losses.ColorReference
) -> None:
    """Optimised alone from gray pixels, the colours reach the chroma of real H&E (a histogram loss stalled)."""
    mask = crops["mask"][:2]
    torch.manual_seed(0)
    image = (match_channels(crops["gray"][:2], 3) + 0.01 * torch.randn(2, 3, 128, 128)).clone().requires_grad_()
    optimizer = torch.optim.Adam([image], lr=0.03)
    first = None
    for _ in range(150):
        optimizer.zero_grad()
        loss = losses.color_loss(image, mask, real_colors)
        loss.backward()
        first = first if first is not None else (loss.item(), image.grad.abs().gt(0).float().mean().item())
        optimizer.step()
    assert first[1] > 0.05  # gray pixels get a gradient
    unit = losses.to_unit_range(image.detach())
    chroma = (unit.max(dim=1).values - unit.min(dim=1).values).mean().item()
    assert chroma > 0.12 and loss.item() < 0.3 * first[0]


# -- every loss trains the generator --------------------------------------------------------------
LOSSES: dict[str, Callable[[torch.Tensor, dict], torch.Tensor]] = {
    "gt": lambda fake, data: gt(fake, data["mask"], data["stain"]),
    "gt_rec": lambda fake, data: losses.gt_reconstruction_loss(match_channels(fake, 1), data["gray"], data["mask"]),
    "structure": lambda fake, data: losses.structure_loss(fake, data["gray"]),
    "color": lambda fake, data: losses.color_loss(fake, data["mask"], data["colors"]),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_each_loss_alone_reaches_the_generator_parameters(
    crops: dict[str, torch.Tensor], stain: StainModel, real_colors: losses.ColorReference, name: str
) -> None:
    torch.manual_seed(0)
    generator = define_generator("resnet_6blocks", 1, 3, ngf=4, norm="instance", use_dropout=False)
    fake = generator(crops["gray"][:2, :, :64, :64])
    data = {key: value[:2, :, :64, :64] for key, value in crops.items()} | {"stain": stain, "colors": real_colors}
    loss = LOSSES[name](fake, data)
    assert loss.ndim == 0 and loss.item() >= 0.0 and torch.isfinite(loss)
    loss.backward()
    gradients = [parameter.grad for parameter in generator.parameters()]
    assert all(gradient is not None and torch.isfinite(gradient).all() for gradient in gradients)
    assert sum(gradient.abs().sum().item() for gradient in gradients) > 0.0
