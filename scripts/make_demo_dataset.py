"""Build the bundled demo dataset: 128x128 crops of real fluorescence nuclei (A) and H&E (B).

    python scripts/make_demo_dataset.py [--output datasets/demo] [--overwrite]

Writes ``trainA valA testA`` with their masks (``*_GT``), ``trainB valB testB``, ``manifest.csv``
(where each crop came from) and ``preparation.json`` (the intensity rule, which ``test.py`` and
``colorize.py`` apply to whole frames). Fluorescence is inverted so nuclei are dark as in H&E;
instance labels become binary masks (0/255). The splits come from disjoint regions: no pixel of
a validation or test crop lies in a training crop. Domain A has one source image, so its three
splits are regions of one frame; domain B's validation crops are a region of the training image
and its test crops a second, independent H&E image from another source.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project's packages, from any working folder

from data.image_io import read_array, write_image
from data.intensity import IntensityNormalization
from data.preparation import write_manifest, write_settings
from util.cli import HelpFormatter, run_script
from util.errors import DatasetError
from util.log import setup_logging

logger = logging.getLogger("make_demo_dataset")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCES = PROJECT_ROOT / "datasets" / "sources"
DEFAULT_OUTPUT = PROJECT_ROOT / "datasets" / "demo"
FOLDERS = ("trainA", "trainB", "valA", "valB", "testA", "testB", "trainA_GT", "valA_GT", "testA_GT")


@dataclass(frozen=True)
class Region:
    """A rectangle of a source image (pixels) and the stride of the crop grid inside it."""

    top: int
    left: int
    height: int
    width: int
    stride: int

    def crop_origins(self, size: int) -> list[tuple[int, int]]:
        rows = range(self.top, self.top + self.height - size + 1, self.stride)
        columns = range(self.left, self.left + self.width - size + 1, self.stride)
        return [(row, column) for row in rows for column in columns]


# Fluorescence (512x512): the top-left 384x384 trains, the 128 columns right of it validate, the
# bottom 128 rows test.
FLUORESCENCE_TRAIN = Region(top=0, left=0, height=384, width=384, stride=64)
FLUORESCENCE_VAL = Region(top=0, left=384, height=384, width=128, stride=64)
FLUORESCENCE_TEST = Region(top=384, left=0, height=128, width=512, stride=64)
# TCIA H&E (300 rows x 500 columns): the left 372 columns train, the right 128 columns validate.
HE_TRAIN = Region(top=0, left=0, height=300, width=372, stride=34)
HE_VAL = Region(top=0, left=372, height=300, width=128, stride=43)
# tiatoolbox H&E (400x400), another tissue from another source: the test crops.
HE_TEST = Region(top=0, left=0, height=400, width=400, stride=68)


#: How the 16-bit fluorescence frame becomes 8-bit domain A (nuclei dark); recorded in preparation.json,
#: so that colorize.py reads whole frames the same way.
FLUORESCENCE_NORMALIZATION = IntensityNormalization(low_percentile=0.5, high_percentile=99.5, invert=True)


def build_demo_dataset(
    output: Path = DEFAULT_OUTPUT, sources: Path = DEFAULT_SOURCES, crop_size: int = 128, overwrite: bool = False
) -> dict[str, int]:
    """Write the demo dataset into ``output``; return the number of images per folder."""
    output, sources = Path(output), Path(sources)
    if output.exists() and any(output.iterdir()):
        if not overwrite:
            raise DatasetError(f"{output} already holds data; pass --overwrite to rebuild it")
        shutil.rmtree(output)

    fluorescence = FLUORESCENCE_NORMALIZATION.apply(read_array(sources / "fluo_nuclei_dsb2018" / "image.tif"))
    labels = read_array(sources / "fluo_nuclei_dsb2018" / "labels.tif")
    if labels.shape != fluorescence.shape:
        raise DatasetError(f"labels {labels.shape} and image {fluorescence.shape} differ in size")
    mask = np.where(labels > 0, 255, 0).astype(np.uint8)
    he = read_array(sources / "he_tcia" / "he.jpg")
    he_independent = read_array(sources / "he_tiatoolbox" / "he.png")

    manifest: list[dict[str, object]] = []
    jobs = [
        ("train", "A", "fluo", fluorescence, mask, FLUORESCENCE_TRAIN),
        ("val", "A", "fluo", fluorescence, mask, FLUORESCENCE_VAL),
        ("test", "A", "fluo", fluorescence, mask, FLUORESCENCE_TEST),
        ("train", "B", "he", he, None, HE_TRAIN),
        ("val", "B", "he", he, None, HE_VAL),
        ("test", "B", "he2", he_independent, None, HE_TEST),
    ]
    source_of = {"fluo": "fluo_nuclei_dsb2018/image.tif", "he": "he_tcia/he.jpg", "he2": "he_tiatoolbox/he.png"}
    for split, domain, prefix, image, ground_truth, region in jobs:
        for row, column in region.crop_origins(crop_size):
            name = f"{prefix}_r{row:03d}_c{column:03d}.png"
            window = (slice(row, row + crop_size), slice(column, column + crop_size))
            write_image(output / f"{split}{domain}" / name, image[window])
            if ground_truth is not None:
                write_image(output / f"{split}{domain}_GT" / name, ground_truth[window])
            row_record = {"split": split, "domain": domain, "file": name, "source": source_of[prefix]}
            manifest.append(row_record | {"top": row, "left": column, "size": crop_size})

    write_manifest(output, ["split", "domain", "file", "source", "top", "left", "size"], manifest)
    write_settings(output, {"command": "make_demo_dataset", "normalization": FLUORESCENCE_NORMALIZATION.to_dict()})
    return {folder: len(list((output / folder).glob("*.png"))) for folder in FOLDERS}


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="dataset folder to create")
    parser.add_argument("--sources", type=Path, default=DEFAULT_SOURCES, help="folder of the bundled source images")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    args = parser.parse_args(argv)

    def job() -> None:
        counts = build_demo_dataset(args.output, args.sources, overwrite=args.overwrite)
        listing = ", ".join(f"{folder} {count}" for folder, count in counts.items())
        logger.info("demo dataset in %s: %s", args.output, listing)

    return run_script(job)


if __name__ == "__main__":
    sys.exit(main())
