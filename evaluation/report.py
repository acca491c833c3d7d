"""What Stain_Evaluation writes: score tables (CSV, JSON), two plots, and the HTML report.

The report is read by biologists as much as by engineers: its columns carry plain names with a
direction arrow and a unit (:mod:`evaluation.glossary`; the files keep the identifiers), it has
one row per test image, and it shows the same crops, chosen by name only, for the epoch, the
baselines, every epoch and every compared experiment, each linked to its full-size file.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import re
import shutil
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import numpy as np
from dominate import tags
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, LogLocator, MaxNLocator, NullFormatter
from scipy import ndimage

from data.image_io import write_image
from evaluation import metrics
from evaluation.glossary import COUNTS, METRIC_BY_NAME, METRIC_NAMES, arrow
from evaluation.scoring import (
    BEER_LAMBERT,
    GRAY_INPUT,
    LOOKUP_TABLE,
    PER_IMAGE_METRICS,
    REAL_TILES,
    FittedBaselines,
    Row,
    Sample,
    SplitData,
    load_samples,
    read_uint8,
)
from evaluation.selection import Selection
from util.atomic import atomic_path, write_text_atomic
from util.errors import ImageReadError
from util.html import HTMLPage

#: Colour of the mask outline drawn on colorized images (green: absent from H&E).
OUTLINE_RGB = (0, 220, 0)
#: The columns of the console table: the choosing metric is added in front.
CONSOLE_METRICS = ("lab_swd", "hsv_correlation", "nucleus_f1", "invented_area", "structure_spearman")
#: Per-image columns of ``per_image.csv``.
PER_IMAGE_COLUMNS = ("nucleus_f1", "nucleus_recall", "nucleus_precision", "nuclei_true", "nuclei_predicted",
                     "nuclei_matched", "invented_area", "structure_spearman", "dice")  # fmt: skip
#: Plot styles of the baseline and sanity rows.
ROW_STYLES = {
    "baseline: gray input": ("tab:gray", "s"),
    "baseline: Beer-Lambert": ("tab:orange", "D"),
    "baseline: lookup table": ("tab:purple", "^"),
    "sanity: real H&E ignoring the input": ("tab:red", "X"),
}


def json_value(value: object) -> object:
    """A JSON-safe value: NaN becomes null."""
    return None if isinstance(value, float) and math.isnan(value) else value


def records(rows: list[Row], picked: Selection) -> list[dict[str, object]]:
    """One flat record per row: identity, guard verdict, every metric and its interval."""
    chosen = picked.chosen
    result = []
    for row in rows:
        record: dict[str, object] = {
            "split": row.split,
            "label": row.label,
            "kind": row.kind,
            "chosen": chosen is not None and row.is_epoch and row.label == chosen.label,
            "passes_guards": not row.failed_guards,
            "failed_guards": "; ".join(row.failed_guards),
        }
        for name in METRIC_NAMES:
            record[name] = row.scores.get(name, math.nan)
            if name in PER_IMAGE_METRICS:
                low, high = row.intervals.get(name, (math.nan, math.nan))
                record[f"{name}_ci_low"], record[f"{name}_ci_high"] = low, high
        result.append(record)
    return result


def write_tables(rows: list[Row], picked: Selection, out: Path) -> None:
    """``scores.csv``/``scores.json`` (a row per split, epoch and baseline) and ``per_image.csv``."""
    table = records(rows, picked)
    write_text_atomic(out / "scores.csv", _csv(list(table[0]), table))
    write_text_atomic(
        out / "scores.json",
        json.dumps([{key: json_value(value) for key, value in record.items()} for record in table], indent=2) + "\n",
    )
    per_image = [{"split": row.split, **item} for row in rows for item in row.per_image]
    write_text_atomic(out / "per_image.csv", _csv(["split", "label", "image", *PER_IMAGE_COLUMNS], per_image))


def computed_metrics(rows: list[Row]) -> list[str]:
    """The metrics some row has a value for (FID/KID without weights, nucleus metrics without masks are left out)."""
    return [name for name in METRIC_NAMES if any(math.isfinite(row.scores.get(name, math.nan)) for row in rows)]


def format_table(rows: list[Row], picked: Selection, title: str) -> str:
    """A console table of the main metrics, the chosen epoch marked ``*``, guard verdicts at the end."""
    available = set(computed_metrics(rows))
    names = [name for name in (picked.realism_metric, *CONSOLE_METRICS) if name in available]
    names = list(dict.fromkeys(names))
    header = [title, *[f"{name} {arrow(name)}" for name in names], "guards"]
    lines = [header]
    for row in rows:
        mark = "*" if picked.chosen is not None and row.is_epoch and row.label == picked.chosen.label else " "
        verdict = "pass" if not row.failed_guards else "FAIL"
        lines.append([f"{mark} {row.label}", *[_cell(row.scores[name]) for name in names], verdict])
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(widths[0]) if index == 0 else cell.rjust(widths[index]) for index, cell in enumerate(line))
        for line in lines
    )


# -- plots ----------------------------------------------------------------------------------------
def plot_metrics(rows: list[Row], picked: Selection, path: Path) -> Path | None:
    """One panel per metric against the epoch; baselines as dashed lines, the chosen epoch marked."""
    epochs = [row for row in rows if row.is_epoch and row.label.isdigit()]
    if not epochs:
        return None
    names = [name for name in computed_metrics(rows) if name not in ("nucleus_recall", "nucleus_precision")]
    columns = 4
    grid_rows = math.ceil(len(names) / columns)
    figure = Figure(figsize=(3.6 * columns, 2.9 * grid_rows))
    axes = figure.subplots(grid_rows, columns, squeeze=False)
    x = [int(row.label) for row in epochs]
    for axis, name in zip(axes.flat, names, strict=False):
        axis.plot(x, [row.scores[name] for row in epochs], "o-", color="tab:blue", markersize=3, label="epochs")
        if name in PER_IMAGE_METRICS:
            low, high = zip(*(row.intervals.get(name, (math.nan, math.nan)) for row in epochs), strict=True)
            axis.fill_between(x, low, high, color="tab:blue", alpha=0.15, linewidth=0)
        for row in rows:
            if not row.is_epoch:
                colour, _ = ROW_STYLES.get(row.label, ("black", "o"))
                axis.axhline(row.scores[name], linestyle="--", color=colour, linewidth=1, label=row.label)
        if picked.chosen is not None and picked.chosen.label.isdigit():
            axis.axvline(int(picked.chosen.label), color="tab:green", linewidth=1, alpha=0.7, label="chosen epoch")
        metric = METRIC_BY_NAME[name]
        axis.set_title(f"{_wrap(metric.title + ' ' + metric.arrow, 42)}\n({metric.unit}; {metric.axis})", fontsize=8)
        axis.set_xlabel("epoch", fontsize=8)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.tick_params(labelsize=7)
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(names) :]:
        axis.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), fontsize=8)
    figure.tight_layout(rect=(0, 0.08, 1, 1))
    return _save(figure, path)


def plot_axes(rows: list[Row], picked: Selection, path: Path) -> Path:
    """Realism against faithfulness: every epoch and baseline a point, the guards drawn as lines.

    Left: the choosing realism metric against nucleus F1 (or structure without masks); right:
    against the invented area. The region an epoch must lie in is unshaded.
    """
    x_name = picked.realism_metric
    has_masks = math.isfinite(picked.f1_floor)
    panels = [("nucleus_f1", picked.f1_floor, "min"), ("invented_area", picked.guards.max_invented_area, "max")]
    if not has_masks:
        panels = [("structure_spearman", picked.guards.min_structure, "min")]
    figure = Figure(figsize=(5.2 * len(panels), 4.4))
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    epochs = [row for row in rows if row.is_epoch]
    for axis, (y_name, bound, side) in zip(axes, panels, strict=True):
        xs = [row.scores[x_name] for row in epochs]
        ys = [row.scores[y_name] for row in epochs]
        colours = np.linspace(0.25, 1.0, len(epochs))
        axis.scatter(xs, ys, c=colours, cmap="Blues", vmin=0, vmax=1, edgecolors="tab:blue", s=28, label="epochs")
        for row, x, y in zip(epochs, xs, ys, strict=True):
            axis.annotate(row.label, (x, y), fontsize=6, xytext=(3, 2), textcoords="offset points")
        for row in rows:
            if not row.is_epoch:
                colour, marker = ROW_STYLES.get(row.label, ("black", "o"))
                axis.scatter(row.scores[x_name], row.scores[y_name], color=colour, marker=marker, s=60, label=row.label)
        chosen = picked.chosen
        if chosen is not None:
            axis.scatter(chosen.scores[x_name], chosen.scores[y_name], s=220, facecolors="none",
                         edgecolors="tab:green", linewidths=2, label=f"chosen: epoch {chosen.label}")  # fmt: skip
        guard_names = {"nucleus_f1": "guard: Beer-Lambert F1 - margin", "invented_area": "guard: largest invented area"}
        axis.axhline(bound, color="black", linestyle=":", linewidth=1.2, label=guard_names.get(y_name, "guard"))
        low, high = axis.get_ylim()
        if side == "min":
            axis.axhspan(low, bound, color="tab:red", alpha=0.08)
        else:
            axis.axhspan(bound, high, color="tab:red", alpha=0.08)
        axis.set_ylim(low, high)
        x_metric, y_metric = METRIC_BY_NAME[x_name], METRIC_BY_NAME[y_name]
        if not x_metric.higher_is_better:  # distances span the gray input's 25 to an epoch's 1: a log axis shows both
            axis.set_xscale("log")
            axis.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            axis.xaxis.set_major_formatter(FormatStrFormatter("%g"))
            axis.xaxis.set_minor_formatter(NullFormatter())
        axis.set_xlabel(_wrap(f"realism: {x_metric.title} {x_metric.arrow} ({x_metric.unit})", 60))
        axis.set_ylabel(_wrap(f"{y_metric.title} {y_metric.arrow} ({y_metric.unit})", 34))
        axis.set_title(_wrap(f"faithfulness: {y_metric.title}", 60), fontsize=10)
        axis.grid(alpha=0.3)
    legend: dict[str, object] = {}
    for axis in axes:
        handles, labels = axis.get_legend_handles_labels()
        legend.update(zip(labels, handles, strict=True))
    figure.legend(list(legend.values()), list(legend), loc="lower center", ncol=3, fontsize=8)
    figure.suptitle(f"Realism against faithfulness ({picked.split} split); shaded: fails the guard", fontsize=11)
    figure.tight_layout(rect=(0, 0.16, 1, 0.95), w_pad=3.0)
    return _save(figure, path)


def _wrap(text: str, width: int) -> str:
    """Plain metric names are long: break them over lines in plot titles and labels."""
    return textwrap.fill(text, width)


def _save(figure: Figure, path: Path) -> Path:
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=90, format="png")
    return path


# -- HTML -----------------------------------------------------------------------------------------
#: Crops shown in the image sections: spread evenly over the split's images sorted by name.
CROPS_SHOWN = 6
#: Thumbnails are shown 1:1 up to this width (pixels), scaled down above it; a click opens the full file.
THUMBNAIL_WIDTH = 160
#: What each baseline and sanity row is, in a few words.
ROW_DESCRIPTIONS = {
    GRAY_INPUT: "the input itself, no colour",
    BEER_LAMBERT: "physics false-colour H&E (Giacomelli et al. 2016)",
    LOOKUP_TABLE: "one H&E colour per input brightness, fit on the training images",
    REAL_TILES: "real H&E tiles in place of the stain: realistic but unrelated to the input; must fail",
}
#: The per-image table: nucleus counts, then per-image metrics (the image's own colour distance is added last).
PER_IMAGE_TABLE = ("nuclei_true", "nuclei_predicted", "nuclei_matched", "nucleus_f1", "dice", "invented_area",
                   "structure_spearman")  # fmt: skip
#: The scores printed under a crop: (identifier, short name).
CROP_SCORES = (("nucleus_f1", "F1"), ("dice", "Dice"))
REPORT_STYLE = """
.verdict { font-size: 1.1em; font-weight: bold; }
th { vertical-align: bottom; text-align: center; font-weight: normal; }
th .name { font-weight: bold; }
th small, td small, figcaption small { color: #555; }
code.id { font-size: 0.8em; color: #777; }
th.group { background: #f2f2f2; }
tr.chosen td { background: #eaf6ea; }
td.fail { color: #a00; text-align: left; }
td.pass { color: #070; text-align: left; }
dl dt { font-weight: bold; margin-top: 0.5em; }
dl dd { margin-left: 1.5em; }
.crop-name { font-weight: bold; margin: 0.8em 0 0.2em; }
.missing { border: 1px dashed #aaa; color: #777; display: flex; align-items: center; justify-content: center; }
"""


@dataclass(frozen=True)
class PixelSize:
    """Micrometres per pixel of the inputs and of the real H&E, where a preparation script recorded them."""

    input_um: float | None = None
    reference_um: float | None = None
    source: str = ""  # the file read, or looked for


@dataclass
class Comparison:
    """Another evaluated experiment, shown beside this one: its chosen (or closest) epoch on the same crops.

    ``row``: its scores computed by this run on this run's images, masks, reference and stain
    model, so that rows compare like with like (None when its folder holds none of the images).
    """

    name: str
    results_dir: Path
    label: str
    chosen: bool
    folder: Path | None
    row: Row | None
    notes: list[str] = field(default_factory=list)


@dataclass
class Gallery:
    """What the image sections show besides the scores: every epoch folder of the shown split, the
    compared experiments, the scale, and how many crops."""

    name: str = ""
    epoch_folders: list[tuple[str, Path]] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    pixel_size: PixelSize = field(default_factory=PixelSize)
    crops: int = CROPS_SHOWN


def spread(total: int, count: int) -> list[int]:
    """``count`` indices spread evenly over ``range(total)``, first and last included (all when fewer)."""
    if total <= count:
        return list(range(total))
    if count <= 1:
        return [0][:count]
    return [round(index * (total - 1) / (count - 1)) for index in range(count)]


def pick_crops(stems: list[str], count: int) -> list[str]:
    """``count`` image names spread evenly over ``stems`` sorted by name.

    Chosen by name only, never by a score, so the same crops appear for every epoch, baseline and
    experiment, and a rerun shows the same ones.
    """
    ordered = sorted(stems)
    return [ordered[index] for index in spread(len(ordered), count)]


def row_name(row: Row, picked: Selection | None = None) -> str:
    """The plain name of a row: ``epoch 2 (chosen)``, ``Beer-Lambert``, ``real H&E ignoring the input``."""
    if not row.is_epoch:
        return row.label.split(": ", 1)[-1]
    if picked is not None and picked.chosen is not None and row.label == picked.chosen.label:
        return f"epoch {row.label} (chosen)"
    if (
        picked is not None
        and picked.chosen is None
        and picked.closest is not None
        and row.label == picked.closest.label
    ):
        return f"epoch {row.label} (closest; fails the guards)"
    return f"epoch {row.label}"


def write_html(
    rows: list[Row],
    picked: Selection,
    splits: dict[str, SplitData],
    fitted: FittedBaselines,
    out: Path,
    notes: list[str],
    gallery: Gallery | None = None,
) -> Path:
    """``report.html``: the verdict, the notes, score tables with plain column names and short definitions,
    every image's scores, the same crops for the epoch and the baselines, for every epoch and every
    compared experiment, and the plots."""
    gallery = gallery or Gallery()
    page = HTMLPage(f"Stain evaluation of {gallery.name}" if gallery.name else "Stain evaluation")
    with page.document.head:
        tags.style(REPORT_STYLE)
    split = splits.get("test") or splits[picked.split]
    reported = _reported_row(rows, picked, split.name)
    folders = gallery.epoch_folders or split.folders
    samples = _shown_samples(reported, split, folders)
    with page.document:
        tags.p(picked.verdict(), cls="verdict")
        tags.p(
            "Two questions are answered apart and never averaged: realism (do the colours look like real H&E?) and "
            "faithfulness (are the nuclei stained where the input has them?). In every table ↑ means higher is "
            "better and ↓ lower is better; hover over a column name for its meaning, or read the definitions below "
            "the tables."
        )
        if samples:
            tags.p(scale_note(samples, split, gallery.pixel_size), cls="scale")
        _add_guards(picked)
        if notes:
            tags.h3("Notes")
            for note in notes:
                tags.p(note)
        for name in ("test", "val"):
            split_rows = [row for row in rows if row.split == name]
            if split_rows:
                tags.h3(_table_title(name, picked))
                _score_table([(row, row_name(row, picked)) for row in split_rows], picked)
                tags.p(tags.small("Brackets: 95% bootstrap interval over images."))
        _add_definitions(computed_metrics(rows))
        if gallery.comparisons:
            _add_comparison_table(rows, picked, split, reported, gallery)
        if reported is not None and samples:
            (out / "images").mkdir(exist_ok=True)  # a file in its place is named as such, before any image
            shown = set(pick_crops([sample.stem for sample in samples], gallery.crops))
            crops = [sample for sample in samples if sample.stem in shown]
            name = row_name(reported, picked)
            _add_per_image_table(reported, name, samples, split, shown)
            _add_crop_grid(crops, reported, name, rows, split, fitted, folders, out)
            if gallery.comparisons:
                _add_experiment_strips(crops, reported, name, split, folders, gallery, out)
            _add_epoch_strips(crops, reported, name, split, folders, out)
        tags.h3("Realism against faithfulness")
        _figure("realism_vs_faithfulness.png", "realism against faithfulness", 900)
        if (out / "metrics_vs_epoch.png").is_file():
            tags.h3("Every score against the epoch")
            _figure("metrics_vs_epoch.png", "metrics against the epoch", 1100)
    return page.save(out / "report.html")


def _reported_row(rows: list[Row], picked: Selection, split: str) -> Row | None:
    """The reported epoch's row on the split whose images are shown."""
    shown = picked.reported
    if shown is None:
        return None
    return next((row for row in rows if row.split == split and row.is_epoch and row.label == shown.label), None)


def _shown_samples(row: Row | None, split: SplitData, folders: list[tuple[str, Path]]) -> list[Sample]:
    """The reported epoch's images of ``split``: those it was scored on."""
    folder = dict([*folders, *split.folders]).get(row.label) if row is not None else None
    if row is None or folder is None:
        return []
    scored = {str(item["image"]) for item in row.per_image}
    return [sample for sample in load_samples(folder, split)[0] if sample.stem in scored]


def _table_title(split: str, picked: Selection) -> str:
    if split == "test" and picked.split == "val":
        if picked.chosen:
            return "Test images: the chosen epoch beside the baselines (the numbers to report)"
        return "Test images: the closest epoch (it FAILS the guards; for comparison only) beside the baselines"
    return f"{'Validation' if split == 'val' else 'Test'} images: every epoch and baseline (the epoch is chosen here)"


def _split_words(split: str) -> str:
    return "test images" if split == "test" else "validation images"


def _add_guards(picked: Selection) -> None:
    guards = picked.guards
    floor = f"at least {picked.f1_floor:.3f}" if math.isfinite(picked.f1_floor) else "not checked (no masks)"
    tags.p("Faithfulness guards: an epoch can be chosen only if it passes every one.")
    with tags.ul():
        tags.li(
            f"{METRIC_BY_NAME['nucleus_f1'].title}: {floor} (the Beer-Lambert baseline's minus {guards.f1_margin:g})"
        )
        tags.li(f"{METRIC_BY_NAME['invented_area'].title}: at most {guards.max_invented_area:g} of the image")
        tags.li(f"{METRIC_BY_NAME['structure_spearman'].title}: at least {guards.min_structure:g}")


def _metric_header(name: str) -> None:
    """A column header: plain name and arrow, the unit, the identifier in small type; the meaning on hover."""
    metric = METRIC_BY_NAME[name]
    with tags.th(title=f"{metric.name}: {metric.direction}. {metric.meaning}", data_metric=name):
        tags.span(f"{metric.title} {metric.arrow}", cls="name")
        tags.br()
        tags.small(metric.unit)
        tags.br()
        tags.code(metric.name, cls="id")


def _score_table(entries: list[tuple[Row, str]], picked: Selection | None) -> None:
    """Rows of scores under two header rows: the axis, then each metric's plain name, arrow and unit."""
    names = computed_metrics([row for row, _ in entries])
    groups = {
        "realism": "Realism: do the colours look like real H&E?",
        "faithfulness": "Faithfulness: does the stain follow the input?",
    }
    columns = {axis: [name for name in names if METRIC_BY_NAME[name].axis == axis] for axis in groups}
    chosen = picked.chosen.label if picked is not None and picked.chosen is not None else None
    with tags.table(cls="scores"):
        with tags.tr():
            tags.th("", rowspan=2)
            for axis, text in groups.items():
                if columns[axis]:
                    tags.th(text, colspan=len(columns[axis]), cls="group")
            tags.th("faithfulness guards", rowspan=2)
        with tags.tr():
            for name in (name for axis in groups for name in columns[axis]):
                _metric_header(name)
        for row, label in entries:
            with tags.tr(cls="chosen" if row.is_epoch and row.label == chosen else "row", data_row=row.label):
                with tags.td():
                    tags.span(label)
                    if row.label in ROW_DESCRIPTIONS:
                        tags.br()
                        tags.small(ROW_DESCRIPTIONS[row.label])
                for name in (name for axis in groups for name in columns[axis]):
                    _value_cell(row.scores.get(name, math.nan), name, row.intervals.get(name))
                if row.failed_guards:
                    tags.td("fails: " + "; ".join(row.failed_guards), cls="fail")
                else:
                    tags.td("pass", cls="pass")


def _value_cell(value: float, name: str, interval: tuple[float, float] | None = None) -> None:
    """A number (``-`` when not computed), its interval in small type below; ``data-value`` holds it unrounded."""
    with tags.td(data_metric=name, data_value=repr(float(value)) if math.isfinite(value) else ""):
        tags.span(_cell(value))
        if interval is not None and math.isfinite(value) and all(math.isfinite(bound) for bound in interval):
            tags.br()
            tags.small(f"[{_cell(interval[0])}, {_cell(interval[1])}]")


def _add_definitions(names: list[str]) -> None:
    """The short definition list of the computed metrics, from the one glossary table."""
    tags.h3("What the scores mean")
    with tags.dl(cls="definitions"):
        for name in names:
            metric = METRIC_BY_NAME[name]
            with tags.dt(data_metric=name):
                tags.span(f"{metric.title} {metric.arrow} ({metric.unit}; {metric.direction}) ")
                tags.code(name, cls="id")
            tags.dd(metric.meaning)


def _add_comparison_table(
    rows: list[Row], picked: Selection, split: SplitData, reported: Row | None, gallery: Gallery
) -> None:
    """This experiment's reported epoch, every compared experiment's, and two baselines, on the same images."""
    tags.h3(f"Other experiments on the same {_split_words(split.name)}")
    tags.p(
        "Each experiment's own chosen epoch (its closest one when none passed its guards), scored here with this "
        "run's images, masks, real H&E and stain model, so the rows compare like with like; the guards are this "
        "run's."
    )
    entries = []
    if reported is not None:
        entries.append((reported, f"{gallery.name or 'this experiment'}: {row_name(reported, picked)}"))
    for other in gallery.comparisons:
        if other.row is not None:
            state = "chosen" if other.chosen else "closest; none passed its guards"
            entries.append((other.row, f"{other.name}: epoch {other.label} ({state})"))
    baselines = [row for row in rows if row.split == split.name and row.label in (BEER_LAMBERT, LOOKUP_TABLE)]
    _score_table([*entries, *[(row, row_name(row)) for row in baselines]], None)
    for other in gallery.comparisons:
        for note in other.notes:
            tags.p(f"{other.name}: {note}")


def _add_per_image_table(row: Row, title: str, samples: list[Sample], split: SplitData, shown: set[str]) -> None:
    """One row per image of the reported epoch: nucleus counts, per-image scores and its own colour distance."""
    by_image = _by_image(row)
    colour = "lab_swd_regions" if all(sample.mask is not None for sample in samples) else "lab_swd"
    distances = per_image_colour_distances(samples, split, colour)
    columns = [name for name in PER_IMAGE_TABLE if any(name in item for item in by_image.values())]
    tags.h3(f"Every one of the {len(samples)} {_split_words(split.name)}: {title}")
    tags.p(
        "One row per image, sorted by name. The colour difference compares this image alone with all the real H&E "
        "of the split (noisier than the set's). Images marked ▸ are shown below."
    )
    with tags.table(cls="per-image"):
        with tags.tr():
            tags.th("image")
            for name in columns:
                if name in COUNTS:
                    tags.th(tags.span(COUNTS[name], cls="name"), tags.br(), tags.code(name, cls="id"),
                            data_metric=name, title=f"{name}: a count")  # fmt: skip
                else:
                    _metric_header(name)
            _metric_header(colour)
        for sample in sorted(samples, key=lambda sample: sample.stem):
            item = by_image.get(sample.stem, {})
            with tags.tr(data_image=sample.stem):
                if sample.stem in shown:
                    tags.td(tags.a(f"▸ {sample.stem}", href=f"#crop-{_crop_slug(sample.stem)}"))
                else:
                    tags.td(sample.stem)
                for name in columns:
                    value = float(item.get(name, math.nan))
                    if name in COUNTS and math.isfinite(value):
                        tags.td(f"{value:.0f}", data_metric=name, data_value=repr(value))
                    else:
                        _value_cell(value, name)
                _value_cell(distances[sample.stem], colour)


def per_image_colour_distances(samples: list[Sample], split: SplitData, name: str) -> dict[str, float]:
    """Each image's own colour distance ``name`` (a key of :func:`evaluation.metrics.color_distances`) to the
    split's whole real H&E reference: the set distance, computed on a set of one image."""
    distances = {}
    for sample in samples:
        regions = [sample.mask] if name == "lab_swd_regions" and sample.mask is not None else None
        summary = metrics.summarize_colors([sample.fake_B], [sample.stem], split.stain_model, regions)
        distances[sample.stem] = metrics.color_distances(summary, split.reference_summary)[name]
    return distances


def crop_scores(image: np.ndarray, sample: Sample, split: SplitData) -> dict[str, float]:
    """The faithfulness scores of one colorization of ``sample``'s input (empty when the sizes differ)."""
    if image.shape[:2] != sample.real_A.shape:
        return {}
    truth = None if sample.mask is None else sample.mask[None]
    scores = metrics.faithfulness_scores(image[None], sample.real_A[None], split.stain_model, truth,
                                         split.min_nucleus_area)  # fmt: skip
    return {name: float(values[0]) for name, values in scores.items()}


def scale_note(samples: list[Sample], split: SplitData, pixel_size: PixelSize) -> str:
    """Crop size in pixels (and micrometres when the preparation recorded them), display scale, nucleus size."""
    sizes = sorted({sample.real_A.shape for sample in samples})
    widest = max(width for _, width in sizes)
    if len(sizes) == 1:
        height, width = sizes[0]
        size = f"Each crop is {width} × {height} pixels"
    else:
        size = f"Crops are {sizes[0][1]} × {sizes[0][0]} to {sizes[-1][1]} × {sizes[-1][0]} pixels"
    um = pixel_size.input_um
    if um and len(sizes) == 1:
        size += (
            f" ({sizes[0][1] * um:.3g} × {sizes[0][0] * um:.3g} µm at {um:g} µm per pixel, from {pixel_size.source})"
        )
    elif um:
        size += f" at {um:g} µm per pixel (from {pixel_size.source})"
    shown = "shown 1:1" if widest <= THUMBNAIL_WIDTH else f"shown at most {THUMBNAIL_WIDTH} pixels wide"
    parts = [f"{size}, {shown}; click any image for its full-size file."]
    if not um:
        where = f" in {pixel_size.source}" if pixel_size.source else ""
        parts.append(f"The inputs' pixel size is not recorded{where}, so sizes are in pixels.")
    diameter = typical_nucleus_diameter(
        [split.masks[s.stem] for s in samples if s.stem in split.masks], split.min_nucleus_area
    )
    if diameter is not None:
        microns = f" ({diameter * um:.2g} µm)" if um else ""
        parts.append(f"A typical nucleus of the masks is about {diameter:.0f} pixels across{microns}.")
    if pixel_size.reference_um:
        parts.append(f"The real H&E tiles were cut at {pixel_size.reference_um:g} µm per pixel.")
    return " ".join(parts)


def typical_nucleus_diameter(masks: list[np.ndarray], min_area: int = metrics.MIN_NUCLEUS_AREA) -> float | None:
    """The median equivalent diameter (pixels) of the masks' nuclei, specks below ``min_area`` pixels left
    out as the scores leave them out; None without any."""
    areas = [metrics.label_objects(mask[None], min_area)[2][1:] for mask in masks]
    every = np.concatenate(areas) if areas else np.empty(0)
    return float(2.0 * np.sqrt(np.median(every) / np.pi)) if len(every) else None


def _add_crop_grid(
    crops: list[Sample],
    row: Row,
    name: str,
    rows: list[Row],
    split: SplitData,
    fitted: FittedBaselines,
    folders: list[tuple[str, Path]],
    out: Path,
) -> None:
    """Per crop: input, mask, the epoch's stain, the nuclei read off it, the baselines, an unpaired real H&E tile."""
    tags.h3(f"The model beside the baselines, on {len(crops)} {_split_words(split.name)}")
    tags.p(
        "Crops spread evenly over the images sorted by name (never picked by a score): the same crops in every "
        "section below. Green: the outline of the nucleus mask. 'Nuclei read off the stain' is what the "
        "faithfulness scores see: white where the colour is a nucleus's by the stain model of the real H&E. The "
        "real H&E is an unpaired example of the target stain (no real H&E of these cells exists), a different tile "
        "per crop, cut to the crop's size. Under each stain: this crop's own scores."
    )
    baselines = {other.label: _by_image(other) for other in rows if other.split == split.name and not other.is_epoch}
    colorized = fitted.colorizations(crops)
    tiles = spread(len(split.reference), len(crops))
    folder = dict([*split.folders, *folders])[row.label]
    for index, sample in enumerate(crops):
        base, shape = _crop_folder(split, sample), sample.real_A.shape
        tags.p(sample.stem, cls="crop-name", id=f"crop-{_crop_slug(sample.stem)}")
        with tags.div(cls="row", data_section="grid", data_crop=sample.stem):
            _thumb(_copied(out, f"{base}/input.png", folder / "images" / f"{sample.stem}_real_A.png"), "input", shape)
            if sample.mask is not None:
                outlined = _outline(_gray_rgb(sample.real_A), sample.mask)
                _thumb(_written(out, f"{base}/mask.png", outlined), "input, mask outlined", shape)
            stain = folder / "images" / f"{sample.stem}_fake_B.png"
            scores = _score_text(_by_image(row).get(sample.stem, {}))
            _thumb(_copied(out, f"{base}/epoch_{_slug(row.label)}.png", stain), name, shape, scores)
            nuclei = metrics.nucleus_objects(sample.fake_B[None], split.stain_model, split.min_nucleus_area)[0] > 0
            nucleus_map = _outline(_gray_rgb(np.where(nuclei, 255, 0).astype(np.uint8)), sample.mask)
            _thumb(
                _written(out, f"{base}/nuclei_read_off_the_stain.png", nucleus_map), "nuclei read off the stain", shape
            )
            for label in (BEER_LAMBERT, LOOKUP_TABLE):
                if label in colorized:
                    image = colorized[label][index].fake_B
                    scores = _score_text(baselines.get(label, {}).get(sample.stem) or crop_scores(image, sample, split))
                    caption = label.split(": ", 1)[-1]
                    _thumb(_written(out, f"{base}/{_slug(caption)}.png", image), caption, shape, scores)
            if tiles:
                tile = tiles[index % len(tiles)]
                real = _cut(split.reference[tile], shape)
                _thumb(
                    _written(out, f"{base}/real_HE.png", real),
                    "real H&E (unpaired)",
                    shape,
                    split.reference_names[tile],
                )


def _add_experiment_strips(
    crops: list[Sample],
    row: Row,
    name: str,
    split: SplitData,
    folders: list[tuple[str, Path]],
    gallery: Gallery,
    out: Path,
) -> None:
    """Per crop: input, mask, this experiment's reported epoch and every compared experiment's."""
    tags.h3("The same crops from every experiment")
    tags.p("Each experiment's reported epoch; under each stain, this crop's own scores.")
    for sample in crops:
        base, shape = _crop_folder(split, sample), sample.real_A.shape
        tags.p(sample.stem, cls="crop-name")
        with tags.div(cls="row", data_section="experiments", data_crop=sample.stem):
            _thumb(f"{base}/input.png", "input", shape)
            if sample.mask is not None:
                _thumb(f"{base}/mask.png", "input, mask outlined", shape)
            scores = _score_text(_by_image(row).get(sample.stem, {}))
            _thumb(
                f"{base}/epoch_{_slug(row.label)}.png", f"{gallery.name or 'this experiment'}: {name}", shape, scores
            )
            for number, other in enumerate(gallery.comparisons, 1):
                caption = f"{other.name}: epoch {other.label}"
                source = other.folder / "images" / f"{sample.stem}_fake_B.png" if other.folder else None
                if source is None or not source.is_file():
                    _missing(f"{caption}: no image", shape)
                    continue
                known = _by_image(other.row).get(sample.stem) if other.row is not None else None
                relative = f"{base}/experiment_{number}_{_slug(other.name)}_epoch_{_slug(other.label)}.png"
                scores = _score_text(known or _scores_of_file(source, sample, split))
                _thumb(_copied(out, relative, source), caption, shape, scores)


def _add_epoch_strips(
    crops: list[Sample], row: Row, name: str, split: SplitData, folders: list[tuple[str, Path]], out: Path
) -> None:
    """Per crop: its input, then every evaluated epoch's stain of it, in order."""
    tags.h3(f"The same crops at every epoch ({len(folders)} epochs)")
    tags.p(
        "One strip per crop: the input, then the stain of every epoch in order. Under each, this crop's own nucleus "
        "F1 and Dice: a single crop is noisy, so these are for looking, not for choosing."
    )
    for sample in crops:
        base, shape = _crop_folder(split, sample), sample.real_A.shape
        tags.p(sample.stem, cls="crop-name")
        with tags.div(cls="row", data_section="epochs", data_crop=sample.stem):
            _thumb(f"{base}/input.png", "input", shape)
            for label, folder in folders:
                caption = name if label == row.label else f"epoch {label}"
                source = folder / "images" / f"{sample.stem}_fake_B.png"
                if not source.is_file():
                    _missing(f"{caption}: not translated", shape)
                    continue
                href = _copied(out, f"{base}/epoch_{_slug(label)}.png", source)
                _thumb(href, caption, shape, _score_text(_scores_of_file(source, sample, split)))


def _scores_of_file(path: Path, sample: Sample, split: SplitData) -> dict[str, float]:
    """:func:`crop_scores` of a colorization file (empty when it cannot be read)."""
    try:
        return crop_scores(read_uint8(path, 3), sample, split)
    except ImageReadError:
        return {}


def _by_image(row: Row) -> dict[str, dict[str, float | str]]:
    return {str(item["image"]): item for item in row.per_image}


def _score_text(scores: dict[str, float | str]) -> str:
    """``F1 0.80 · Dice 0.75`` from a crop's scores (empty without masks)."""
    return " · ".join(f"{short} {float(scores[name]):.2f}" for name, short in CROP_SCORES if name in scores)


def _crop_folder(split: SplitData, sample: Sample) -> str:
    return f"images/{split.name}/{_crop_slug(sample.stem)}"


def _crop_slug(stem: str) -> str:
    """A file and anchor name for one crop: the stem itself where it is safe, else its slug and a short hash,
    so that two names never share a folder."""
    slug = _slug(stem)
    return slug if slug == stem else f"{slug}-{hashlib.blake2b(stem.encode(), digest_size=3).hexdigest()}"


def _slug(text: str) -> str:
    """A file and anchor name of ``text``: letters, digits, ``.``, ``-`` and ``_`` kept, the rest ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "_"


def _thumb(href: str, caption: str, shape: tuple[int, ...], detail: str = "") -> None:
    """A thumbnail linked to its full-size file, with a caption and an optional small second line."""
    width = min(shape[1], THUMBNAIL_WIDTH)
    with tags.figure(data_caption=caption):
        with tags.a(href=quote(href)):
            tags.img(src=quote(href), width=str(width), alt=caption, loading="lazy")
        with tags.figcaption(caption):
            if detail:
                tags.br()
                tags.small(detail)


def _missing(caption: str, shape: tuple[int, ...]) -> None:
    """An empty frame where an image is missing, so the strips stay aligned."""
    width, height = min(shape[1], THUMBNAIL_WIDTH), min(shape[1], THUMBNAIL_WIDTH) * shape[0] // shape[1]
    with tags.figure(data_caption=caption):
        tags.div("missing", cls="missing", style=f"width:{width}px;height:{height}px")
        tags.figcaption(caption)


def _figure(href: str, caption: str, width: int) -> None:
    with tags.div(cls="row"), tags.figure(), tags.a(href=href):
        tags.img(src=href, style=f"width:{width}px", alt=caption)


def _written(out: Path, relative: str, image: np.ndarray) -> str:
    """Write a derived image (an outline, a baseline) under ``out``; return its path relative to the report."""
    write_image(out / relative, image)
    return relative


def _copied(out: Path, relative: str, source: Path) -> str:
    """A full-size copy of ``source`` under ``out`` (a hard link where the file system allows: no space used),
    so the report folder can be moved or sent on its own; return its path relative to the report."""
    destination = out / relative
    with atomic_path(destination) as temporary:
        try:
            if not os.access(source, os.W_OK):  # atomic_path flushes the file it gets: a link must be writable
                raise PermissionError(source)
            os.link(source, temporary)
        except OSError:
            shutil.copyfile(source, temporary)
    return relative


def _gray_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[:, :, None], 3, axis=2)


def _cut(tile: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The centre of a real H&E tile at the crop's size in pixels (the whole tile where it is smaller)."""
    height, width = min(shape[0], tile.shape[0]), min(shape[1], tile.shape[1])
    top, left = (tile.shape[0] - height) // 2, (tile.shape[1] - width) // 2
    return np.ascontiguousarray(tile[top : top + height, left : left + width, :3])


def _outline(image: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """``image`` with the mask's outline drawn in green (unchanged without a mask)."""
    if mask is None:
        return image
    edge = mask & ~ndimage.binary_erosion(mask, iterations=1)
    outlined = image.copy()
    outlined[edge] = OUTLINE_RGB
    return outlined


def _cell(value: float) -> str:
    """A table cell: 3 decimals, 4 significant digits for small values (KID), ``-`` when not computed."""
    if not math.isfinite(value):
        return "-"
    return f"{value:.3f}" if value == 0 or abs(value) >= 0.1 else f"{value:.4g}"


def _csv(columns: list[str], rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", restval="", lineterminator="\n")
    writer.writeheader()
    for record in rows:
        writer.writerow({key: _format(value) for key, value in record.items()})
    return buffer.getvalue()


def _format(value: object) -> object:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return value
