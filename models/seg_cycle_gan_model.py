"""CycleGAN guided by nucleus masks: nuclei stained where the ground truth says, structure kept, H&E colours."""

from __future__ import annotations

import argparse
from typing import Any

import torch

from models import improved_losses
from models.cycle_gan_model import CycleGANModel
from util.arg_types import float_in_range, nonnegative_float, positive_float, positive_int
from util.errors import DatasetError

#: The extra generator terms, in the order they are logged.
EXTRA_LOSS_NAMES = {
    "lambda_gt": ("GT_fake", "GT_rec"),
    "lambda_cv": ("CV_fake", "CV_rec"),
    "lambda_hsv": ("HSV_fake", "HSV_rec"),
}


class SegCycleGANModel(CycleGANModel):
    """``cycle_gan`` plus three losses, each on the translated and on the reconstructed images.

    Generator objective::

        G_A + G_B + cycle_A + cycle_B + idt_A + idt_B
            + lambda_gt * (GT_fake + GT_rec) + lambda_cv * (CV_fake + CV_rec) + lambda_hsv * (HSV_fake + HSV_rec)

    - ``GT_fake``: ``fake_B`` must be dark (hematoxylin) exactly where the mask ``real_A_GT``
      has nuclei and light elsewhere; ``GT_rec``: ``rec_A`` must mark the nuclei at least as
      clearly as ``real_A`` does (threshold taken from ``real_A``, so it does not fight the cycle loss).
    - ``CV_fake``: SSIM structure of gray(``fake_B``) against ``real_A``; ``CV_rec``: of
      gray(``rec_B``) against gray(``real_B``), the two images the B cycle should make alike.
    - ``HSV_fake`` / ``HSV_rec``: colour distribution of ``fake_B`` / ``rec_B`` against ``real_B``.

    The losses live in :mod:`models.improved_losses`; a weight of 0 skips a pair entirely. The
    published formula scored ``GT_fake`` on ``fake_A = G_B(real_B)``, which has no mask, and
    paired ``rec_B`` with ``real_A``, two different images; both are corrected here.
    """

    @staticmethod
    def modify_commandline_options(parser: argparse.ArgumentParser, is_train: bool) -> argparse.ArgumentParser:
        parser = CycleGANModel.modify_commandline_options(parser, is_train)
        if not is_train:
            return parser
        parser.set_defaults(dataset_mode="improvedunaligned")
        group = parser.add_argument_group("seg_cycle_gan losses")
        group.add_argument("--lambda_gt", type=nonnegative_float, default=5.0, help="weight of GT_fake + GT_rec")
        group.add_argument("--lambda_cv", type=nonnegative_float, default=5.0, help="weight of CV_fake + CV_rec")
        group.add_argument("--lambda_hsv", type=nonnegative_float, default=10.0, help="weight of HSV_fake + HSV_rec")
        group.add_argument(
            "--gt_threshold",
            type=float_in_range(0.0, 1.0, include_maximum=False),
            default=0.5,
            help="darkness (1 - luminance, 0..1) of fake_B above which a pixel counts as nucleus",
        )
        group.add_argument(
            "--gt_temperature", type=positive_float, default=0.05, help="softness of that threshold (darkness units)"
        )
        group.add_argument(
            "--gt_polarity",
            choices=improved_losses.POLARITIES,
            default="dark",
            help="how nuclei look in the source images: dark (inverted fluorescence, the default) or bright",
        )
        group.add_argument("--hsv_hue_bins", type=positive_int, default=36, help="hue bins of the colour histogram")
        group.add_argument(
            "--hsv_saturation_bins", type=positive_int, default=8, help="saturation bins of the colour histogram"
        )
        group.add_argument(
            "--hsv_value_bins", type=positive_int, default=4, help="value (lightness) bins; 1 = lightness not an axis"
        )
        group.add_argument(
            "--hsv_bandwidth",
            type=float_in_range(0.0, 1.0),
            default=1.0,
            help="width of the soft-binning ramp, in bins (1 = linear interpolation)",
        )
        return parser

    def __init__(self, opt: argparse.Namespace) -> None:
        super().__init__(opt)
        self.visual_names = ["real_A", "real_A_GT", "fake_B", "nuclei_fake_B", *self.visual_names[2:]]
        self.real_A_GT: torch.Tensor | None = None
        if self.is_train:
            for weight, names in EXTRA_LOSS_NAMES.items():
                if getattr(opt, weight) > 0:
                    self.loss_names.extend(names)

    def set_input(self, batch: dict[str, Any]) -> None:
        super().set_input(batch)
        self.real_A_GT = self.to_device(batch["A_GT"]) if "A_GT" in batch else None
        if self.real_A_GT is not None:
            self.visuals["real_A_GT"] = self.real_A_GT * 2.0 - 1.0
        elif self.is_train and self.opt.lambda_gt > 0 and "A" in batch:
            raise DatasetError(
                "seg_cycle_gan needs nucleus masks for its GT loss, but the data has none: use "
                "--dataset_mode improvedunaligned with a <dataroot>/trainA_GT folder, or --lambda_gt 0"
            )

    def current_visuals(self) -> dict[str, torch.Tensor]:
        """CycleGAN's visuals; in training also the soft nucleus map that the GT loss reads from ``fake_B``.

        Computed here, when a report asks for it, rather than in every training step.
        """
        if self.is_train and "fake_B" in self.visuals:
            probability = improved_losses.nucleus_probability(
                self.visuals["fake_B"].detach(), self.opt.gt_threshold, self.opt.gt_temperature
            )
            self.visuals["nuclei_fake_B"] = probability * 2.0 - 1.0
        return super().current_visuals()

    def generator_losses(self) -> dict[str, torch.Tensor]:
        losses = super().generator_losses()
        with torch.autocast(self.device.type, enabled=False):  # histograms and SSIM need float32
            losses.update(self.stain_losses({name: image.float() for name, image in self.visuals.items()}))
        return losses

    def stain_losses(self, v: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The GT, colour-variation and HSV terms, on the float32 images ``v``."""
        opt, losses = self.opt, {}
        if opt.lambda_gt > 0:
            losses["GT_fake"] = opt.lambda_gt * improved_losses.gt_loss(
                v["fake_B"], self.real_A_GT, threshold=opt.gt_threshold, temperature=opt.gt_temperature
            )
            losses["GT_rec"] = opt.lambda_gt * improved_losses.gt_reconstruction_loss(
                v["rec_A"], v["real_A"], self.real_A_GT, temperature=opt.gt_temperature, polarity=opt.gt_polarity
            )
        if opt.lambda_cv > 0:
            losses["CV_fake"] = opt.lambda_cv * improved_losses.color_variation_loss(v["fake_B"], v["real_A"])
            losses["CV_rec"] = opt.lambda_cv * improved_losses.color_variation_loss(v["rec_B"], v["real_B"])
        if opt.lambda_hsv > 0:
            histogram_options = dict(
                hue_bins=opt.hsv_hue_bins,
                saturation_bins=opt.hsv_saturation_bins,
                value_bins=opt.hsv_value_bins,
                bandwidth=opt.hsv_bandwidth,
            )
            with torch.no_grad():  # one histogram of the real batch serves both terms
                real = improved_losses.soft_hsv_histogram(v["real_B"], **histogram_options)
            for name, generated in (("HSV_fake", v["fake_B"]), ("HSV_rec", v["rec_B"])):
                histogram = improved_losses.soft_hsv_histogram(generated, **histogram_options)
                losses[name] = opt.lambda_hsv * improved_losses.hellinger_squared(histogram, real)
        return losses
