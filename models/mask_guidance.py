"""The mask-guided terms of ``seg_cycle_gan`` and ``seg_cut``, in one place: which terms a model gets,
their flags, the calibration they need, the masks they read, and what a checkpoint keeps of them.

- ``GT_fake``: ``fake_B`` must be hematoxylin-coloured (the stain model's nucleus score above its
  threshold) exactly where the mask ``real_A_GT`` has nuclei and not elsewhere;
  ``GT_rec``: ``rec_A`` must mark the nuclei at least as clearly as ``real_A`` does.
- ``structure_fake``: SSIM of the luma of ``fake_B`` against ``real_A``; ``structure_rec``: of
  ``rec_B`` against ``real_B``, the two images the B cycle should make alike.
- ``color_fake``: the colours of ``fake_B`` inside the mask against the colours of real nuclei of
  the whole target domain, and outside against real non-nuclear tissue.

The ``_rec`` terms read a reconstruction, so only a model with cycles (``has_cycle``) gets them:
``seg_cycle_gan`` all five, ``seg_cut`` the three on ``fake_B`` (:data:`TERMS` decides). The loss
functions are those of :mod:`models.improved_losses`; a weight of 0 skips its terms entirely.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from skimage.color import rgb2lab

from models import improved_losses
from models.base_model import BaseModel
from util.arg_types import float_in_range, nonnegative_float, nonnegative_int, positive_float, positive_int
from util.errors import DatasetError
from util.runtime import Runtime
from util.stain import StainEstimationError, StainModel, estimate_stain_model, sample_pixels

logger = logging.getLogger(__name__)

#: Real pixels drawn from the target domain for the colour loss's reference colours.
REFERENCE_PIXELS = 200_000


@dataclass(frozen=True)
class GuidedTerm:
    """One mask-guided generator term: its logged name, the flag that weighs it, and whether it reads a cycle."""

    name: str
    weight: str
    needs_cycle: bool


#: Every mask-guided term, in the order the terms are computed and logged.
TERMS = (
    GuidedTerm("GT_fake", "lambda_gt", needs_cycle=False),
    GuidedTerm("GT_rec", "lambda_gt", needs_cycle=True),
    GuidedTerm("structure_fake", "lambda_cv", needs_cycle=False),
    GuidedTerm("structure_rec", "lambda_cv", needs_cycle=True),
    GuidedTerm("color_fake", "lambda_color", needs_cycle=False),
)


def guided_terms(opt: argparse.Namespace, has_cycle: bool) -> list[str]:
    """The names of the terms a model adds: those its weight turns on and its structure (cycle or not) allows."""
    return [term.name for term in TERMS if getattr(opt, term.weight) > 0 and (has_cycle or not term.needs_cycle)]


def add_mask_guidance_options(parser: argparse.ArgumentParser, is_train: bool, title: str) -> argparse.ArgumentParser:
    """The flags of the mask-guided terms (training only), and masks loaded by default."""
    if not is_train:
        return parser
    parser.set_defaults(dataset_mode="improvedunaligned")
    group = parser.add_argument_group(title)
    group.add_argument("--lambda_gt", type=nonnegative_float, default=10.0, help="weight of GT_fake + GT_rec")
    group.add_argument(
        "--lambda_cv", type=nonnegative_float, default=5.0, help="weight of structure_fake + structure_rec (SSIM)"
    )
    group.add_argument(
        "--lambda_color",
        "--lambda_hsv",
        dest="lambda_color",
        type=nonnegative_float,
        default=5.0,
        help="weight of color_fake (--lambda_hsv is the seed's name)",
    )
    group.add_argument(
        "--gt_threshold",
        type=float_in_range(0.0, 2.5),
        default=None,
        help="nucleus score (OD units) of fake_B above which a pixel counts as nucleus "
        "(default: calibrated on trainB by Otsu's rule)",
    )
    group.add_argument(
        "--gt_temperature", type=positive_float, default=0.05, help="softness of that threshold (score units)"
    )
    group.add_argument(
        "--gt_border",
        type=nonnegative_int,
        default=2,
        help="background within this many pixels of a nucleus counts as its own group in the GT loss (0: none)",
    )
    group.add_argument(
        "--color_projections",
        type=positive_int,
        default=32,
        help="directions (spread evenly over the sphere) the colour loss compares along",
    )
    group.add_argument(
        "--color_samples", type=positive_int, default=1024, help="pixels per region the colour loss compares"
    )
    return parser


def with_guidance_visuals(visual_names: list[str]) -> list[str]:
    """A model's visuals with the mask after ``real_A`` and the nucleus map the GT loss reads after ``fake_B``."""
    shown = []
    for name in visual_names:
        shown.append(name)
        if name == "real_A":
            shown.append("real_A_GT")
        elif name == "fake_B":
            shown.append("nuclei_fake_B")
    return shown


class MaskGuidedModel(BaseModel):
    """Mixin that adds the mask-guided terms to a translation model: ``class M(MaskGuidedModel, Base)``.

    ``Base`` provides ``generator_losses()`` (its weighted terms, after a training forward that made
    ``fake_B``, and with ``has_cycle`` also ``rec_A`` and ``rec_B``), ``set_input``, ``current_visuals``
    and the extra training state; this class extends each of them. The stain model (stain vectors and
    nucleus threshold) and the real colours are estimated once from ``trainB`` (:meth:`calibrate`) and
    saved with every checkpoint, so a resumed run uses the same numbers. ``Base`` says with its class
    attribute ``has_cycle`` whether it makes the reconstructions the ``_rec`` terms read.
    """

    def __init__(self, opt: argparse.Namespace, runtime: Runtime | None = None) -> None:
        super().__init__(opt, runtime)
        self.visual_names = with_guidance_visuals(self.visual_names)
        self.real_A_GT: torch.Tensor | None = None
        self.stain_model: StainModel | None = None
        self.stain_inverse = torch.zeros(3, 3)
        self.color_reference: improved_losses.ColorReference | None = None
        if self.is_train:
            self.loss_names.extend(guided_terms(opt, self.has_cycle))

    # -- calibration -----------------------------------------------------------------------------
    def calibrate(self, dataset: Any) -> None:
        """Estimate the stain model and the real nuclear and tissue colours from the target domain (``trainB``)."""
        super().calibrate(dataset)
        if not self.is_train or (self.opt.lambda_gt == 0 and self.opt.lambda_color == 0):
            return
        images = dataset.target_images()
        folder = dataset.root / f"{self.opt.phase}B"
        try:
            stain_model = estimate_stain_model(images, str(folder))
        except StainEstimationError as error:
            raise DatasetError(f"{error}; {self.opt.model} needs it for its GT and colour losses") from None
        pixels = sample_pixels(images, REFERENCE_PIXELS, seed=self.opt.seed)
        nuclear = stain_model.nuclear(pixels)
        lab = torch.from_numpy(rgb2lab(pixels[:, None, :])[:, 0, :].astype(np.float32))
        if nuclear.all() or not nuclear.any():
            raise DatasetError(
                f"the target images of {folder} have no {'non-' if nuclear.all() else ''}nuclear pixels by their own "
                "stain model; domain B must hold real H&E tiles with nuclei and tissue"
            )
        reference = improved_losses.ColorReference.of(
            lab[nuclear], lab[~nuclear], self.opt.color_projections, self.opt.color_samples
        )
        self.use_stain_model(stain_model, reference)
        logger.info(
            "stain model from %s: hematoxylin %s, eosin %s, nucleus threshold %.3f OD; %.0f%% of its pixels nuclear",
            stain_model.source, np.round(stain_model.vectors[0], 3).tolist(), np.round(stain_model.vectors[1], 3).tolist(),
            stain_model.nucleus_threshold, 100.0 * nuclear.mean(),
        )  # fmt: skip

    def use_stain_model(self, stain_model: StainModel, color_reference: improved_losses.ColorReference) -> None:
        """Adopt a stain model and the real colours of the target domain for the GT and colour losses."""
        self.stain_model = stain_model
        self.stain_inverse = torch.as_tensor(stain_model.inverse, dtype=torch.float32, device=self.device)
        self.color_reference = color_reference.to(self.device)

    @property
    def nucleus_threshold(self) -> float:
        """``--gt_threshold``, or the threshold calibrated on the target domain."""
        if self.opt.gt_threshold is not None:
            return self.opt.gt_threshold
        if self.stain_model is None:
            raise RuntimeError(f"{self.opt.model} was not calibrated: call model.calibrate(dataset) before training")
        return self.stain_model.nucleus_threshold

    # -- data and visuals ------------------------------------------------------------------------
    def set_input(self, batch: dict[str, Any]) -> None:
        """The model's input, and the masks ``A_GT`` (N, 1, H, W) in {0, 1}, which training needs for the GT loss."""
        super().set_input(batch)
        self.real_A_GT = self.to_device(batch["A_GT"]) if "A_GT" in batch else None
        if self.real_A_GT is not None:
            self.visuals["real_A_GT"] = self.real_A_GT * 2.0 - 1.0
        elif self.is_train and self.opt.lambda_gt > 0 and "A" in batch:
            raise DatasetError(
                f"{self.opt.model} needs nucleus masks for its GT loss, but the data has none: use "
                "--dataset_mode improvedunaligned with a <dataroot>/trainA_GT folder, or --lambda_gt 0"
            )

    def current_visuals(self) -> dict[str, torch.Tensor]:
        """The model's visuals; in training also the soft nucleus map that the GT loss reads from ``fake_B``.

        Computed here, when a report asks for it, rather than in every training step.
        """
        if self.is_train and "fake_B" in self.visuals and self.stain_model is not None:
            score = improved_losses.nucleus_score(self.visuals["fake_B"].detach().float(), self.stain_inverse)
            probability = torch.sigmoid((score - self.nucleus_threshold) / self.opt.gt_temperature)
            self.visuals["nuclei_fake_B"] = probability * 2.0 - 1.0
        return super().current_visuals()

    # -- losses ----------------------------------------------------------------------------------
    def generator_losses(self) -> dict[str, torch.Tensor]:
        losses = super().generator_losses()  # the translation model's own terms
        with torch.autocast(self.device.type, enabled=False):  # colour spaces, logarithms and SSIM need float32
            losses.update(self.stain_losses({name: image.float() for name, image in self.visuals.items()}))
        return losses

    def stain_losses(self, v: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The model's mask-guided terms (:func:`guided_terms`), weighted, on the float32 images ``v``."""
        opt, losses = self.opt, {}
        wanted = set(guided_terms(opt, self.has_cycle))
        if "GT_fake" in wanted:
            losses["GT_fake"] = opt.lambda_gt * improved_losses.gt_loss(
                v["fake_B"], self.real_A_GT, stain_inverse=self.stain_inverse,
                threshold=self.nucleus_threshold, temperature=opt.gt_temperature, border=opt.gt_border,
            )  # fmt: skip
        if "GT_rec" in wanted:
            losses["GT_rec"] = opt.lambda_gt * improved_losses.gt_reconstruction_loss(
                v["rec_A"], v["real_A"], self.real_A_GT, temperature=opt.gt_temperature
            )
        if "structure_fake" in wanted:
            losses["structure_fake"] = opt.lambda_cv * improved_losses.structure_loss(v["fake_B"], v["real_A"])
        if "structure_rec" in wanted:
            losses["structure_rec"] = opt.lambda_cv * improved_losses.structure_loss(v["rec_B"], v["real_B"])
        if "color_fake" in wanted:
            if self.color_reference is None:
                raise RuntimeError(f"{opt.model} was not calibrated: call model.calibrate(dataset) before training")
            losses["color_fake"] = opt.lambda_color * improved_losses.color_loss(
                v["fake_B"], self.real_A_GT, self.color_reference
            )
        return losses

    # -- resume ----------------------------------------------------------------------------------
    def extra_training_state(self) -> dict[str, Any]:
        state = super().extra_training_state()
        if self.stain_model is not None and self.color_reference is not None:
            state["stain_model"] = self.stain_model.to_dict()
            state["color_reference"] = self.color_reference.state_dict()
        return state

    def load_extra_training_state(self, state: dict[str, Any]) -> None:
        super().load_extra_training_state(state)
        if "stain_model" in state:  # checkpoints from before the stain model keep the one just calibrated
            reference = improved_losses.ColorReference.from_state_dict(state["color_reference"])
            stored = (len(reference.nuclei.directions), reference.nuclei.levels)
            if stored != (self.opt.color_projections, self.opt.color_samples):
                logger.warning(
                    "the run's colour reference has %d directions and %d samples; --color_projections and "
                    "--color_samples given now are ignored so that the resumed run computes the same loss",
                    *stored,
                )
            self.use_stain_model(StainModel.from_dict(state["stain_model"]), reference)
