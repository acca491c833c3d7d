"""CycleGAN guided by nucleus masks: hematoxylin nuclei where the ground truth says, structure kept, H&E colours."""

from __future__ import annotations

import argparse

from models.cycle_gan_model import CycleGANModel
from models.mask_guidance import MaskGuidedModel, add_mask_guidance_options


class SegCycleGANModel(MaskGuidedModel, CycleGANModel):
    """``cycle_gan`` plus a ground-truth, a structure and a colour loss.

    Generator objective::

        G_A + G_B + cycle_A + cycle_B + idt_A + idt_B
            + lambda_gt * (GT_fake + GT_rec) + lambda_cv * (structure_fake + structure_rec)
            + lambda_color * color_fake

    Every mask-guided term, its flags, the calibration on ``trainB`` and what a checkpoint keeps of
    it live in :mod:`models.mask_guidance` (shared with ``seg_cut``); with its cycles this model gets
    all five terms.
    """

    @staticmethod
    def modify_commandline_options(parser: argparse.ArgumentParser, is_train: bool) -> argparse.ArgumentParser:
        parser = CycleGANModel.modify_commandline_options(parser, is_train)
        return add_mask_guidance_options(parser, is_train, "seg_cycle_gan losses")
