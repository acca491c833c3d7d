"""CUT guided by nucleus masks: ``cut`` plus the mask-guided terms that need no cycle."""

from __future__ import annotations

import argparse

from models.cut_model import CUTModel
from models.mask_guidance import MaskGuidedModel, add_mask_guidance_options


class SegCUTModel(MaskGuidedModel, CUTModel):
    """``cut`` (or FastCUT, ``--cut_mode fastcut``) plus the GT, structure and colour terms on ``fake_B``.

    Generator objective::

        G_A + NCE + NCE_idt + lambda_gt * GT_fake + lambda_cv * structure_fake + lambda_color * color_fake

    The terms, their flags and defaults, the calibration of the stain model and real colours on
    ``trainB``, the masks they need (``--dataset_mode improvedunaligned``, the default) and what a
    checkpoint keeps of them are ``seg_cycle_gan``'s (:mod:`models.mask_guidance`). ``GT_rec`` and
    ``structure_rec`` read reconstructions, which a one-sided model does not make, so they are not
    part of it.
    """

    @staticmethod
    def modify_commandline_options(parser: argparse.ArgumentParser, is_train: bool) -> argparse.ArgumentParser:
        parser = CUTModel.modify_commandline_options(parser, is_train)
        return add_mask_guidance_options(parser, is_train, "seg_cut losses (those of seg_cycle_gan without a cycle)")
