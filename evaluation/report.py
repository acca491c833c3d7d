"""What Stain_Evaluation writes: score tables (CSV, JSON), the metrics-per-epoch plot, the HTML report."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from scipy import ndimage

from data.image_io import write_image
from evaluation.scoring import HIGHER_IS_BETTER, METRIC_NAMES, METRICS, Row, Sample
from util.atomic import atomic_path, write_text_atomic
from util.html import HTMLPage

#: Colour of the mask outline drawn on colorized images (green: absent from H&E).
OUTLINE_RGB = (0, 220, 0)


def write_tables(rows: list[Row], best: Row, out: Path) -> None:
    """``scores.csv``/``scores.json`` (a row per epoch and baseline) and ``per_image.csv``."""
    columns = ["label", "kind", *METRIC_NAMES, "composite_rank", "best"]
    records = [
        {
            "label": row.label,
            "kind": "baseline" if row.is_baseline else "epoch",
            **{name: row.scores[name] for name in METRIC_NAMES},
            "composite_rank": row.composite,
            "best": row is best,
        }
        for row in rows
    ]
    write_text_atomic(out / "scores.csv", _csv(columns, records))
    json_records = [{key: (None if _is_nan(value) else value) for key, value in record.items()} for record in records]
    write_text_atomic(out / "scores.json", json.dumps(json_records, indent=2) + "\n")
    per_image = [item for row in rows for item in row.per_image]
    write_text_atomic(
        out / "per_image.csv", _csv(["label", "image", "ssim", "dice", "iou", "dice_hematoxylin"], per_image)
    )


def computed_metrics(rows: list[Row]) -> list[str]:
    """The metrics some row has a value for (FID/KID without weights, Dice without masks are left out)."""
    return [name for name in METRIC_NAMES if any(math.isfinite(row.scores[name]) for row in rows)]


def format_table(rows: list[Row], best: Row) -> str:
    """The score table for the console, the best epoch marked with ``*``."""
    names = computed_metrics(rows)
    header = ["", *names, "composite"]
    lines = [header]
    for row in rows:
        mark = "*" if row is best else " "
        values = [_cell(row.scores[name]) for name in names]
        lines.append([f"{mark} {row.label}", *values, f"{row.composite:.2f}"])
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(widths[0]) if index == 0 else cell.rjust(widths[index]) for index, cell in enumerate(line))
        for line in lines
    )


def plot_metrics(rows: list[Row], best: Row, path: Path) -> Path | None:
    """One panel per metric against the epoch; baselines as dashed lines, the best epoch marked."""
    epochs = [row for row in rows if not row.is_baseline and row.label.isdigit()]
    if not epochs:
        return None
    names = computed_metrics(rows)
    columns = 4
    grid_rows = math.ceil(len(names) / columns)
    figure = Figure(figsize=(3.4 * columns, 2.7 * grid_rows))
    axes = figure.subplots(grid_rows, columns, squeeze=False)
    x = [int(row.label) for row in epochs]
    for axis, name in zip(axes.flat, names, strict=False):
        axis.plot(x, [row.scores[name] for row in epochs], "o-", color="tab:blue", markersize=3, label="epochs")
        for row, colour in zip([r for r in rows if r.is_baseline], ("tab:gray", "tab:orange"), strict=False):
            axis.axhline(row.scores[name], linestyle="--", color=colour, linewidth=1, label=row.label)
        if best.label.isdigit():
            axis.axvline(int(best.label), color="tab:green", linewidth=1, alpha=0.7, label=f"best (epoch {best.label})")
        arrow = "higher is better" if HIGHER_IS_BETTER[name] else "lower is better"
        axis.set_title(f"{name} ({arrow})", fontsize=9)
        axis.set_xlabel("epoch", fontsize=8)
        axis.tick_params(labelsize=7)
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(names) :]:
        axis.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8)
    figure.tight_layout(rect=(0, 0.05, 1, 1))
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=90, format="png")
    return path


def verdict(rows: list[Row], best: Row) -> str:
    """One sentence: does the best epoch beat every baseline on the composite score?"""
    beaten_by = [row.label for row in rows if row.is_baseline and row.composite <= best.composite]
    if beaten_by:
        return (
            f"Epoch {best.label} is the best epoch but does NOT beat {', '.join(beaten_by)} on the composite score: "
            "no trained epoch is worth keeping over that baseline."
        )
    return f"Epoch {best.label} is the best epoch and beats every baseline on the composite score."


def write_html(
    rows: list[Row],
    best: Row,
    samples: list[Sample],
    reference: list[np.ndarray],
    out: Path,
    notes: list[str],
    worst_count: int = 6,
) -> Path:
    """``report.html``: verdict, table, plot, the best epoch's images and its worst images by Dice."""
    page = HTMLPage("Stain evaluation")
    page.add_paragraph(verdict(rows, best))
    for note in notes:
        page.add_paragraph(note)
    page.add_header("Scores (composite: weighted mean rank over the metrics, 1 = best)")
    names = computed_metrics(rows)
    page.add_table(
        ["", *names, "composite"],
        [
            [
                ("* " if row is best else "") + row.label,
                *[_cell(row.scores[name]) for name in names],
                f"{row.composite:.2f}",
            ]
            for row in rows
        ],
    )
    page.add_paragraph("; ".join(f"{name}: {meaning}" for name, _, meaning in METRICS if name in names) + ".")
    if (out / "metrics_vs_epoch.png").is_file():
        page.add_header("Metrics against the epoch")
        page.add_images([("metrics_vs_epoch.png", "metrics against the epoch")], width=1000)
    per_image = {str(item["image"]): item for item in best.per_image}
    page.add_header(f"Epoch {best.label}: input, colorized, mask outline, nearest real H&E")
    for sample in samples[: worst_count * 2]:
        page.add_images(_sample_images(sample, reference, out), width=160)
    with_dice = [sample for sample in samples if "dice" in per_image.get(sample.stem, {})]
    if with_dice:
        worst = sorted(with_dice, key=lambda sample: float(per_image[sample.stem]["dice"]))[:worst_count]
        page.add_header(f"Epoch {best.label}: the {len(worst)} images with the lowest nuclei Dice")
        for sample in worst:
            dice = float(per_image[sample.stem]["dice"])
            page.add_images(_sample_images(sample, reference, out, f" (Dice {dice:.2f})"), width=160)
    return page.save(out / "report.html")


def _sample_images(sample: Sample, reference: list[np.ndarray], out: Path, suffix: str = "") -> list[tuple[str, str]]:
    """Write the four images of a report row; return (relative path, caption) pairs."""
    folder = out / "images"
    files = {
        "input": sample.real_A,
        "colorized": sample.fake_B,
        "nearest_real": _nearest(sample.fake_B, reference),
    }
    if sample.mask is not None:
        files["outline"] = _outline(sample.fake_B, sample.mask)
    entries = []
    for name in ("input", "colorized", "outline", "nearest_real"):
        if name in files:
            relative = f"images/{sample.stem}_{name}.png"
            write_image(folder / f"{sample.stem}_{name}.png", files[name])
            entries.append((relative, f"{sample.stem} {name.replace('_', ' ')}{suffix}"))
    return entries


def _outline(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``image`` with the mask's outline drawn in green."""
    edge = mask & ~ndimage.binary_erosion(mask, iterations=1)
    outlined = image.copy()
    outlined[edge] = OUTLINE_RGB
    return outlined


def _nearest(image: np.ndarray, reference: list[np.ndarray]) -> np.ndarray:
    """The reference tile whose mean colour is closest to ``image``'s (a look-alike, for comparison)."""
    target = image.reshape(-1, 3).mean(axis=0)
    distances = [np.abs(tile.reshape(-1, 3).mean(axis=0) - target).sum() for tile in reference]
    return reference[int(np.argmin(distances))]


def _cell(value: float) -> str:
    """A table cell: 3 decimals, 4 significant digits for small values (KID), ``-`` when not computed."""
    if not math.isfinite(value):
        return "-"
    return f"{value:.3f}" if value == 0 or abs(value) >= 0.1 else f"{value:.4g}"


def _csv(columns: list[str], records: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", restval="")
    writer.writeheader()
    for record in records:
        writer.writerow({key: _format(value) for key, value in record.items()})
    return buffer.getvalue()


def _format(value: object) -> object:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return value


def _is_nan(value: object) -> bool:
    return isinstance(value, float) and math.isnan(value)
