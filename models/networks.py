"""Network building blocks: generators, discriminators, normalization, initialisation, GAN losses
and learning-rate schedules. Pure PyTorch, no options object: every builder takes plain arguments.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim import Optimizer, lr_scheduler

from util.errors import OptionError

NORM_TYPES = ("batch", "instance", "none")
INIT_TYPES = ("normal", "xavier", "kaiming", "orthogonal")
GENERATOR_TYPES = ("resnet_9blocks", "resnet_6blocks", "unet_128", "unet_256")
DISCRIMINATOR_TYPES = ("basic", "n_layers", "pixel")
GAN_MODES = ("lsgan", "vanilla", "wgangp")
LR_POLICIES = ("linear", "step", "plateau", "cosine")

NormFactory = Callable[[int], nn.Module]


def _check_choice(kind: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise OptionError(f"unknown {kind} {value!r}; valid values: {', '.join(valid)}")


def norm_factory(norm: str) -> NormFactory:
    """A function ``channels -> normalization layer`` for ``--norm``.

    ``instance`` normalises each image on its own (no learned scale, no running statistics):
    the usual choice for CycleGAN with batch size 1. ``batch`` learns a scale and keeps running
    statistics. ``none`` is the identity.
    """
    _check_choice("--norm", norm, NORM_TYPES)
    if norm == "batch":
        return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
    if norm == "instance":
        return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
    return lambda channels: nn.Identity()


# ----------------------------------------------------------------------------------------------
# Generators
# ----------------------------------------------------------------------------------------------
class Generator(nn.Module):
    """Base of the generators: accepts any image size, down to a single pixel.

    Convolution stacks need sizes divisible by ``2 ** downsamplings``, and at least
    ``minimum_size`` (instance norm needs more than one value per channel at the bottleneck).
    Instead of asking users to crop, the input is reflect-padded (replicated where it is too
    small to reflect) up to the next size that fits and the output cropped back, so the output
    always has exactly the input's height and width.
    """

    size_multiple = 1
    minimum_size = 1
    # Lets torch.jit.script read them (scripts/export_model.py).
    __constants__ = ("size_multiple", "minimum_size")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        return self.run_body(self.pad_to_fit(images))[..., :height, :width]

    def pad_to_fit(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` padded at the bottom and right to the next size the network works on."""
        height, width = images.shape[-2:]
        pad_bottom = max(-height % self.size_multiple, self.minimum_size - height)
        pad_right = max(-width % self.size_multiple, self.minimum_size - width)
        # Reflect as far as the image allows, replicate the rest. No branch on the size, and no shortcut
        # for sizes that need no padding: one path exports (ONNX) and runs for every size.
        reflect_bottom, reflect_right = min(pad_bottom, height - 1), min(pad_right, width - 1)
        padded = F.pad(images, (0, reflect_right, 0, reflect_bottom), mode="reflect")
        return F.pad(padded, (0, pad_right - reflect_right, 0, pad_bottom - reflect_bottom), mode="replicate")

    def run_body(self, images: torch.Tensor) -> torch.Tensor:
        """The network proper, on images whose sizes are multiples of ``size_multiple``."""
        raise NotImplementedError


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with reflection padding, added to the input (He et al. 2016)."""

    def __init__(self, channels: int, norm: NormFactory, use_bias: bool, use_dropout: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, kernel_size=3, bias=use_bias),
            norm(channels),
            nn.ReLU(inplace=True),
        ]
        if use_dropout:
            layers.append(nn.Dropout(0.5))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, kernel_size=3, bias=use_bias), norm(channels)]
        self.residual = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.residual(x)


class ResnetGenerator(Generator):
    """Encoder, residual blocks, decoder (Johnson et al. 2016), the generator of CycleGAN.

    Two stride-2 convolutions shrink the image 4x; ``n_blocks`` residual blocks transform it;
    two transposed convolutions bring it back; tanh maps to [-1, 1].

    The modules of ``body`` in order, the indices :meth:`encode` takes (CUT's PatchNCE reads them)::

        0       reflection pad of 3 (the padded input pixels)     input_nc channels, H + 6
        1-3     7x7 convolution, norm, ReLU                       ngf,     H
        4-6     stride-2 convolution, norm, ReLU                  2 ngf,   H / 2
        7-9     stride-2 convolution, norm, ReLU                  4 ngf,   H / 4
        10-     the residual blocks, one index each               4 ngf,   H / 4
        then the decoder (not an encoder layer)
    """

    size_multiple = 4
    minimum_size = 8  # a 2x2 bottleneck: instance norm of one value per channel is undefined
    #: Modules of ``body`` before the first residual block.
    encoder_stem = 10

    def __init__(
        self,
        input_nc: int,
        output_nc: int,
        ngf: int = 64,
        norm: str = "instance",
        use_dropout: bool = False,
        n_blocks: int = 9,
    ) -> None:
        super().__init__()
        norm_layer = norm_factory(norm)
        use_bias = norm != "batch"  # batch norm's shift makes a conv bias redundant
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(input_nc, ngf, kernel_size=7, bias=use_bias),
            norm_layer(ngf),
            nn.ReLU(inplace=True),
        ]
        channels = ngf
        for _ in range(2):
            layers += [
                nn.Conv2d(channels, channels * 2, kernel_size=3, stride=2, padding=1, bias=use_bias),
                norm_layer(channels * 2),
                nn.ReLU(inplace=True),
            ]
            channels *= 2
        layers += [ResidualBlock(channels, norm_layer, use_bias, use_dropout) for _ in range(n_blocks)]
        for _ in range(2):
            layers += [
                nn.ConvTranspose2d(
                    channels, channels // 2, kernel_size=3, stride=2, padding=1, output_padding=1, bias=use_bias
                ),
                norm_layer(channels // 2),
                nn.ReLU(inplace=True),
            ]
            channels //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(channels, output_nc, kernel_size=7), nn.Tanh()]
        self.body = nn.Sequential(*layers)
        self.input_nc = input_nc
        self.n_blocks = n_blocks

    def run_body(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)

    def encoder_layer_count(self) -> int:
        """How many modules of ``body`` :meth:`encode` can read: the stem and the residual blocks (0 .. count - 1)."""
        return self.encoder_stem + self.n_blocks

    def encode(self, images: torch.Tensor, layers: Sequence[int]) -> list[torch.Tensor]:
        """The outputs of the ``body`` modules at ``layers`` (indices, see the class docstring) for ``images``
        (N, input_nc, H, W), padded as :meth:`forward` pads them: one (N, C, h, w) map per index, in
        ascending order of index. Runs only as far as the deepest index; adds no module, so checkpoints
        are unchanged."""
        wanted = sorted(set(layers))
        if not wanted or wanted[0] < 0 or wanted[-1] >= self.encoder_layer_count():
            raise ValueError(f"encoder layers must lie in 0..{self.encoder_layer_count() - 1}, got {list(layers)}")
        features = []
        x = self.pad_to_fit(images)
        for index in range(wanted[-1] + 1):
            x = self.body[index](x)
            if index in wanted:
                # The next module may be an in-place ReLU, which would overwrite the kept map.
                follower = self.body[index + 1]
                features.append(x.clone() if getattr(follower, "inplace", False) else x)
        return features

    def feature_shapes(self, layers: Sequence[int], height: int, width: int) -> list[tuple[int, int, int]]:
        """(channels, h, w) of :meth:`encode`'s maps for an image of ``height`` x ``width``: a dry run on a blank
        image in eval mode, without gradients (batch norm's running statistics stay as they are)."""
        was_training = self.training
        self.eval()
        try:
            parameter = next(self.parameters())
            blank = parameter.new_zeros(1, self.input_nc, height, width)
            with torch.no_grad():
                return [(int(f.shape[1]), int(f.shape[2]), int(f.shape[3])) for f in self.encode(blank, layers)]
        finally:
            self.train(was_training)


class UnetGenerator(Generator):
    """U-Net (Ronneberger et al. 2015) as used by pix2pix: ``num_downs`` stride-2 stages.

    Encoder stage ``i`` has ``min(ngf * 2**i, ngf * 8)`` channels; each decoder stage receives
    the previous decoder output concatenated with the encoder output of the same size. With
    ``num_downs = 7`` a 128x128 image shrinks to 1x1 at the bottleneck (``unet_128``).
    """

    def __init__(
        self,
        input_nc: int,
        output_nc: int,
        num_downs: int,
        ngf: int = 64,
        norm: str = "batch",
        use_dropout: bool = False,
    ) -> None:
        super().__init__()
        if num_downs < 5:
            raise ValueError(f"a U-Net needs at least 5 downsamplings, got {num_downs}")
        self.size_multiple = self.minimum_size = 2**num_downs
        norm_layer = norm_factory(norm)
        use_bias = norm != "batch"
        widths = [min(ngf * 2**stage, ngf * 8) for stage in range(num_downs)]

        self.encoder = nn.ModuleList()
        for stage, width in enumerate(widths):
            if stage == 0:
                layers: list[nn.Module] = [nn.Conv2d(input_nc, width, 4, stride=2, padding=1, bias=use_bias)]
            else:
                layers = [nn.LeakyReLU(0.2, inplace=True), nn.Conv2d(widths[stage - 1], width, 4, 2, 1, bias=use_bias)]
                if stage < num_downs - 1:  # no normalization of the 1x1 bottleneck
                    layers.append(norm_layer(width))
            self.encoder.append(nn.Sequential(*layers))

        self.decoder = nn.ModuleList()
        for stage in reversed(range(num_downs)):
            in_width = widths[stage] if stage == num_downs - 1 else widths[stage] * 2
            layers = [nn.ReLU(inplace=True)]
            if stage == 0:
                layers += [nn.ConvTranspose2d(in_width, output_nc, 4, 2, 1), nn.Tanh()]
            else:
                layers += [
                    nn.ConvTranspose2d(in_width, widths[stage - 1], 4, 2, 1, bias=use_bias),
                    norm_layer(widths[stage - 1]),
                ]
                # Dropout acts as the noise source in the deep, widest stages (as in pix2pix).
                if use_dropout and 0 < num_downs - 1 - stage <= num_downs - 5:
                    layers.append(nn.Dropout(0.5))
            self.decoder.append(nn.Sequential(*layers))

    def run_body(self, images: torch.Tensor) -> torch.Tensor:
        skips = []
        x = images
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        skips.pop()  # the bottleneck output feeds the first decoder stage directly
        for stage in self.decoder:
            x = stage(x)
            if skips:
                x = torch.cat([skips.pop(), x], dim=1)
        return x


# ----------------------------------------------------------------------------------------------
# Discriminators
# ----------------------------------------------------------------------------------------------
class PatchDiscriminator(nn.Module):
    """PatchGAN (Isola et al. 2017): a map of real/fake scores, one per overlapping image patch.

    ``n_layers = 3`` gives 70x70-pixel receptive fields, the CycleGAN default (``--netD basic``).
    """

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 3, norm: str = "instance") -> None:
        super().__init__()
        norm_layer = norm_factory(norm)
        use_bias = norm != "batch"
        layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
        width = ndf
        for layer in range(1, n_layers + 1):
            new_width = ndf * min(2**layer, 8)
            stride = 2 if layer < n_layers else 1
            layers += [
                nn.Conv2d(width, new_width, 4, stride=stride, padding=1, bias=use_bias),
                norm_layer(new_width),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            width = new_width
        layers.append(nn.Conv2d(width, 1, 4, stride=1, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)


class PixelDiscriminator(nn.Module):
    """A 1x1 PatchGAN: judges each pixel's colour alone, blind to structure."""

    def __init__(self, input_nc: int, ndf: int = 64, norm: str = "instance") -> None:
        super().__init__()
        norm_layer = norm_factory(norm)
        use_bias = norm != "batch"
        self.body = nn.Sequential(
            nn.Conv2d(input_nc, ndf, 1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 1, bias=use_bias),
            norm_layer(ndf * 2),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, 1, 1, bias=use_bias),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)


class ProjectionHeads(nn.Module):
    """CUT's projection heads (``netF`` ``mlp_sample``): one two-layer MLP per encoder layer PatchNCE reads.

    Each maps the features of sampled locations, (N, P, channels[i]), to (N, P, units) unit vectors
    (L2-normalised), the space in which PatchNCE compares input and output patches. The input sizes are
    the channel counts of the chosen layers, known from the generator's architecture
    (:meth:`ResnetGenerator.feature_shapes`), so the heads exist, and are optimised and saved, from the
    start like every other network.
    """

    def __init__(self, channels: Sequence[int], units: int = 256) -> None:
        super().__init__()
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(width, units), nn.ReLU(inplace=True), nn.Linear(units, units)) for width in channels
        )

    def forward(self, patches: list[torch.Tensor]) -> list[torch.Tensor]:
        if len(patches) != len(self.heads):
            raise ValueError(f"{len(self.heads)} projection heads, but features of {len(patches)} layers")
        return [
            F.normalize(head(features), dim=-1, eps=1e-7) for head, features in zip(self.heads, patches, strict=True)
        ]


# ----------------------------------------------------------------------------------------------
# Initialisation and factories
# ----------------------------------------------------------------------------------------------
def init_weights(network: nn.Module, init_type: str = "normal", init_gain: float = 0.02) -> nn.Module:
    """Initialise conv/linear weights by ``init_type`` (biases 0) and norm scales around 1."""
    _check_choice("--init_type", init_type, INIT_TYPES)

    def initialise(module: nn.Module) -> None:
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            if init_type == "normal":
                nn.init.normal_(module.weight, 0.0, init_gain)
            elif init_type == "xavier":
                nn.init.xavier_normal_(module.weight, gain=init_gain)
            elif init_type == "kaiming":
                nn.init.kaiming_normal_(module.weight, a=0, mode="fan_in")
            else:
                nn.init.orthogonal_(module.weight, gain=init_gain)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.normal_(module.weight, 1.0, init_gain)
            nn.init.zeros_(module.bias)

    network.apply(initialise)
    return network


def define_generator(
    net_g: str,
    input_nc: int,
    output_nc: int,
    ngf: int = 64,
    norm: str = "instance",
    use_dropout: bool = False,
    init_type: str = "normal",
    init_gain: float = 0.02,
) -> Generator:
    """Build and initialise the generator named by ``--netG``."""
    _check_choice("--netG", net_g, GENERATOR_TYPES)
    if net_g.startswith("resnet_"):
        blocks = int(net_g.removeprefix("resnet_").removesuffix("blocks"))
        network: Generator = ResnetGenerator(input_nc, output_nc, ngf, norm, use_dropout, n_blocks=blocks)
    else:
        size = int(net_g.removeprefix("unet_"))
        network = UnetGenerator(input_nc, output_nc, int(math.log2(size)), ngf, norm, use_dropout)
    return init_weights(network, init_type, init_gain)


def build_generator(
    architecture: Mapping[str, Any], reverse: bool = False, init_type: str = "normal", init_gain: float = 0.02
) -> Generator:
    """The generator of a stored or parsed architecture (the keys of :data:`models.checkpoint.ARCHITECTURE_OPTIONS`).

    ``G_A`` maps ``input_nc`` to ``output_nc`` channels; ``reverse`` builds ``G_B``, the other way.
    The one place a generator is made from an architecture: training, testing and every
    inference driver call it, so a generator is rebuilt exactly as it was trained.
    """
    channels = (architecture["input_nc"], architecture["output_nc"])
    source, target = channels[::-1] if reverse else channels
    return define_generator(
        architecture["netG"], source, target, architecture["ngf"], architecture["norm"],
        not architecture["no_dropout"], init_type, init_gain,
    )  # fmt: skip


def define_discriminator(
    net_d: str,
    input_nc: int,
    ndf: int = 64,
    n_layers: int = 3,
    norm: str = "instance",
    init_type: str = "normal",
    init_gain: float = 0.02,
) -> nn.Module:
    """Build and initialise the discriminator named by ``--netD`` (``n_layers`` for ``n_layers``)."""
    _check_choice("--netD", net_d, DISCRIMINATOR_TYPES)
    if net_d == "pixel":
        network: nn.Module = PixelDiscriminator(input_nc, ndf, norm)
    else:
        network = PatchDiscriminator(input_nc, ndf, 3 if net_d == "basic" else n_layers, norm)
    return init_weights(network, init_type, init_gain)


# ----------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------
class GANLoss(nn.Module):
    """The adversarial loss for ``--gan_mode``, given raw discriminator outputs.

    ``lsgan``: least squares (Mao et al. 2017), the CycleGAN default; ``vanilla``: the original
    cross-entropy (with logits); ``wgangp``: the Wasserstein critic (Gulrajani et al. 2017),
    meant to be used with :func:`gradient_penalty`.
    """

    def __init__(self, gan_mode: str = "lsgan", real_label: float = 1.0, fake_label: float = 0.0) -> None:
        super().__init__()
        _check_choice("--gan_mode", gan_mode, GAN_MODES)
        self.gan_mode = gan_mode
        self.register_buffer("real_label", torch.tensor(real_label))
        self.register_buffer("fake_label", torch.tensor(fake_label))

    def forward(self, prediction: torch.Tensor, target_is_real: bool) -> torch.Tensor:
        if self.gan_mode == "wgangp":
            return -prediction.mean() if target_is_real else prediction.mean()
        target = (self.real_label if target_is_real else self.fake_label).expand_as(prediction)
        if self.gan_mode == "lsgan":
            return F.mse_loss(prediction, target)
        return F.binary_cross_entropy_with_logits(prediction, target)


def gradient_penalty(
    discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor, weight: float = 10.0
) -> torch.Tensor:
    """WGAN-GP penalty: ``weight * (|grad D(x)| - 1)^2`` at random points between real and fake."""
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
    mixed = (alpha * real + (1 - alpha) * fake.detach()).requires_grad_(True)
    scores = discriminator(mixed)
    (gradients,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
    return weight * ((gradients.flatten(1).norm(dim=1) - 1) ** 2).mean()


def discriminator_loss(
    discriminator: nn.Module,
    gan_loss: GANLoss,
    real: torch.Tensor,
    fake: torch.Tensor,
    penalised: nn.Module | None = None,
) -> torch.Tensor:
    """Real images scored as real, fakes (detached) as fake, half-weighted so D learns slower than G.

    ``penalised``, the discriminator without its DDP wrapper, adds the WGAN-GP penalty (``--gan_mode wgangp``).
    """
    loss = 0.5 * (gan_loss(discriminator(real), True) + gan_loss(discriminator(fake.detach()), False))
    if penalised is not None:
        loss = loss + gradient_penalty(penalised, real, fake)
    return loss


# ----------------------------------------------------------------------------------------------
# Learning-rate schedules (stepped once per epoch)
# ----------------------------------------------------------------------------------------------
def linear_decay_factor(epochs_done: int, n_epochs: int, n_epochs_decay: int) -> float:
    """LR factor for the epoch after ``epochs_done`` finished epochs: 1 for the first
    ``n_epochs`` epochs, then falling linearly so the last decay epoch still trains a little."""
    return 1.0 - max(0, epochs_done + 1 - n_epochs) / (n_epochs_decay + 1)


def define_scheduler(
    optimizer: Optimizer,
    lr_policy: str,
    n_epochs: int,
    n_epochs_decay: int,
    lr_step_size: int = 50,
) -> lr_scheduler.LRScheduler | lr_scheduler.ReduceLROnPlateau:
    """The learning-rate schedule for ``--lr_policy``; step it once at the end of each epoch.

    ``linear``: constant for ``n_epochs``, then linear decay over ``n_epochs_decay``;
    ``step``: x0.1 every ``lr_step_size`` epochs; ``plateau``: x0.2 when the epoch's generator
    objective stops improving for 5 epochs; ``cosine``: cosine annealing to 0 over all epochs.
    """
    _check_choice("--lr_policy", lr_policy, LR_POLICIES)
    if lr_policy == "linear":
        factor = functools.partial(linear_decay_factor, n_epochs=n_epochs, n_epochs_decay=n_epochs_decay)
        return lr_scheduler.LambdaLR(optimizer, lr_lambda=factor)
    if lr_policy == "step":
        return lr_scheduler.StepLR(optimizer, step_size=lr_step_size, gamma=0.1)
    if lr_policy == "plateau":
        return lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.2, threshold=0.01, patience=5)
    return lr_scheduler.CosineAnnealingLR(optimizer, T_max=n_epochs + n_epochs_decay, eta_min=0.0)
