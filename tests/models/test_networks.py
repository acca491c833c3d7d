import math

import pytest
import torch
from torch import nn

from models import networks
from util.errors import OptionError


@pytest.mark.parametrize(
    ("net_g", "size"), [("resnet_9blocks", 64), ("resnet_6blocks", 64), ("unet_128", 128), ("unet_256", 256)]
)
def test_generators_map_gray_to_rgb_at_the_input_size(net_g: str, size: int) -> None:
    generator = networks.define_generator(net_g, 1, 3, ngf=4, norm="instance")
    output = generator(torch.randn(2, 1, size, size))
    assert output.shape == (2, 3, size, size)
    assert output.abs().max() <= 1.0  # tanh range


@pytest.mark.parametrize("net_g", networks.GENERATOR_TYPES)
def test_generators_keep_odd_sizes(net_g: str) -> None:
    generator = networks.define_generator(net_g, 3, 1, ngf=2, norm="none").eval()
    assert generator(torch.randn(1, 3, 37, 29)).shape == (1, 1, 37, 29)


@pytest.mark.parametrize("net_g", ["resnet_6blocks", "unet_128"])
@pytest.mark.parametrize(("height", "width"), [(1, 1), (3, 2), (4, 4), (5, 9)])
def test_generators_with_instance_norm_take_images_down_to_one_pixel(net_g: str, height: int, width: int) -> None:
    # Without padding up to the generator's minimum, instance norm meets a 1x1 bottleneck and fails.
    generator = networks.define_generator(net_g, 1, 3, ngf=2, norm="instance").eval()
    image = torch.rand(1, 1, height, width) * 2 - 1
    output = generator(image)
    assert output.shape == (1, 3, height, width) and torch.isfinite(output).all()


@pytest.mark.parametrize("net_d", networks.DISCRIMINATOR_TYPES)
@pytest.mark.parametrize("channels", [1, 3])
def test_discriminators_score_patches(net_d: str, channels: int) -> None:
    discriminator = networks.define_discriminator(net_d, channels, ndf=4, n_layers=2, norm="batch")
    scores = discriminator(torch.randn(2, channels, 64, 64))
    expected = {"basic": (2, 1, 6, 6), "n_layers": (2, 1, 14, 14), "pixel": (2, 1, 64, 64)}[net_d]
    assert scores.shape == expected


def test_norm_layers() -> None:
    assert isinstance(networks.norm_factory("batch")(8), nn.BatchNorm2d)
    instance = networks.norm_factory("instance")(8)
    assert isinstance(instance, nn.InstanceNorm2d) and not instance.affine
    assert isinstance(networks.norm_factory("none")(8), nn.Identity)
    generator = networks.define_generator("resnet_6blocks", 1, 3, ngf=4, norm="batch")
    convs = [module for module in generator.modules() if isinstance(module, nn.Conv2d)]
    assert convs[0].bias is None  # redundant before batch norm


@pytest.mark.parametrize("init_type", networks.INIT_TYPES)
def test_initialisations(init_type: str) -> None:
    torch.manual_seed(0)
    layer = networks.init_weights(nn.Sequential(nn.Conv2d(64, 64, 3)), init_type, init_gain=0.02)[0]
    weight = layer.weight.detach().flatten(1)
    assert torch.count_nonzero(layer.bias) == 0
    if init_type == "normal":
        assert abs(weight.std().item() - 0.02) < 0.002
    elif init_type == "xavier":
        assert abs(weight.std().item() - 0.02 * math.sqrt(2 / (2 * 64 * 9))) < 0.0002
    elif init_type == "kaiming":
        assert abs(weight.std().item() - math.sqrt(2 / (64 * 9))) < 0.005
    else:  # orthogonal rows, scaled by the gain
        torch.testing.assert_close(weight @ weight.T, 0.02**2 * torch.eye(64), atol=1e-6, rtol=0)


def test_unknown_names_list_valid_values() -> None:
    with pytest.raises(OptionError, match="unknown --netG 'resnet_5blocks'; valid values: resnet_9blocks"):
        networks.define_generator("resnet_5blocks", 1, 3)
    with pytest.raises(OptionError, match="--norm"):
        networks.define_discriminator("basic", 3, norm="group")
    with pytest.raises(OptionError, match="--gan_mode"):
        networks.GANLoss("hinge")
    with pytest.raises(OptionError, match="--init_type"):
        networks.init_weights(nn.Conv2d(1, 1, 1), "uniform")


def test_gan_losses() -> None:
    prediction = torch.tensor([[0.5, 1.5]])
    assert networks.GANLoss("lsgan")(prediction, True).item() == pytest.approx((0.25 + 0.25) / 2)
    assert networks.GANLoss("lsgan")(prediction, False).item() == pytest.approx((0.25 + 2.25) / 2)
    expected = torch.nn.functional.softplus(-prediction).mean().item()
    assert networks.GANLoss("vanilla")(prediction, True).item() == pytest.approx(expected)
    assert networks.GANLoss("wgangp")(prediction, True).item() == pytest.approx(-1.0)
    assert networks.GANLoss("wgangp")(prediction, False).item() == pytest.approx(1.0)


def test_gradient_penalty_vanishes_for_a_unit_gradient_critic() -> None:
    critic = nn.Sequential(nn.Flatten(), nn.Linear(12, 1, bias=False))
    with torch.no_grad():
        critic[1].weight.copy_(torch.full((1, 12), 1 / math.sqrt(12)))
    real, fake = torch.randn(4, 3, 2, 2), torch.randn(4, 3, 2, 2)
    assert networks.gradient_penalty(critic, real, fake).item() == pytest.approx(0.0, abs=1e-10)
    with torch.no_grad():
        critic[1].weight.mul_(3)
    assert networks.gradient_penalty(critic, real, fake).item() == pytest.approx(10 * 4.0)


def _learning_rates(policy: str, epochs: int, **kwargs: int) -> list[float]:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = networks.define_scheduler(optimizer, policy, **kwargs)
    rates = []
    for _ in range(epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if policy == "plateau":
            scheduler.step(1.0)  # a loss that never improves
        else:
            scheduler.step()
    return rates


def test_learning_rate_policies() -> None:
    assert _learning_rates("linear", 5, n_epochs=2, n_epochs_decay=3) == pytest.approx([1, 1, 0.75, 0.5, 0.25])
    assert _learning_rates("step", 5, n_epochs=5, n_epochs_decay=0, lr_step_size=2) == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01]
    )
    cosine = _learning_rates("cosine", 5, n_epochs=2, n_epochs_decay=2)
    assert cosine[0] == 1 and cosine[2] == pytest.approx(0.5) and cosine[4] == pytest.approx(0, abs=1e-12)
    plateau = _learning_rates("plateau", 9, n_epochs=5, n_epochs_decay=5)
    assert plateau[:7] == [1] * 7 and plateau[8] == pytest.approx(0.2)
    with pytest.raises(OptionError, match="--lr_policy"):
        _learning_rates("exponential", 1, n_epochs=1, n_epochs_decay=1)
