"""What Stain_Evaluation writes: score tables (CSV, JSON), two plots, and the HTML report."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, LogLocator, MaxNLocator, NullFormatter
from scipy import ndimage

from data.image_io import write_image
from evaluation import metrics
from evaluation.scoring import (
    METRIC_BY_NAME,
    METRIC_NAMES,
    METRICS,
    PER_IMAGE_METRICS,
    FittedBaselines,
    Row,
    SplitData,
    load_samples,
)
from evaluation.selection import Selection
from util.atomic import atomic_path, write_text_atomic
from util.html import HTMLPage
from util.stain import StainModel

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


def arrow(name: str) -> str:
    return "↑" if METRIC_BY_NAME[name].higher_is_better else "↓"


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
        better = "higher is better" if metric.higher_is_better else "lower is better"
        axis.set_title(f"{metric.title}\n({metric.axis}, {better})", fontsize=8)
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
        axis.set_xlabel(f"realism: {x_metric.title} ({'higher' if x_metric.higher_is_better else 'lower'} is better)")
        axis.set_ylabel(f"{y_metric.title} ({'higher' if y_metric.higher_is_better else 'lower'} is better)")
        axis.set_title(f"faithfulness: {y_metric.title}", fontsize=10)
        axis.grid(alpha=0.3)
    legend: dict[str, object] = {}
    for axis in axes:
        handles, labels = axis.get_legend_handles_labels()
        legend.update(zip(labels, handles, strict=True))
    figure.legend(list(legend.values()), list(legend), loc="lower center", ncol=3, fontsize=8)
    figure.suptitle(f"Realism against faithfulness ({picked.split} split); shaded: fails the guard", fontsize=11)
    figure.tight_layout(rect=(0, 0.16, 1, 0.95), w_pad=3.0)
    return _save(figure, path)


def _save(figure: Figure, path: Path) -> Path:
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=90, format="png")
    return path


# -- HTML -----------------------------------------------------------------------------------------
def write_html(
    rows: list[Row],
    picked: Selection,
    splits: dict[str, SplitData],
    fitted: FittedBaselines,
    stain_model: StainModel,
    out: Path,
    notes: list[str],
    image_count: int = 8,
) -> Path:
    """``report.html``: verdict, the two axes per split with intervals, plots, and images to look at."""
    page = HTMLPage("Stain evaluation")
    page.add_paragraph(picked.verdict())
    guards = picked.guards
    floor = f"{picked.f1_floor:.3f}" if math.isfinite(picked.f1_floor) else "not checked (no masks)"
    page.add_list(
        [
            f"nucleus F1 at least the Beer-Lambert baseline's minus {guards.f1_margin:g}: {floor}",
            f"invented nucleus area at most {guards.max_invented_area:g} of the image",
            f"structure rank correlation at least {guards.min_structure:g}",
        ],
        "Faithfulness guards (every one must pass):",
    )
    for note in notes:
        page.add_paragraph(note)
    for split in ("test", "val"):
        split_rows = [row for row in rows if row.split == split]
        if not split_rows:
            continue
        if split == "test" and picked.split == "val":
            title = (
                "Test split: the chosen epoch and the baselines (report these)"
                if picked.chosen
                else "Test split: the closest epoch (it FAILS the guards; for comparison only) and the baselines"
            )
        else:
            title = f"{'Validation' if split == 'val' else 'Test'} split: every epoch and baseline (the choice is made here)"
        page.add_header(title)
        _add_score_table(page, split_rows, picked)
    page.add_header("Realism against faithfulness")
    page.add_images([("realism_vs_faithfulness.png", "realism against faithfulness")], width=900)
    if (out / "metrics_vs_epoch.png").is_file():
        page.add_header("Metrics against the epoch")
        page.add_images([("metrics_vs_epoch.png", "metrics against the epoch")], width=1100)
    shown = picked.reported
    split = splits.get("test", splits[picked.split])
    if shown is not None and split is not None:
        _add_samples(page, shown, split, fitted, stain_model, out, image_count)
    page.add_list(
        [f"{metric.title} ({metric.name}, {metric.axis}, {'higher' if metric.higher_is_better else 'lower'} is "
         f"better): {metric.meaning}" for metric in METRICS if metric.name in computed_metrics(rows)],
        "What the columns mean:",
    )  # fmt: skip
    return page.save(out / "report.html")


def _add_score_table(page: HTMLPage, rows: list[Row], picked: Selection) -> None:
    names = computed_metrics(rows)
    realism = [name for name in names if METRIC_BY_NAME[name].axis == "realism"]
    faithfulness = [name for name in names if METRIC_BY_NAME[name].axis == "faithfulness"]
    header = ["", *[f"realism: {METRIC_BY_NAME[name].title} {arrow(name)}" for name in realism]]
    header += [f"faithfulness: {METRIC_BY_NAME[name].title} {arrow(name)}" for name in faithfulness]
    header.append("guards")
    table = []
    for row in rows:
        chosen = picked.chosen is not None and row.is_epoch and row.label == picked.chosen.label
        cells = [("chosen: epoch " if chosen else ("epoch " if row.is_epoch else "")) + row.label]
        for name in realism + faithfulness:
            cell = _cell(row.scores[name])
            if name in row.intervals and math.isfinite(row.scores[name]):
                low, high = row.intervals[name]
                cell += f" [{_cell(low)}, {_cell(high)}]"
            cells.append(cell)
        cells.append("pass" if not row.failed_guards else "fails: " + "; ".join(row.failed_guards))
        table.append(cells)
    page.add_table(header, table)
    page.add_paragraph("Brackets: 95% bootstrap interval over images.")


def _add_samples(
    page: HTMLPage, row: Row, split: SplitData, fitted: FittedBaselines, stain_model: StainModel, out: Path, count: int
) -> None:
    """The same crops as input, mask, the epoch's colorization and its nucleus map, and the baselines."""
    folder = dict(split.folders).get(row.label)
    if folder is None:
        return
    samples, _ = load_samples(folder, split)
    samples = samples[:count]
    if not samples:
        return
    others = fitted.colorizations(samples)
    page.add_header(
        f"{'Test' if split.name == 'test' else 'Validation'} crops: input, epoch {row.label} (mask outlined in green), "
        "its nucleus map (what the faithfulness metrics read), and the baselines. Click for full size."
    )
    for index, sample in enumerate(samples):
        images = [("input", sample.real_A), (f"epoch {row.label}", _outline(sample.fake_B, sample.mask))]
        nuclei = metrics.nucleus_objects(sample.fake_B[None], stain_model, split.min_nucleus_area)[0] > 0
        images.append(("nucleus map", np.where(nuclei, 255, 0).astype(np.uint8)))
        images += [(label.split(": ", 1)[1], colorized[index].fake_B) for label, colorized in others.items()]
        entries = []
        for caption, image in images:
            name = f"images/{split.name}_{sample.stem}_{caption.replace(' ', '_').replace('&', '')}.png"
            write_image(out / name, image)
            entries.append((name, f"{sample.stem}: {caption}"))
        page.add_images(entries, width=150)


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
