"""CUT and FastCUT (Park, Efros, Zhang, Zhu, ECCV 2020): one generator, one discriminator, and a
patch-wise contrastive loss (PatchNCE) that keeps the input's structure without a cycle."""

from __future__ import annotations

import argparse
import logging
from typing import Any

import torch

from models import checkpoint, networks, patchnce
from models.base_model import BaseModel
from util.arg_types import nonnegative_float, nonnegative_int, positive_float, positive_int
from util.color import match_channels
from util.errors import OptionError
from util.image_pool import ImagePool
from util.runtime import Runtime

logger = logging.getLogger(__name__)

#: The paper's two configurations: what ``--cut_mode`` sets unless a flag is given.
MODE_DEFAULTS: dict[str, dict[str, Any]] = {
    "cut": {"lambda_NCE": 1.0, "nce_idt": True, "flip_equivariance": False},
    "fastcut": {"lambda_NCE": 10.0, "nce_idt": False, "flip_equivariance": True},
}
#: The paper's layers 0, 4, 8, 12, 16 of its (antialiased) ResNet, mapped onto ``ResnetGenerator.body``:
#: the padded input, the first and the second downsampling convolution, the first and the fifth residual block.
DEFAULT_NCE_LAYERS = "0,4,7,10,14"


def layer_indices(text: str) -> tuple[int, ...]:
    """A ``--nce_layers`` value: comma-separated encoder layer indices, e.g. ``0,4,7,10,14`` -> (0, 4, 7, 10, 14)."""
    try:
        layers = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated whole numbers such as 0,4,7, got {text!r}") from None
    if any(layer < 0 for layer in layers) or len(set(layers)) != len(layers):
        raise argparse.ArgumentTypeError(f"must be distinct layer indices >= 0, got {text!r}")
    return tuple(sorted(layers))


class CUTModel(BaseModel):
    """Contrastive unpaired translation: ``G_A: A -> B`` and ``D_A``, which judges B images.

    Generator objective: ``G_A + NCE + NCE_idt``. ``G_A`` is the adversarial term (``--gan_mode``);
    ``NCE`` is PatchNCE (:mod:`models.patchnce`) between ``real_A`` and ``fake_B``: each output patch
    must be matched to the input patch at its own location against the other sampled locations of
    the image, in the encoder features of ``--nce_layers`` after a projection head per layer
    (``F``, :class:`networks.ProjectionHeads`); ``NCE_idt`` (``--nce_idt``) is the same between a real
    B image and ``idt_A = G_A(gray(real_B))``, so that G leaves an image of the target domain as it is.
    Both are averaged over the layers and weighted ``--lambda_NCE``, halved when both are on (the
    paper's mean of the two). ``--cut_mode`` picks the paper's two configurations: ``cut`` (lambda_NCE 1,
    identity NCE) and ``fastcut`` (lambda_NCE 10, no identity NCE, flip equivariance: half of the steps
    translate the mirrored input, and its output features are mirrored back before they are compared
    with the input's).

    *Gray input, colour output.* PatchNCE compares the features of input and output in G's own
    encoder, which takes ``input_nc`` (1) channels; ``fake_B`` has 3. It enters the encoder as its
    BT.601 luma (the conversion of :func:`util.color.match_channels`, the same one the data reader and
    the identity terms use), in [-1, 1] like the gray input. Domain A is gray with nuclei dark, as in
    H&E's luma, so the luma of a good stain is the image the encoder was built for, and matching
    patches through it asks the lightness structure to stay where it is while leaving the hue free
    for the adversarial (and, in ``seg_cut``, the colour) terms. The identity NCE reads ``gray(real_B)``
    as the input's features and the luma of ``idt_A`` as the output's.

    *Layers.* ``--nce_layers`` indexes the modules of ``ResnetGenerator.body`` (see its docstring):
    0 .. 9 the convolutional stem, then one index per residual block. The default ``0,4,7,10,14`` is
    the paper's ``0,4,8,12,16`` mapped onto this generator, which downsamples with strided
    convolutions instead of the paper's blur pooling. Only ResNet generators have such an encoder.

    *Projection heads.* Their input sizes are the channel counts of the chosen layers, which a dry
    run of G's encoder on a blank crop finds when the model is built, so ``F`` is a network like the
    others from the start: optimised with G (by the same Adam, ``G``), saved as ``<epoch>_net_F.pth``
    and restored on resume, which stays exact. The same dry run refuses a ``--num_patches`` above the
    smallest chosen map of a ``--crop_size`` crop.

    The networks are named as in ``cycle_gan`` (``G_A``, ``D_A``), so ``test.py``, ``colorize.py`` and
    ``export_model.py`` find the generator as they find cycle_gan's; inference needs only ``G_A``.
    """

    #: No reconstructions: the mask-guided terms on a cycle do not apply (``seg_cut``).
    has_cycle = False

    @staticmethod
    def modify_commandline_options(parser: argparse.ArgumentParser, is_train: bool) -> argparse.ArgumentParser:
        parser.set_defaults(no_dropout=True)  # the ResNet generators of CUT train without dropout
        if not is_train:
            return parser
        group = parser.add_argument_group("cut: contrastive unpaired translation")
        group.add_argument(
            "--cut_mode",
            choices=tuple(MODE_DEFAULTS),
            default="cut",
            help="the paper's configuration: cut (lambda_NCE 1, --nce_idt) or fastcut (lambda_NCE 10, "
            "--flip_equivariance, no identity NCE); a flag given sets its value instead",
        )
        group.add_argument(
            "--lambda_NCE",
            type=nonnegative_float,
            default=None,
            help="weight of the PatchNCE terms (default: 1 with --cut_mode cut, 10 with fastcut); 0 turns them off",
        )
        group.add_argument(
            "--nce_idt",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="PatchNCE between real B images and G(gray(real_B)) too (default: on with cut, off with fastcut)",
        )
        group.add_argument(
            "--flip_equivariance",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="translate the mirrored input half of the time and mirror the output features back "
            "(default: on with fastcut, off with cut)",
        )
        group.add_argument(
            "--nce_layers",
            type=layer_indices,
            default=DEFAULT_NCE_LAYERS,
            help="encoder layers PatchNCE reads: indices of ResnetGenerator.body, 0..9 the stem, then one per "
            "residual block (0..15 for resnet_6blocks, 0..18 for resnet_9blocks); the default is the paper's "
            "0,4,8,12,16 on this generator",
        )
        group.add_argument(
            "--nce_T",
            type=positive_float,
            default=0.07,
            help="temperature of PatchNCE (similarities are divided by it)",
        )
        group.add_argument(
            "--num_patches",
            type=positive_int,
            default=256,
            help="locations sampled per layer and image; at most the smallest chosen feature map "
            "(crop_size / 4 squared for the default layers)",
        )
        group.add_argument("--netF_nc", type=positive_int, default=256, help="units of each projection head")
        group.add_argument(
            "--pool_size", type=nonnegative_int, default=0, help="number of past fakes D also sees; 0 = none (CUT's)"
        )
        return parser

    def __init__(self, opt: argparse.Namespace, runtime: Runtime | None = None) -> None:
        super().__init__(opt, runtime)
        self.visual_names = ["real_A", "fake_B"]
        self.networks["G_A"] = networks.build_generator(
            checkpoint.architecture_of(opt), False, opt.init_type, opt.init_gain
        )
        #: G_A's outputs of the last training forward as it made them (mirrored when its input was).
        self.generated: list[torch.Tensor] = []
        self.flipped = False
        if not self.is_train:
            return
        apply_mode_defaults(opt)
        self.nce_layers = check_nce_layers(self.networks["G_A"], opt.netG, opt.nce_layers)
        self.uses_nce = opt.lambda_NCE > 0
        self.loss_names = ["D_A", "G_A"]
        self.visual_names = ["real_A", "fake_B", "real_B"]
        if self.uses_nce:
            self.loss_names.append("NCE")
            channels = check_num_patches(self.networks["G_A"], self.nce_layers, opt)
            heads = networks.ProjectionHeads(channels, opt.netF_nc)
            self.networks["F"] = networks.init_weights(heads, opt.init_type, opt.init_gain)
            if opt.nce_idt:
                self.loss_names.append("NCE_idt")
                self.visual_names.append("idt_A")
        self.networks["D_A"] = networks.define_discriminator(
            opt.netD, opt.output_nc, ndf=opt.ndf, n_layers=opt.n_layers_D, norm=opt.norm,
            init_type=opt.init_type, init_gain=opt.init_gain,
        )  # fmt: skip
        self.fake_B_pool = ImagePool(opt.pool_size, seed=opt.seed + 2)
        self.gan_loss = networks.GANLoss(opt.gan_mode).to(self.device)
        betas = (opt.beta1, 0.999)
        # One Adam for G and the heads: Adam is per parameter, so this is the paper's two optimizers.
        generator_parameters = [parameter for name in ("G_A", "F") if name in self.networks
                                for parameter in self.networks[name].parameters()]  # fmt: skip
        self.optimizers["G"] = torch.optim.Adam(generator_parameters, lr=opt.lr, betas=betas)
        self.optimizers["D"] = torch.optim.Adam(self.networks["D_A"].parameters(), lr=opt.lr, betas=betas)
        logger.info(
            "%s: PatchNCE weight %g on layers %s, %d patches per layer, temperature %g; identity NCE %s; "
            "flip equivariance %s",
            opt.cut_mode, opt.lambda_NCE, ",".join(map(str, self.nce_layers)), opt.num_patches, opt.nce_T,
            "on" if opt.nce_idt else "off", "on" if opt.flip_equivariance else "off",
        )  # fmt: skip

    # -- data and forward ------------------------------------------------------------------------
    def forward(self) -> None:
        """``fake_B = G_A(real_A)``: inference and the training page's previews (never mirrored)."""
        if "real_A" in self.visuals:
            self.visuals["fake_B"] = self.networks["G_A"](self.visuals["real_A"])

    def translate_for_training(self) -> None:
        """``fake_B`` and, with the identity NCE, ``idt_A = G_A(gray(real_B))``, in one pass of G where the
        sizes agree; with ``--flip_equivariance`` the inputs are mirrored half of the time (the visuals are
        mirrored back, so they stay aligned with ``real_A`` and its mask)."""
        v, opt = self.visuals, self.opt
        sources = [v["real_A"]]
        if self.uses_nce and opt.nce_idt:
            sources.append(self.encoder_input(v["real_B"]))
        # Drawn from torch's CPU generator: saved with the checkpoint, so a resumed run draws the same.
        self.flipped = bool(opt.flip_equivariance and torch.rand(()) < 0.5)
        inputs = [source.flip(-1) if self.flipped else source for source in sources]
        generator = self.networks["G_A"]
        if len(inputs) == 2 and inputs[0].shape[1:] == inputs[1].shape[1:]:
            self.generated = list(generator(torch.cat(inputs)).split([len(source) for source in inputs]))
        else:
            self.generated = [generator(images) for images in inputs]
        aligned = [output.flip(-1) if self.flipped else output for output in self.generated]
        v["fake_B"] = aligned[0]
        if len(aligned) == 2:
            v["idt_A"] = aligned[1]

    def encoder_input(self, images: torch.Tensor) -> torch.Tensor:
        """Images as G's encoder takes them: ``input_nc`` channels (an RGB image by its BT.601 luma), in [-1, 1]."""
        return match_channels(images, self.opt.input_nc)

    # -- losses ----------------------------------------------------------------------------------
    def patch_nce(self, source: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
        """PatchNCE between G's encoder features of ``source`` (keys, no gradient) and of ``generated`` as G made
        it (queries; their maps mirrored back if the step was mirrored), averaged over ``--nce_layers``."""
        encoder = self.unwrapped("G_A")  # the encoder's gradients are averaged with the rest of G's
        heads = self.networks["F"]
        with torch.no_grad():
            key_maps = encoder.encode(self.encoder_input(source), self.nce_layers)
        query_maps = encoder.encode(self.encoder_input(generated), self.nce_layers)
        if self.flipped:
            query_maps = [feature_map.flip(-1) for feature_map in query_maps]
        locations = patchnce.sample_locations(key_maps, self.opt.num_patches, self.nce_layers)
        with torch.no_grad():
            keys = heads([patchnce.gather_patches(m, where) for m, where in zip(key_maps, locations, strict=True)])
        queries = heads([patchnce.gather_patches(m, where) for m, where in zip(query_maps, locations, strict=True)])
        per_layer = [patchnce.patch_nce_loss(q, k, self.opt.nce_T) for q, k in zip(queries, keys, strict=True)]
        return torch.stack(per_layer).mean()

    def generator_losses(self) -> dict[str, torch.Tensor]:
        """The weighted terms of the generator objective, by name (their sum is minimised)."""
        opt, v = self.opt, self.visuals
        # The frozen discriminator only passes gradients through to G: no DDP averaging.
        losses = {"G_A": self.gan_loss(self.unwrapped("D_A")(v["fake_B"]), True)}
        if self.uses_nce:
            weight = opt.lambda_NCE / (2.0 if opt.nce_idt else 1.0)
            losses["NCE"] = weight * self.patch_nce(v["real_A"], self.generated[0])
            if opt.nce_idt:
                losses["NCE_idt"] = weight * self.patch_nce(self.encoder_input(v["real_B"]), self.generated[1])
        return losses

    def optimize_parameters(self) -> None:
        """One step: G and the heads first (D frozen), then D on real B images and (pooled) fakes.

        Under ``--amp`` as in ``cycle_gan``: forwards under autocast, fp16 losses scaled; PatchNCE's
        similarities are computed in float32. ``--nan_policy skip`` drops an update whose loss is not finite.
        """
        discriminator = self.networks["D_A"]
        if not self.step_generators(self.translate_for_training, [discriminator]):
            return
        self.optimizers["D"].zero_grad(set_to_none=True)
        v = self.visuals
        penalised = self.unwrapped("D_A") if self.opt.gan_mode == "wgangp" else None
        with self.runtime.autocast():
            fakes = self.fake_B_pool.query(v["fake_B"])
            loss_D = networks.discriminator_loss(discriminator, self.gan_loss, v["real_B"], fakes, penalised)
        self.step_discriminators(loss_D)
        self.losses = {"D_A": loss_D.detach(), **self.losses}

    # -- resume ----------------------------------------------------------------------------------
    def extra_training_state(self) -> dict[str, Any]:
        return {"fake_B_pool": self.fake_B_pool.state_dict()}

    def load_extra_training_state(self, state: dict[str, Any]) -> None:
        self.fake_B_pool.load_state_dict(state["fake_B_pool"], self.device)


def apply_mode_defaults(opt: argparse.Namespace) -> None:
    """Fill the flags left unset (None) with ``--cut_mode``'s values, so the saved options hold what ran."""
    for key, value in MODE_DEFAULTS[opt.cut_mode].items():
        if getattr(opt, key) is None:
            setattr(opt, key, value)


def check_nce_layers(generator: torch.nn.Module, net_g: str, layers: tuple[int, ...] | list[int]) -> tuple[int, ...]:
    """``--nce_layers`` as sorted indices, refused with the valid range unless all lie in the generator's encoder."""
    if not isinstance(generator, networks.ResnetGenerator):
        raise OptionError(
            f"--model cut reads the encoder of a ResNet generator, which --netG {net_g} is not; "
            "use --netG resnet_9blocks or resnet_6blocks"
        )
    count = generator.encoder_layer_count()
    outside = [layer for layer in layers if not 0 <= layer < count]
    if outside or not layers:
        raise OptionError(
            f"--nce_layers {','.join(map(str, layers))}: {', '.join(map(str, outside)) or 'no layer'} outside the "
            f"encoder of --netG {net_g}, whose layers are 0..{count - 1} (0-9 the convolutional stem, "
            f"{generator.encoder_stem}-{count - 1} the residual blocks)"
        )
    return tuple(sorted(layers))


def check_num_patches(
    generator: networks.ResnetGenerator, layers: tuple[int, ...], opt: argparse.Namespace
) -> list[int]:
    """The channel counts of the chosen layers (the heads' input sizes), from a dry run of the encoder on a
    blank training crop; ``--num_patches`` above the smallest map's locations is refused with the valid range."""
    cropped = "crop" in opt.preprocess
    size = opt.crop_size if cropped else generator.minimum_size
    shapes = generator.feature_shapes(layers, size, size)
    if cropped:
        smallest, (_, height, width) = min(zip(layers, shapes, strict=True), key=lambda item: item[1][1] * item[1][2])
        if opt.num_patches > height * width:
            raise OptionError(
                f"--num_patches {opt.num_patches} is more than encoder layer {smallest} has at --crop_size "
                f"{opt.crop_size} ({height}x{width} = {height * width} locations); choose --num_patches in "
                f"1..{height * width}, a larger --crop_size, or shallower --nce_layers"
            )
    return [channels for channels, _, _ in shapes]
