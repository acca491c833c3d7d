"""Choose the epoch to keep: the most realistic among those whose stain follows the input.

Realism and faithfulness are two axes and are never averaged. Faithfulness is a set of
*guards*, each stated against the baselines or as a bound; an epoch that fails one is out,
however realistic it looks (an output that ignores its input can be perfectly realistic). Among
the epochs that pass, the one with the best realism metric (:data:`DEFAULT_REALISM`) is chosen.
The baselines and sanity rows are scored beside the epochs but never chosen, so adding or
removing one does not change the choice, except the Beer-Lambert row, which sets the nucleus
F1 guard.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from evaluation.scoring import BEER_LAMBERT, METRIC_BY_NAME, Row
from experiment import epoch_order
from util.errors import EvaluationError

#: The physics baseline the nucleus F1 guard is stated against.
GUARD_BASELINE = BEER_LAMBERT
#: Realism metrics an epoch may be chosen by (not FID/KID: they are computed after the choice, when at all).
REALISM_CHOICES = tuple(
    name for name, metric in METRIC_BY_NAME.items() if metric.axis == "realism" and name not in ("fid", "kid")
)
#: Chosen by the region-aware colour distance; without masks, by the global one.
DEFAULT_REALISM = "lab_swd_regions"
FALLBACK_REALISM = "lab_swd"


@dataclass(frozen=True)
class Guards:
    """Faithfulness an epoch must show to be chosen.

    ``f1_margin``: nucleus F1 at least the Beer-Lambert baseline's minus this.
    ``max_invented_area``: invented nucleus area at most this fraction of the image.
    ``min_structure``: structure rank correlation at least this. A coarse check that the output is
    related to its input at all: the texture a realistic stain adds between the nuclei is not in
    the input, so over all pixels a faithful, realistic stain reaches about ``3 p (1 - p)`` (0.48
    for a nucleus fraction p = 0.2) from the nucleus-background contrast alone, while an output
    that ignores its input stays near 0.
    """

    f1_margin: float = 0.05
    max_invented_area: float = 0.05
    min_structure: float = 0.2

    def __post_init__(self) -> None:
        bounds = {"f1_margin": ("guard_f1_margin", 0.0, 1.0), "max_invented_area": ("max_invented_area", 0.0, 1.0),
                  "min_structure": ("min_structure", -1.0, 1.0)}  # fmt: skip
        for name, (flag, low, high) in bounds.items():
            value = getattr(self, name)
            if not (math.isfinite(value) and low <= value <= high):
                raise EvaluationError(f"guard --{flag} must lie in [{low:g}, {high:g}], got {value}")

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def failed_guards(row: Row, guards: Guards, f1_floor: float) -> list[str]:
    """Why ``row`` fails the guards (empty when it passes). ``f1_floor`` NaN: no masks, no nucleus guards."""
    failures = []
    scores = row.scores
    if math.isfinite(f1_floor):
        if not scores["nucleus_f1"] >= f1_floor:
            failures.append(
                f"nucleus F1 {scores['nucleus_f1']:.3f} < {f1_floor:.3f} (Beer-Lambert - {guards.f1_margin:g})"
            )
        if not scores["invented_area"] <= guards.max_invented_area:
            failures.append(f"invented area {scores['invented_area']:.3f} > {guards.max_invented_area:g}")
    if not scores["structure_spearman"] >= guards.min_structure:
        failures.append(f"structure {scores['structure_spearman']:.3f} < {guards.min_structure:g}")
    return failures


def mark_guards(rows: list[Row], guards: Guards) -> float:
    """Fill every row's ``failed_guards`` against the Beer-Lambert row among them; return the F1 floor (NaN without)."""
    baseline = next((row for row in rows if row.label == GUARD_BASELINE), None)
    f1_floor = baseline.scores["nucleus_f1"] - guards.f1_margin if baseline is not None else math.nan
    for row in rows:
        row.failed_guards = failed_guards(row, guards, f1_floor)
    return f1_floor


@dataclass
class Selection:
    """The outcome: the chosen epoch (None when none passes), the closest one otherwise, and how."""

    chosen: Row | None
    closest: Row | None
    realism_metric: str
    guards: Guards
    f1_floor: float
    split: str
    notes: list[str]

    @property
    def reported(self) -> Row | None:
        """The epoch whose test numbers are reported: the chosen one, else the closest (marked as failing)."""
        return self.chosen or self.closest

    def verdict(self) -> str:
        """One sentence for the console and the report."""
        metric = METRIC_BY_NAME[self.realism_metric].title
        if self.chosen is not None:
            return (
                f"Epoch {self.chosen.label} is chosen on the {self.split} split: the best {metric} "
                f"({self.chosen.scores[self.realism_metric]:.3f}) among the epochs that pass the faithfulness guards."
            )
        closest = self.closest
        reasons = "; ".join(closest.failed_guards) if closest else "no epoch"
        return (
            f"No epoch passes the faithfulness guards on the {self.split} split; the closest is epoch "
            f"{closest.label if closest else '-'} ({reasons}). None is worth keeping at these guards; the closest "
            "one's test numbers are shown for comparison only."
        )


def select(rows: list[Row], guards: Guards, realism_metric: str = DEFAULT_REALISM) -> Selection:
    """Mark every row's failed guards and choose among the epoch rows (see the module docstring)."""
    if realism_metric not in REALISM_CHOICES:
        raise EvaluationError(
            f"--select_by must be a realism metric ({', '.join(REALISM_CHOICES)}), got {realism_metric!r}"
        )
    notes = []
    f1_floor = mark_guards(rows, guards)
    if not math.isfinite(f1_floor):
        notes.append("No masks: the nucleus guards cannot be checked; only the structure guard applies.")
    epochs = [row for row in rows if row.is_epoch]
    if not epochs:
        raise EvaluationError("no epoch to choose from")
    if not all(math.isfinite(row.scores[realism_metric]) for row in epochs):
        why = "without masks there are no regions" if realism_metric.startswith("lab_swd_") else "it is missing"
        notes.append(f"{realism_metric} could not be computed ({why}); epochs are chosen by {FALLBACK_REALISM}.")
        realism_metric = FALLBACK_REALISM
    sign = -1.0 if METRIC_BY_NAME[realism_metric].higher_is_better else 1.0
    passing = [row for row in epochs if not row.failed_guards]
    chosen = min(passing, key=lambda row: (sign * row.scores[realism_metric], epoch_order(row.label)), default=None)
    closest = None
    if chosen is None:
        closest = min(epochs, key=lambda row: (_shortfall(row, guards, f1_floor), epoch_order(row.label)))
    return Selection(chosen, closest, realism_metric, guards, f1_floor, epochs[0].split, notes)


def _shortfall(row: Row, guards: Guards, f1_floor: float) -> float:
    """How far a failing row is from passing: the sum of its guard violations, each on its own scale
    (a metric that could not be computed counts as infinitely far)."""
    scores = row.scores
    gaps = [guards.min_structure - scores["structure_spearman"]]
    if math.isfinite(f1_floor):
        gaps += [f1_floor - scores["nucleus_f1"], scores["invented_area"] - guards.max_invented_area]
    return sum(math.inf if math.isnan(gap) else max(0.0, gap) for gap in gaps)
