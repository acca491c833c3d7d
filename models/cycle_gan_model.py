"""CycleGAN (Zhu et al., ICCV 2017): unpaired translation with two generators and two discriminators."""

from __future__ import annotations

import argparse
import itertools
from typing import Any

import torch
import torch.nn.functional as F

from models import checkpoint, networks
from models.base_model import BaseModel
from util.arg_types import nonnegative_float, nonnegative_int
from util.color import match_channels
from util.image_pool import ImagePool
from util.runtime import Runtime


class CycleGANModel(BaseModel):
    """G_A: A -> B, G_B: B -> A; D_A judges B-domain images, D_B judges A-domain images.

    Generator objective: ``G_A + G_B + cycle_A + cycle_B + idt_A + idt_B`` where the GAN terms
    ask each fake to fool its discriminator, the cycle terms ask ``G_B(G_A(A)) = A`` and
    ``G_A(G_B(B)) = B`` (L1, weights ``lambda_A``/``lambda_B``), and the identity terms ask a
    generator to leave an image of its output domain unchanged (L1, weight
    ``lambda_identity * lambda_B`` for G_A and ``lambda_identity * lambda_A`` for G_B).

    Identity with 1-channel A and 3-channel B: a generator cannot take an image of the other
    channel count, so the target-domain image is first brought to the generator's input
    channels: ``idt_A = G_A(gray(real_B))`` must give back ``real_B`` (a gray H&E tile must be
    coloured as itself), and ``idt_B = G_B(rgb(real_A))`` must give back ``real_A``.

    Subclasses add generator terms by extending :meth:`generator_losses`.
    """

    #: It makes the reconstructions ``rec_A`` and ``rec_B``, which the mask-guided terms GT_rec and structure_rec read.
    has_cycle = True

    @staticmethod
    def modify_commandline_options(parser: argparse.ArgumentParser, is_train: bool) -> argparse.ArgumentParser:
        parser.set_defaults(no_dropout=True)  # CycleGAN's ResNet generators train without dropout
        if is_train:
            parser.add_argument(
                "--lambda_A", type=nonnegative_float, default=10.0, help="weight of the cycle loss A -> B -> A"
            )
            parser.add_argument(
                "--lambda_B", type=nonnegative_float, default=10.0, help="weight of the cycle loss B -> A -> B"
            )
            parser.add_argument(
                "--lambda_identity",
                type=nonnegative_float,
                default=0.5,
                help="weight of the identity loss, relative to lambda_A/lambda_B; 0 turns it off",
            )
            parser.add_argument(
                "--pool_size",
                type=nonnegative_int,
                default=50,
                help="number of past fakes each discriminator also sees; 0 = none",
            )
        return parser

    def __init__(self, opt: argparse.Namespace, runtime: Runtime | None = None) -> None:
        super().__init__(opt, runtime)
        self.loss_names = ["D_A", "G_A", "cycle_A", "idt_A", "D_B", "G_B", "cycle_B", "idt_B"]
        self.visual_names = ["real_A", "fake_B", "rec_A", "idt_B", "real_B", "fake_A", "rec_B", "idt_A"]
        architecture = checkpoint.architecture_of(opt)
        self.networks["G_A"] = networks.build_generator(architecture, False, opt.init_type, opt.init_gain)
        self.networks["G_B"] = networks.build_generator(architecture, True, opt.init_type, opt.init_gain)
        if not self.is_train:
            return
        discriminator_options = dict(
            ndf=opt.ndf, n_layers=opt.n_layers_D, norm=opt.norm, init_type=opt.init_type, init_gain=opt.init_gain
        )
        self.networks["D_A"] = networks.define_discriminator(opt.netD, opt.output_nc, **discriminator_options)
        self.networks["D_B"] = networks.define_discriminator(opt.netD, opt.input_nc, **discriminator_options)
        self.fake_A_pool = ImagePool(opt.pool_size, seed=opt.seed + 1)
        self.fake_B_pool = ImagePool(opt.pool_size, seed=opt.seed + 2)
        self.gan_loss = networks.GANLoss(opt.gan_mode).to(self.device)
        betas = (opt.beta1, 0.999)
        self.optimizers["G"] = torch.optim.Adam(
            itertools.chain(self.networks["G_A"].parameters(), self.networks["G_B"].parameters()),
            lr=opt.lr,
            betas=betas,
        )
        self.optimizers["D"] = torch.optim.Adam(
            itertools.chain(self.networks["D_A"].parameters(), self.networks["D_B"].parameters()),
            lr=opt.lr,
            betas=betas,
        )

    # -- data and forward ------------------------------------------------------------------------
    def forward(self) -> None:
        """Translate whatever domains are present and reconstruct them."""
        G_A, G_B = self.networks["G_A"], self.networks["G_B"]
        if "real_A" in self.visuals:
            self.visuals["fake_B"] = G_A(self.visuals["real_A"])
            self.visuals["rec_A"] = G_B(self.visuals["fake_B"])
        if "real_B" in self.visuals:
            self.visuals["fake_A"] = G_B(self.visuals["real_B"])
            self.visuals["rec_B"] = G_A(self.visuals["fake_A"])

    # -- losses ----------------------------------------------------------------------------------
    def generator_losses(self) -> dict[str, torch.Tensor]:
        """The weighted terms of the generator objective, by name (their sum is minimised)."""
        opt, v = self.opt, self.visuals
        G_A, G_B = self.networks["G_A"], self.networks["G_B"]
        # The frozen discriminators only pass gradients through to the generators: no DDP averaging.
        losses = {
            "G_A": self.gan_loss(self.unwrapped("D_A")(v["fake_B"]), True),
            "G_B": self.gan_loss(self.unwrapped("D_B")(v["fake_A"]), True),
            "cycle_A": F.l1_loss(v["rec_A"], v["real_A"]) * opt.lambda_A,
            "cycle_B": F.l1_loss(v["rec_B"], v["real_B"]) * opt.lambda_B,
        }
        if opt.lambda_identity > 0:
            v["idt_A"] = G_A(match_channels(v["real_B"], opt.input_nc))
            v["idt_B"] = G_B(match_channels(v["real_A"], opt.output_nc))
            losses["idt_A"] = F.l1_loss(v["idt_A"], v["real_B"]) * opt.lambda_B * opt.lambda_identity
            losses["idt_B"] = F.l1_loss(v["idt_B"], v["real_A"]) * opt.lambda_A * opt.lambda_identity
        return losses

    def discriminator_loss(self, discriminator_name: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """Real images scored as real, (pooled) fakes as fake: :func:`networks.discriminator_loss`."""
        penalised = self.unwrapped(discriminator_name) if self.opt.gan_mode == "wgangp" else None
        return networks.discriminator_loss(self.networks[discriminator_name], self.gan_loss, real, fake, penalised)

    def optimize_parameters(self) -> None:
        """One step: generators first (discriminators frozen), then both discriminators.

        Forwards run under the ``--amp`` autocast; with fp16 the losses are scaled before backward
        and the steps skipped when the scaled gradients overflow (the runtime's ``scaler``). With
        ``--nan_policy skip`` an update whose loss is not finite is dropped.
        """
        if not self.step_generators(self.forward, [self.networks["D_A"], self.networks["D_B"]]):
            return
        self.optimizers["D"].zero_grad(set_to_none=True)
        v = self.visuals
        with self.runtime.autocast():
            loss_D_A = self.discriminator_loss("D_A", v["real_B"], self.fake_B_pool.query(v["fake_B"]))
            loss_D_B = self.discriminator_loss("D_B", v["real_A"], self.fake_A_pool.query(v["fake_A"]))
            loss_D = loss_D_A + loss_D_B
        self.step_discriminators(loss_D)
        self.losses.update(D_A=loss_D_A.detach(), D_B=loss_D_B.detach())

    # -- resume ----------------------------------------------------------------------------------
    def extra_training_state(self) -> dict[str, Any]:
        return {"fake_A_pool": self.fake_A_pool.state_dict(), "fake_B_pool": self.fake_B_pool.state_dict()}

    def load_extra_training_state(self, state: dict[str, Any]) -> None:
        self.fake_A_pool.load_state_dict(state["fake_A_pool"], self.device)
        self.fake_B_pool.load_state_dict(state["fake_B_pool"], self.device)
