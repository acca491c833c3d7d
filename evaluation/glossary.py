"""What every score is called for a reader: plain name, which way is better, unit, one-sentence meaning.

The one table the report's headers and definitions, the console, the plots, the epoch choice and
the ablation read, so that a metric is never described two ways. ``scores.csv``, ``scores.json``
and ``per_image.csv`` keep the identifiers (:attr:`Metric.name`); people read :attr:`Metric.title`.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Direction markers: the arrow says which way a column improves.
HIGHER, LOWER = "↑", "↓"


@dataclass(frozen=True)
class Metric:
    """One score: its identifier, plain name, axis, direction, unit and meaning (one sentence)."""

    name: str
    title: str
    axis: str  # "realism" or "faithfulness"
    higher_is_better: bool
    unit: str
    meaning: str

    @property
    def arrow(self) -> str:
        return HIGHER if self.higher_is_better else LOWER

    @property
    def direction(self) -> str:
        return "higher is better" if self.higher_is_better else "lower is better"

    @property
    def heading(self) -> str:
        """``plain name ↑ (unit)``: a column header that needs no glossary."""
        return f"{self.title} {self.arrow} ({self.unit})"


_CIELAB = "CIELAB units"
_OD = "OD units"

METRICS: tuple[Metric, ...] = (
    Metric("lab_swd_regions", "colour difference from real H&E, nuclei and tissue apart", "realism", False, _CIELAB,
           "The mean of the next two: how far the colours inside the nuclei are from real nuclei, and outside them "
           "from real tissue (sliced Wasserstein distances); the epoch is chosen by it."),
    Metric("lab_swd_nuclei", "nucleus colour difference from real nuclei", "realism", False, _CIELAB,
           "How far the colours inside the masks are from the colours of real H&E nuclei (sliced Wasserstein distance)."),
    Metric("lab_swd_tissue", "tissue colour difference from real tissue", "realism", False, _CIELAB,
           "How far the colours outside the masks are from real non-nuclear H&E tissue (sliced Wasserstein distance)."),
    Metric("lab_swd", "overall colour difference from real H&E", "realism", False, _CIELAB,
           "How far all colours are from all colours of the real H&E, nuclei and tissue mixed (sliced Wasserstein "
           "distance)."),
    Metric("hsv_correlation", "colour histogram similarity (HSV)", "realism", True, "correlation, -1 to 1",
           "Correlation of the hue-saturation-value colour histograms with the real H&E's: the traditional measure, "
           "1 for the same colours; it saturates near 1, where small differences mean little."),
    Metric("hematoxylin_w1", "hematoxylin (purple) amount difference", "realism", False, _OD,
           "How far the per-pixel amounts of hematoxylin, read by colour deconvolution, are from the real H&E's "
           "(optical density, log10 absorbance)."),
    Metric("eosin_w1", "eosin (pink) amount difference", "realism", False, _OD,
           "How far the per-pixel amounts of eosin, read by colour deconvolution, are from the real H&E's."),
    Metric("fid", "Fréchet Inception distance (FID)", "realism", False, "no unit",
           "Distance between Inception-v3 features of the stains and of the real H&E (needs --inception_weights)."),
    Metric("kid", "kernel Inception distance (KID)", "realism", False, "no unit",
           "A less biased variant of FID for few images (needs --inception_weights)."),
    Metric("nucleus_f1", "nuclei stained where the mask has them (F1)", "faithfulness", True, "fraction, 0 to 1",
           "Nuclei read off the stain by their hematoxylin colour, matched one to one with the mask's nuclei "
           "(overlap above half): 1 when every nucleus is found and none is extra."),
    Metric("nucleus_recall", "share of the mask's nuclei found", "faithfulness", True, "fraction, 0 to 1",
           "Of the nuclei in the mask, the share stained as a nucleus at the same place."),
    Metric("nucleus_precision", "share of stained nuclei that are real", "faithfulness", True, "fraction, 0 to 1",
           "Of the nuclei read off the stain, the share that match a nucleus of the mask."),
    Metric("invented_area", "area of invented nuclei", "faithfulness", False, "fraction of the image",
           "Nucleus-coloured area more than 2 pixels away from every nucleus of the mask: nuclei the input does not "
           "have."),
    Metric("structure_spearman", "structure kept (lightness rank correlation)", "faithfulness", True,
           "correlation, -1 to 1",
           "Whether dark and bright places of the input stay dark and bright in the stain: 1 for any increasing tone curve "
           "of the input, -1 for an inverted one, about 0 for an output unrelated to it."),
    Metric("dice", "nucleus pixel overlap with the mask (Dice)", "faithfulness", True, "fraction, 0 to 1",
           "Overlap of the nucleus-coloured pixels with the mask's pixels: 1 when they coincide."),
)  # fmt: skip
METRIC_BY_NAME = {metric.name: metric for metric in METRICS}
METRIC_NAMES = tuple(metric.name for metric in METRICS)

#: Plain names of the per-image counts (``per_image.csv``), which have no better direction.
COUNTS = {
    "nuclei_true": "nuclei in the mask",
    "nuclei_predicted": "nuclei read off the stain",
    "nuclei_matched": "of which matched",
}


def arrow(name: str) -> str:
    """The direction marker of a metric identifier."""
    return METRIC_BY_NAME[name].arrow
