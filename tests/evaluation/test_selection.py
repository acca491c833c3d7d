"""evaluation.selection: the guards, and the choice of the most realistic faithful epoch."""

from __future__ import annotations

import math

import pytest

from evaluation.scoring import BEER_LAMBERT, REAL_TILES, Row
from evaluation.selection import Guards, select
from util.errors import EvaluationError


def row(
    label: str, realism: float, f1: float, invented: float = 0.0, structure: float = 0.9, kind: str = "epoch"
) -> Row:
    scores = {
        "lab_swd_regions": realism, "lab_swd": realism, "hsv_correlation": 0.5,
        "nucleus_f1": f1, "invented_area": invented, "structure_spearman": structure,
    }  # fmt: skip
    return Row(label, kind, "val", scores)


def rows() -> list[Row]:
    return [
        row("5", realism=3.0, f1=0.90),
        row("10", realism=2.0, f1=0.85),  # the most realistic faithful epoch
        row("15", realism=1.0, f1=0.40),  # more realistic still, but loses the nuclei
        row("20", realism=1.5, f1=0.90, invented=0.2),  # paints nuclei the input does not have
        row(BEER_LAMBERT, realism=10.0, f1=0.80, kind="baseline"),
        row(REAL_TILES, realism=0.5, f1=0.0, invented=0.25, structure=0.03, kind="sanity"),
    ]


def test_the_most_realistic_epoch_that_passes_the_guards_is_chosen() -> None:
    picked = select(rows(), Guards())
    assert picked.chosen is not None and picked.chosen.label == "10"
    assert picked.f1_floor == pytest.approx(0.75)
    marked = {item.label: item.failed_guards for item in picked_rows(Guards())}
    assert marked["10"] == [] and marked["5"] == []
    assert any("nucleus F1" in reason for reason in marked["15"])
    assert any("invented area" in reason for reason in marked["20"])
    assert len(marked[REAL_TILES]) == 3  # fails every guard
    assert "Epoch 10 is chosen on the val split" in picked.verdict()


def picked_rows(guards: Guards) -> list[Row]:
    table = rows()
    select(table, guards)
    return table


def test_baselines_other_than_beer_lambert_do_not_change_the_choice() -> None:
    full = rows()
    fewer = [item for item in rows() if item.label != REAL_TILES]
    more = [*rows(), row("baseline: lookup table", realism=0.1, f1=0.95, kind="baseline")]
    labels = {select(table, Guards()).chosen.label for table in (full, fewer, more)}
    assert labels == {"10"}


def test_row_order_does_not_change_the_choice() -> None:
    assert select(rows()[::-1], Guards()).chosen.label == "10"


def test_no_passing_epoch_names_the_closest_and_says_why() -> None:
    table = [row("1", realism=1.0, f1=0.1), row("2", realism=2.0, f1=0.7), row(BEER_LAMBERT, 9.0, 0.9, kind="baseline")]
    picked = select(table, Guards())
    assert picked.chosen is None and picked.closest.label == "2"
    assert "No epoch passes" in picked.verdict() and "closest is epoch 2" in picked.verdict()
    assert "nucleus F1 0.700 < 0.850" in picked.verdict()


def test_guards_are_flags_that_change_the_choice() -> None:
    assert select(rows(), Guards(max_invented_area=0.3)).chosen.label == "20"
    assert select(rows(), Guards(f1_margin=0.5)).chosen.label == "15"


def test_without_masks_only_the_structure_guard_applies() -> None:
    table = [
        row("1", realism=1.0, f1=math.nan, invented=math.nan, structure=0.1),
        row("2", realism=2.0, f1=math.nan, invented=math.nan, structure=0.8),
        row(BEER_LAMBERT, realism=9.0, f1=math.nan, invented=math.nan, structure=1.0, kind="baseline"),
    ]
    picked = select(table, Guards())
    assert picked.chosen.label == "2" and any("No masks" in note for note in picked.notes)


@pytest.mark.parametrize(
    ("guards", "flag"),
    [({"f1_margin": -0.1}, "f1_margin"), ({"max_invented_area": 1.5}, "max_invented_area"),
     ({"min_structure": math.nan}, "min_structure")],
)  # fmt: skip
def test_guards_out_of_range_are_refused(guards: dict[str, float], flag: str) -> None:
    with pytest.raises(EvaluationError, match=flag):
        Guards(**guards)


def test_only_realism_metrics_can_choose() -> None:
    with pytest.raises(EvaluationError, match="realism metric"):
        select(rows(), Guards(), "nucleus_f1")
