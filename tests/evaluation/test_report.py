"""The evaluation report as a biologist reads it: plain column names with directions and units, one row per
test image, the same crops for the epoch, the baselines, every epoch and another experiment, full-size links,
and a scale note. Two synthetic experiments built from the real demo crops are evaluated once per module."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import unquote

import numpy as np
import pytest

from data.image_io import read_array, read_mask_values, write_image
from evaluation import Stain_Evaluation as stain_evaluation
from evaluation import metrics, report
from evaluation.glossary import METRIC_BY_NAME, METRIC_NAMES, METRICS
from tests.helpers import demo_arrays
from util.stain import StainModel, estimate_stain_model

Colorizer = Callable[[np.ndarray, np.ndarray], np.ndarray]
VOID = {"img", "br", "meta", "link", "hr", "input"}


# -- a small HTML tree, enough to read the report -------------------------------------------------
@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = field(default_factory=list)

    def text(self) -> str:
        return " ".join(
            " ".join(child.split()) if isinstance(child, str) else child.text() for child in self.children
        ).strip()

    def all(self, tag: str, **attrs: str) -> list[Node]:
        """Every descendant ``tag`` whose attributes (``data_x`` for ``data-x``) hold the given values."""
        wanted = {key.replace("_", "-"): value for key, value in attrs.items()}
        found = []
        for child in self.children:
            if isinstance(child, Node):
                if child.tag == tag and all(child.attrs.get(key) == value for key, value in wanted.items()):
                    found.append(child)
                found += child.all(tag, **attrs)
        return found


class TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.root = Node("root", {})
        self.open = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {key: value or "" for key, value in attrs})
        self.open[-1].children.append(node)
        if tag not in VOID:
            self.open.append(node)

    def handle_endtag(self, tag: str) -> None:
        while len(self.open) > 1 and self.open.pop().tag != tag:
            pass

    def handle_data(self, data: str) -> None:
        self.open[-1].children.append(data)


def parse(path: Path) -> Node:
    builder = TreeBuilder()
    builder.feed(path.read_text(encoding="utf-8"))
    return builder.root


# -- two experiments ------------------------------------------------------------------------------
def he_colors(demo_root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Mean colours of real nuclear and non-nuclear H&E pixels of trainB."""
    tiles = demo_arrays(demo_root / "trainB")
    nuclear = estimate_stain_model(list(tiles)).nuclear(tiles)
    return tiles[nuclear].mean(axis=0), tiles[~nuclear].mean(axis=0)


def make_results(root: Path, demo_root: Path, epochs: dict[str, Colorizer]) -> Path:
    """``root/<split>_<epoch>/images/<stem>_{real_A,fake_B}.png`` for every demo val and test crop."""
    for split in ("val", "test"):
        for label, colorize in epochs.items():
            images = root / f"{split}_{label}" / "images"
            images.mkdir(parents=True)
            for path in sorted((demo_root / f"{split}A").glob("*.png")):
                real_A = read_array(path)
                write_image(images / f"{path.stem}_real_A.png", real_A)
                mask = read_array(demo_root / f"{split}A_GT" / path.name) > 0
                write_image(images / f"{path.stem}_fake_B.png", colorize(real_A, mask))
    return root


def painter(nucleus: np.ndarray, background: np.ndarray, shift: int = 0) -> Colorizer:
    """Nucleus colour on the mask (moved by ``shift`` pixels), background elsewhere, shaded by the input."""

    def colorize(real_A: np.ndarray, mask: np.ndarray) -> np.ndarray:
        moved = np.roll(mask, (shift, shift), axis=(0, 1))
        shade = 0.85 + 0.15 * real_A[:, :, None] / 255.0
        return np.clip(np.where(moved[:, :, None], nucleus, background) * shade, 0, 255).round().astype(np.uint8)

    return colorize


@pytest.fixture(scope="module")
def experiments(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """``seg`` (epochs 1-3) evaluated with ``--compare cyc`` (epochs 1-2), both on the demo data."""
    nucleus, background = he_colors(demo_root)
    root = tmp_path_factory.mktemp("results")
    gray: Colorizer = lambda real_A, mask: np.repeat(real_A[:, :, None], 3, axis=2)  # noqa: E731
    cyc = make_results(
        root / "cyc", demo_root, {"1": painter(nucleus, background, 30), "2": painter(nucleus * 1.1, background)}
    )
    seg = make_results(
        root / "seg", demo_root, {"1": gray, "2": painter(nucleus, background), "3": painter(nucleus * 0.9, background)}
    )
    common = ["--dataroot", str(demo_root), "--workers", "1"]
    assert stain_evaluation.main(["--results_dir", str(cyc), *common]) == 0
    assert stain_evaluation.main(["--results_dir", str(seg), *common, "--compare", str(cyc), "--crops", "4"]) == 0
    out = seg / "evaluation"
    stems = sorted(path.stem for path in (demo_root / "testA").glob("*.png"))
    return SimpleNamespace(
        seg=seg, cyc=cyc, out=out, page=parse(out / "report.html"), stems=stems, demo_root=demo_root,
        chosen=json.loads((out / "selection.json").read_text())["test_epoch"],
        other=json.loads((cyc / "evaluation" / "selection.json").read_text())["test_epoch"],
        selection=json.loads((out / "selection.json").read_text()),
    )  # fmt: skip


def section(page: Node, name: str) -> dict[str, Node]:
    """The strips of one image section by crop name."""
    return {strip.attrs["data-crop"]: strip for strip in page.all("div", data_section=name)}


def figures(strip: Node) -> list[tuple[str, Path | None]]:
    """(caption, linked file) of every image of a strip, in order; None for a missing-image frame."""
    found = []
    for figure in strip.all("figure"):
        links = figure.all("a")
        found.append((figure.attrs["data-caption"], Path(unquote(links[0].attrs["href"])) if links else None))
    return found


# -- the tables -----------------------------------------------------------------------------------
def test_score_headers_carry_plain_names_arrows_and_units_not_bare_identifiers(experiments: SimpleNamespace) -> None:
    tables = experiments.page.all("table", **{"class": "scores"})
    assert len(tables) == 3  # test, validation, and the comparison with the other experiment
    for table in tables:
        headers = [header for header in table.all("th") if "data-metric" in header.attrs]
        assert {header.attrs["data-metric"] for header in headers} >= {"lab_swd_regions", "nucleus_f1", "dice"}
        for header in headers:
            metric = METRIC_BY_NAME[header.attrs["data-metric"]]
            visible = header.all("span", **{"class": "name"})[0].text()
            assert visible == f"{metric.title} {metric.arrow}" and visible != metric.name
            assert metric.arrow in ("↑", "↓") and (metric.arrow == "↑") == metric.higher_is_better
            assert metric.unit in header.text() and metric.meaning in header.attrs["title"]
            assert [code.text() for code in header.all("code")] == [metric.name]  # the identifier in small type only
    assert METRIC_BY_NAME["lab_swd_regions"].title == "colour difference from real H&E, nuclei and tissue apart"
    assert all(metric.unit and metric.meaning.endswith(".") for metric in METRICS)


def test_the_definitions_are_a_short_list_built_from_the_glossary(experiments: SimpleNamespace) -> None:
    terms = experiments.page.all("dt")
    shown = [term.attrs["data-metric"] for term in terms]
    scores = json.loads((experiments.out / "scores.json").read_text())
    computed = [name for name in METRIC_NAMES if any(row[name] is not None for row in scores)]
    assert shown == computed  # every computed metric once, in the glossary's order
    assert {"lab_swd", "hsv_correlation", "hematoxylin_w1", "nucleus_f1"} <= set(shown)
    assert "fid" not in shown  # not computed without the Inception weights: not defined either
    for term, definition in zip(terms, experiments.page.all("dd"), strict=True):
        metric = METRIC_BY_NAME[term.attrs["data-metric"]]
        assert metric.direction in term.text() and definition.text() == " ".join(metric.meaning.split())


def test_the_per_image_table_has_one_row_per_test_image_matching_the_metric_functions(
    experiments: SimpleNamespace,
) -> None:
    table = experiments.page.all("table", **{"class": "per-image"})[0]
    rows = table.all("tr")[1:]
    assert [row.attrs["data-image"] for row in rows] == experiments.stems
    demo = experiments.demo_root
    model = StainModel.from_dict(experiments.selection["stain_model"])
    masks = {stem: read_mask_values(demo / "testA_GT" / f"{stem}.png") > 0 for stem in experiments.stems}
    min_area = metrics.minimum_nucleus_area(list(masks.values()))
    tiles = demo_arrays(demo / "testB")
    names = sorted(path.name for path in (demo / "testB").glob("*.png"))
    reference = metrics.summarize_colors(list(tiles), names, model, [model.nuclear(tile) for tile in tiles])
    images = experiments.seg / f"test_{experiments.chosen}" / "images"
    for row in rows:
        stem = row.attrs["data-image"]
        fake, real = read_array(images / f"{stem}_fake_B.png"), read_array(images / f"{stem}_real_A.png")
        expected = metrics.faithfulness_scores(fake[None], real[None], model, masks[stem][None], min_area)
        summary = metrics.summarize_colors([fake], [stem], model, [masks[stem]])
        expected["lab_swd_regions"] = np.array([metrics.color_distances(summary, reference)["lab_swd_regions"]])
        cells = {cell.attrs["data-metric"]: cell for cell in row.all("td") if "data-metric" in cell.attrs}
        assert set(cells) == {*report.PER_IMAGE_TABLE, "lab_swd_regions"}
        for name, cell in cells.items():
            assert math.isclose(float(cell.attrs["data-value"]), float(expected[name][0]), rel_tol=1e-9, abs_tol=1e-12)


# -- the images -----------------------------------------------------------------------------------
def test_the_same_crops_spread_over_the_names_appear_in_every_section(experiments: SimpleNamespace) -> None:
    crops = report.pick_crops(experiments.stems, 4)
    stems = experiments.stems
    assert crops == [stems[0], stems[2], stems[4], stems[6]]  # spread over the 7 test images, first and last in
    page = experiments.page
    for name in ("grid", "epochs", "experiments"):
        assert list(section(page, name)) == crops, name
    for crop, strip in section(page, "epochs").items():
        captions = [caption for caption, _ in figures(strip)]
        assert captions[0] == "input" and len(captions) == 4  # the input, then epochs 1, 2, 3
        for label, (caption, path) in zip(("1", "2", "3"), figures(strip)[1:], strict=True):
            assert caption.startswith(f"epoch {label}")
            source = experiments.seg / f"test_{label}" / "images" / f"{crop}_fake_B.png"
            assert path is not None and (experiments.out / path).read_bytes() == source.read_bytes()
    rows = [row.attrs["data-image"] for row in page.all("tr") if "data-image" in row.attrs]
    marked = [row.attrs["data-image"] for row in page.all("tr") if "data-image" in row.attrs and "▸" in row.text()]
    assert rows == stems and marked == crops


def test_the_grid_shows_the_model_beside_both_baselines_and_distinct_real_tiles(experiments: SimpleNamespace) -> None:
    grid = section(experiments.page, "grid")
    real_tiles = []
    for crop, strip in grid.items():
        shown = figures(strip)
        captions = [caption for caption, _ in shown]
        assert captions == ["input", "input, mask outlined", f"epoch {experiments.chosen} (chosen)",
                            "nuclei read off the stain", "Beer-Lambert", "lookup table", "real H&E (unpaired)"]  # fmt: skip
        model = experiments.seg / f"test_{experiments.chosen}" / "images" / f"{crop}_fake_B.png"
        assert (experiments.out / shown[2][1]).read_bytes() == model.read_bytes()
        beer_lambert, lookup = (read_array(experiments.out / path) for _, path in shown[4:6])
        assert beer_lambert.shape == lookup.shape == (*read_array(model).shape[:2], 3)
        assert not np.array_equal(beer_lambert, lookup)
        real_tiles.append(read_array(experiments.out / shown[6][1]))
    # The old "nearest real" column matched the mean colour, which picked one tile for every row.
    assert all(not np.array_equal(a, b) for index, a in enumerate(real_tiles) for b in real_tiles[index + 1 :])


def test_every_thumbnail_links_to_its_existing_full_size_file(experiments: SimpleNamespace) -> None:
    out, page = experiments.out, experiments.page
    links = [link for link in page.all("a") if not link.attrs["href"].startswith("#")]
    assert len(links) > 60
    for link in links:
        path = out / unquote(link.attrs["href"])
        assert path.is_file(), path
        images = link.all("img")
        assert len(images) == 1 and images[0].attrs["src"] == link.attrs["href"]
        if "/test/" in link.attrs["href"]:  # a crop: the file is full size, the page shows it at most 160 wide
            assert read_array(path).shape[:2] == (128, 128) and int(images[0].attrs["width"]) == 128
    for anchor in (link for link in page.all("a") if link.attrs["href"].startswith("#")):
        assert page.all("p", id=anchor.attrs["href"][1:])


def test_the_comparison_shows_the_other_experiments_images_and_its_scores(experiments: SimpleNamespace) -> None:
    other = experiments.other
    comparison = experiments.page.all("table", **{"class": "scores"})[2]
    labels = [row.all("td")[0].text() for row in comparison.all("tr")[2:]]
    assert labels[0].startswith(f"seg: epoch {experiments.chosen}") and labels[1].startswith(f"cyc: epoch {other}")
    assert any(label.startswith("Beer-Lambert") for label in labels)
    # Scored here on the same images, masks, reference and stain model: the other evaluation's own test numbers.
    their_scores = {
        (row["split"], row["label"]): row
        for row in json.loads((experiments.cyc / "evaluation" / "scores.json").read_text())
    }[("test", other)]
    cells = {
        cell.attrs["data-metric"]: cell for cell in comparison.all("tr")[3].all("td") if "data-metric" in cell.attrs
    }
    for name in ("lab_swd_regions", "nucleus_f1", "dice", "structure_spearman"):
        assert math.isclose(float(cells[name].attrs["data-value"]), their_scores[name], rel_tol=1e-5), name
    for crop, strip in section(experiments.page, "experiments").items():
        caption, path = figures(strip)[-1]
        assert caption == f"cyc: epoch {other}"
        source = experiments.cyc / f"test_{other}" / "images" / f"{crop}_fake_B.png"
        assert path is not None and (experiments.out / path).read_bytes() == source.read_bytes()


def test_the_scale_note_gives_pixels_and_says_the_pixel_size_is_not_recorded(experiments: SimpleNamespace) -> None:
    note = experiments.page.all("p", **{"class": "scale"})[0].text()
    assert "Each crop is 128 × 128 pixels, shown 1:1" in note
    assert "pixel size is not recorded" in note and "µm" not in note
    assert "typical nucleus of the masks is about" in note


# -- units --------------------------------------------------------------------------------------
def test_pick_crops_is_spread_by_name_and_independent_of_order() -> None:
    names = [f"crop_{index:02d}" for index in range(10)]
    assert report.pick_crops(names[::-1], 4) == ["crop_00", "crop_03", "crop_06", "crop_09"]
    assert report.pick_crops(names[:3], 6) == names[:3]
    assert report.pick_crops(names, 1) == ["crop_00"]


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"command": "make_dataset", "A": {"mpp": 0.65}, "B": {"command": "prepare_slide", "mpp": 0.5}}, (0.65, 0.5)),
        ({"command": "make_dataset", "A": {"command": "prepare_ctc"}, "B": None}, (None, None)),
        ({"command": "prepare_slide", "mpp": 0.25, "slide_mpp": 0.25}, (None, 0.25)),
        ({"command": "prepare_ctc", "pixel_size_um": 0.33}, (0.33, None)),
        ({"command": "make_demo_dataset", "normalization": {}}, (None, None)),
    ],
)
def test_pixel_sizes_are_read_from_the_preparation_settings(
    settings: dict, expected: tuple[float | None, float | None], tmp_path: Path
) -> None:
    (tmp_path / "preparation.json").write_text(json.dumps(settings))
    found = stain_evaluation.pixel_sizes(tmp_path)
    assert (found.input_um, found.reference_um) == expected


def test_the_scale_note_gives_microns_when_the_pixel_size_is_known() -> None:
    mask = np.zeros((100, 80), bool)
    mask[10:20, 10:20] = True  # a 100-pixel nucleus: about 11 pixels across
    sample = SimpleNamespace(stem="a", real_A=np.zeros((100, 80), np.uint8), mask=mask)
    split = SimpleNamespace(masks={"a": mask}, min_nucleus_area=metrics.MIN_NUCLEUS_AREA)
    note = report.scale_note([sample], split, report.PixelSize(0.5, 0.25, "x/preparation.json"))  # type: ignore[arg-type]
    assert "80 × 100 pixels" in note and "40 × 50 µm at 0.5 µm per pixel" in note
    assert "about 11 pixels across (5.6 µm)" in note and "real H&E tiles were cut at 0.25 µm per pixel" in note


def test_compare_refuses_an_experiment_that_was_not_evaluated(
    experiments: SimpleNamespace, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bare = tmp_path / "bare"
    (bare / "test_1" / "images").mkdir(parents=True)
    arguments = ["--results_dir", str(experiments.seg), "--dataroot", str(experiments.demo_root)]
    assert stain_evaluation.main([*arguments, "--out", str(tmp_path / "out"), "--compare", str(bare)]) == 1
    errors = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert len(errors) == 1 and "evaluate it first" in errors[0] and str(bare) in errors[0]
    assert not (tmp_path / "out" / "report.html").exists()
