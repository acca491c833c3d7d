"""Find the translated epochs of an experiment, pair their images with inputs and masks, and score them.

The pieces of ``Stain_Evaluation.py`` that compute; choosing an epoch is :mod:`evaluation.selection`,
writing the report :mod:`evaluation.report`.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from data.image_io import decode_array, image_from_array, list_images, read_array, read_mask_values, to_unit_range
from data.intensity import IntensityNormalization, prepare_source, recorded_normalization
from evaluation import baselines, metrics
from evaluation.glossary import METRIC_BY_NAME, METRIC_NAMES, METRICS, Metric  # noqa: F401  (their old home: importers keep working)
from experiment import epoch_order
from util.errors import EvaluationError
from util.stain import StainModel

logger = logging.getLogger(__name__)


#: Metrics with a bootstrap interval over images.
PER_IMAGE_METRICS = ("nucleus_f1", "nucleus_recall", "nucleus_precision", "invented_area", "structure_spearman", "dice")
#: Metrics computed only on request, in a second pass (they need a network and its weights).
INCEPTION_METRICS = ("fid", "kid")
#: Most images scored in one batch (about 150 MB of temporaries at 128x128).
BATCH_IMAGES = 128


@dataclass
class Sample:
    """One image of a split: its stem, input, colorization and (if any) mask."""

    stem: str
    real_A: np.ndarray  # (H, W) uint8
    fake_B: np.ndarray  # (H, W, 3) uint8
    mask: np.ndarray | None  # (H, W) bool


@dataclass
class SplitData:
    """What every epoch of one split (``val`` or ``test``) is scored against, read once.

    ``stems``: the images every epoch is scored on, those all its folders hold (:func:`shared_images`),
    so that epochs are compared on the same images. ``real_A``: their inputs in the first epoch
    folder by stem, each with the digest of its file (test.py writes the same input into every
    epoch folder; a file with the same digest is not decoded again). ``masks``: bool (H, W) by
    stem. ``reference``: the real H&E of the split.
    """

    name: str
    folders: list[tuple[str, Path]]
    stems: list[str]
    reference: list[np.ndarray]
    reference_names: list[str]
    reference_summary: metrics.ColorSummary
    stain_model: StainModel
    real_A: dict[str, tuple[bytes, np.ndarray]] = field(default_factory=dict)
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    #: Smallest component that counts as a nucleus here (:func:`evaluation.metrics.minimum_nucleus_area`).
    min_nucleus_area: int = metrics.MIN_NUCLEUS_AREA


@dataclass
class Row:
    """The scores of one epoch, baseline or sanity row on one split."""

    label: str
    kind: str  # "epoch", "baseline" or "sanity"
    split: str
    scores: dict[str, float]
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    per_image: list[dict[str, float | str]] = field(default_factory=list)
    failed_guards: list[str] = field(default_factory=list)

    @property
    def is_epoch(self) -> bool:
        return self.kind == "epoch"


# -- discovery ------------------------------------------------------------------------------
def epoch_folders(results_dir: Path, split: str) -> list[tuple[str, Path]]:
    """The ``<split>_<label>`` folders holding images, numbered epochs in order, then named ones."""
    found = []
    for folder in Path(results_dir).glob(f"{split}_*"):
        if folder.is_dir() and any((folder / "images").glob("*_fake_B.png")):
            found.append((folder.name.removeprefix(f"{split}_"), folder))
    return sorted(found, key=lambda item: epoch_order(item[0]))


def mask_paths(dataroot: Path | None, split: str) -> dict[str, Path]:
    """GT masks of ``<dataroot>/<split>A_GT`` by file stem (empty without a dataroot or that folder)."""
    if dataroot is None or not (Path(dataroot) / f"{split}A_GT").is_dir():
        return {}
    folder = Path(dataroot) / f"{split}A_GT"
    return {path.relative_to(folder).with_suffix("").as_posix(): path for path in list_images(folder)}


#: The files test.py writes per image that scoring pairs by the image's name: the colorization and its input.
PAIRED_VISUALS = ("fake_B", "real_A")


@dataclass(frozen=True)
class ImageSet:
    """The images the epoch folders of a split share, and what each folder lacks.

    ``stems``: the images every scored folder holds both files of, sorted. ``total``: how many
    images any folder holds a file of. ``lacking``: by epoch label, the folders that lack some
    image: how many images, and the missing file names.
    """

    stems: list[str]
    total: int
    lacking: dict[str, tuple[int, list[str]]]
    scored_folders: int

    def warnings(self, split: str) -> list[str]:
        """One line per folder that lacks images: which, and on how many images every epoch is scored."""
        if self.scored_folders > 1:
            outcome = f"every epoch is scored on the {len(self.stems)} images all epochs have"
        else:
            outcome = f"it and the baselines are scored on the {len(self.stems)} images it has"
        return [
            f"epoch {label} ({split}) lacks {count} of {self.total} images ({_some(files)}); {outcome}"
            for label, (count, files) in self.lacking.items()
        ]

    def error(self, split: str, results_dir: Path) -> EvaluationError:
        """The refusal when no image is in every folder: what each lacks, and which epochs to translate again."""
        details = "; ".join(
            f"epoch {label} lacks {count} of {self.total} ({_some(files)})"
            for label, (count, files) in self.lacking.items()
        )
        return EvaluationError(
            f"the {split} epoch folders in {results_dir} share no image with both its fake_B and real_A ({details}); "
            f"re-run python test.py --name <experiment> --epoch <N> for {epochs_named(list(self.lacking))} (it "
            f"rewrites {split}_<N>), or move the folders of epochs you do not need out of the results folder"
        )


def epochs_named(labels: list[str]) -> str:
    """``epoch 3`` or ``epochs 1, 3``."""
    return f"epoch {labels[0]}" if len(labels) == 1 else f"epochs {', '.join(labels)}"


def shared_images(folders: list[tuple[str, Path]], known: list[tuple[str, Path]] | None = None) -> ImageSet:
    """The images, paired by name, that every folder of ``folders`` holds both files of (:data:`PAIRED_VISUALS`).

    A folder lacks an image when some folder of ``known`` (default: ``folders``; for the test
    split, every test folder while only the chosen one is scored) holds a file of it and it does
    not hold both. Scoring on the shared images only keeps a missing file from silently
    scoring one epoch on fewer images than the others.
    """
    listed = {
        label: {visual: _stems(folder, visual) for visual in PAIRED_VISUALS}
        for label, folder in [*(known or []), *folders]
    }
    every = set().union(*(stems for found in listed.values() for stems in found.values()))
    complete = {label: found["fake_B"] & found["real_A"] for label, found in listed.items()}
    shared = set.intersection(*(complete[label] for label, _ in folders)) if folders else set()
    lacking = {}
    for label, _ in folders:
        missing = sorted(every - complete[label])
        if missing:
            found = listed[label]
            files = [
                f"{stem}_{visual}.png" for stem in missing for visual in PAIRED_VISUALS if stem not in found[visual]
            ]
            lacking[label] = (len(missing), files)
    return ImageSet(sorted(shared), len(every), lacking, len(folders))


def _stems(folder: Path, visual: str) -> set[str]:
    suffix = f"_{visual}.png"
    return {path.name.removesuffix(suffix) for path in (folder / "images").glob(f"*{suffix}")}


def _some(names: list[str], shown: int = 5) -> str:
    """The first ``shown`` names, and how many more."""
    more = f", ... ({len(names) - shown} more)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def load_split(
    name: str,
    folders: list[tuple[str, Path]],
    stems: list[str],
    masks: dict[str, Path],
    reference_dir: Path,
    stain_model: StainModel,
) -> SplitData:
    """The inputs of ``stems`` in the first epoch folder, every mask and the summarized reference, decoded once."""
    reference, reference_names = load_reference(reference_dir)
    regions = [stain_model.nuclear(image) for image in reference]
    split = SplitData(
        name=name,
        folders=folders,
        stems=list(stems),
        reference=reference,
        reference_names=reference_names,
        reference_summary=metrics.summarize_colors(reference, reference_names, stain_model, regions),
        stain_model=stain_model,
        masks={stem: read_mask_values(path) > 0 for stem, path in masks.items()},
    )
    split.min_nucleus_area = metrics.minimum_nucleus_area(list(split.masks.values()))
    for stem in split.stems:
        real_path = folders[0][1] / "images" / f"{stem}_real_A.png"
        data = real_path.read_bytes()
        split.real_A[stem] = (_digest(data), as_uint8(decode_array(data, str(real_path)), 1, real_path))
    return split


def load_samples(folder: Path, split: SplitData) -> tuple[list[Sample], dict[str, list[str]]]:
    """The samples of ``split.stems`` in one epoch folder (each ``fake_B`` with the ``real_A`` and mask of its
    name), and by reason the stems skipped or (``without a mask``) scored without the nucleus metrics."""
    skipped: dict[str, list[str]] = {"size differs": [], "without a mask": []}
    samples = []
    for stem in split.stems:
        fake_path = folder / "images" / f"{stem}_fake_B.png"
        real_path = fake_path.with_name(f"{stem}_real_A.png")
        fake_B, real_A = read_uint8(fake_path, 3), _input_image(real_path, stem, split)
        mask = split.masks.get(stem)
        if mask is None and split.masks:
            skipped["without a mask"].append(stem)
        if fake_B.shape[:2] != real_A.shape or (mask is not None and mask.shape != real_A.shape):
            skipped["size differs"].append(stem)
            continue
        samples.append(Sample(stem, real_A, fake_B, mask))
    return samples, {reason: stems for reason, stems in skipped.items() if stems}


def _input_image(path: Path, stem: str, split: SplitData) -> np.ndarray:
    """The ``real_A`` at ``path``: the decoded copy in ``split`` when the file is the same, else read now."""
    data = path.read_bytes()
    known = split.real_A.get(stem)
    if known is not None and known[0] == _digest(data):
        return known[1]
    return as_uint8(decode_array(data, str(path)), 1, path)


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def load_reference(reference_dir: Path, what: str = "reference") -> tuple[list[np.ndarray], list[str]]:
    """The real H&E tiles of a folder, (H, W, 3) uint8 each, with their names; a clear error for a
    missing, empty or gray folder."""
    reference_dir = Path(reference_dir)
    if not reference_dir.is_dir():
        raise EvaluationError(f"{what} folder {reference_dir} does not exist; it must hold real H&E tiles")
    paths = list_images(reference_dir)
    if not paths:
        raise EvaluationError(f"{what} folder {reference_dir} contains no images; it must hold real H&E tiles")
    tiles = []
    for path in paths:
        array = read_array(path)
        if array.ndim != 3 or array.shape[2] < 3:
            raise EvaluationError(
                f"{what} image {path} is not RGB (shape {array.shape}); the reference must be colour H&E tiles"
            )
        tiles.append(_to_uint8(to_unit_range(array[:, :, :3])))
    return tiles, [path.relative_to(reference_dir).as_posix() for path in paths]


def load_gray_folder(folder: Path, normalization: IntensityNormalization | None) -> list[np.ndarray]:
    """Every image of a domain-A folder as the generator reads it, (H, W) uint8 (for fitting the lookup table)."""
    return [prepare_source(read_array(path), normalization, path) for path in list_images(folder)]


def read_uint8(path: Path, channels: int) -> np.ndarray:
    """An image through the project's one reader, as 8-bit: (H, W) gray or (H, W, 3) RGB.

    8-bit files already in the asked layout (what test.py writes) are taken as decoded.
    """
    return as_uint8(read_array(path), channels, path)


def as_uint8(array: np.ndarray, channels: int, path: Path) -> np.ndarray:
    """Pixels as stored -> (H, W) gray or (H, W, 3) RGB uint8, by the project's channel and range rules."""
    if array.dtype == np.uint8 and (array.shape[2:] == (3,) if channels == 3 else array.ndim == 2):
        return array
    image = _to_uint8(image_from_array(array, channels, path))
    return image[:, :, 0] if channels == 1 else image


# -- scoring --------------------------------------------------------------------------------
def score(label: str, kind: str, samples: list[Sample], split: SplitData) -> Row:
    """Every metric of one set of colorizations (an epoch, a baseline) on ``split``, with intervals."""
    with_masks = [sample for sample in samples if sample.mask is not None]
    regions = [sample.mask for sample in samples] if with_masks and len(with_masks) == len(samples) else None
    summary = metrics.summarize_colors(
        [sample.fake_B for sample in samples], [sample.stem for sample in samples], split.stain_model, regions
    )
    scores = metrics.color_distances(summary, split.reference_summary) | dict.fromkeys(INCEPTION_METRICS, math.nan)
    per_image = _per_image_scores(label, samples, split.stain_model, split.min_nucleus_area)
    row = Row(label, kind, split.name, scores, per_image=per_image)
    _aggregate(row)
    return row


def _aggregate(row: Row) -> None:
    """Fill the per-image metrics of ``row.scores`` and their bootstrap intervals from ``row.per_image``."""
    measured = [item for item in row.per_image if "nucleus_f1" in item]
    spearman = np.array([float(item["structure_spearman"]) for item in row.per_image])
    row.scores["structure_spearman"] = float(spearman.mean()) if len(spearman) else math.nan
    row.intervals["structure_spearman"] = metrics.bootstrap_interval(spearman)
    if not measured:
        row.scores.update({name: math.nan for name in PER_IMAGE_METRICS if name != "structure_spearman"})
        return
    true, predicted, matched = (
        np.array([float(item[key]) for item in measured])
        for key in ("nuclei_true", "nuclei_predicted", "nuclei_matched")
    )
    pooled = {
        "nucleus_f1": (2.0 * matched, true + predicted),
        "nucleus_recall": (matched, true),
        "nucleus_precision": (matched, predicted),
    }
    for name, (numerator, denominator) in pooled.items():
        total = denominator.sum()
        row.scores[name] = float(numerator.sum() / total) if total > 0 else 1.0
        row.intervals[name] = metrics.bootstrap_interval(numerator, denominator) if total > 0 else (1.0, 1.0)
    for name in ("invented_area", "dice"):
        values = np.array([float(item[name]) for item in measured])
        row.scores[name] = float(values.mean())
        row.intervals[name] = metrics.bootstrap_interval(values)


def score_epoch(label: str, folder: Path, split: SplitData) -> tuple[Row | None, dict[str, list[str]]]:
    """Load and score one epoch folder (None when no image could be scored), with what was skipped."""
    samples, skipped = load_samples(folder, split)
    return (score(label, "epoch", samples, split) if samples else None), skipped


def score_epochs(
    folders: list[tuple[str, Path]], split: SplitData, workers: int = 1
) -> Iterator[tuple[str, Row | None, dict[str, list[str]]]]:
    """:func:`score_epoch` for every folder, in order; ``workers`` > 1 scores several epochs at once in processes."""
    if workers <= 1 or len(folders) < 2:
        for label, folder in folders:
            yield label, *score_epoch(label, folder, split)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(score_epoch, label, folder, split) for label, folder in folders]
        for (label, _), future in zip(folders, futures, strict=True):
            yield label, *future.result()


def colorized_samples(samples: list[Sample], colorize: Callable[[np.ndarray], np.ndarray]) -> list[Sample]:
    """The same images, colorized by a baseline from the input alone."""
    return [Sample(sample.stem, sample.real_A, colorize(sample.real_A), sample.mask) for sample in samples]


def replaced_samples(samples: list[Sample], images: list[np.ndarray]) -> list[Sample]:
    """The same inputs and masks with other colorizations (the sanity row's real tiles)."""
    return [
        Sample(sample.stem, sample.real_A, image, sample.mask) for sample, image in zip(samples, images, strict=True)
    ]


# -- the rows every epoch is compared with -------------------------------------------------
GRAY_INPUT = "baseline: gray input"
BEER_LAMBERT = "baseline: Beer-Lambert"
LOOKUP_TABLE = "baseline: lookup table"
REAL_TILES = "sanity: real H&E ignoring the input"
#: Beer-Lambert's eosin level when no trainB calibrates it.
DEFAULT_EOSIN_LEVEL = 0.15


@dataclass(frozen=True)
class FittedBaselines:
    """What the baselines need from the training folders, computed once: the Beer-Lambert eosin
    level, the lookup table, and the real tiles of the sanity row (None where the folders are missing)."""

    eosin_level: float
    lookup: baselines.QuantileLookup | None
    tiles: list[np.ndarray] | None

    def colorizations(self, samples: list[Sample]) -> dict[str, list[Sample]]:
        """Every baseline's and sanity row's colorization of ``samples``, by row label."""
        rows = {
            GRAY_INPUT: colorized_samples(samples, baselines.gray_as_rgb),
            BEER_LAMBERT: colorized_samples(samples, lambda gray: baselines.beer_lambert_he(gray, self.eosin_level)),
        }
        if self.lookup is not None:
            rows[LOOKUP_TABLE] = colorized_samples(samples, self.lookup)
        if self.tiles is not None:
            images = baselines.real_tiles_ignoring_input(
                [sample.stem for sample in samples], [sample.real_A.shape for sample in samples], self.tiles
            )
            rows[REAL_TILES] = replaced_samples(samples, images)
        return rows


def fit_baselines(dataroot: Path | None, stain_model: StainModel, notes: list[str]) -> FittedBaselines:
    """Fit the lookup table on ``trainA``/``trainB`` and calibrate Beer-Lambert's eosin on ``trainB``."""
    train_b = dataroot / "trainB" if dataroot else None
    train_a = dataroot / "trainA" if dataroot else None
    tiles = load_reference(train_b, "trainB")[0] if train_b is not None and train_b.is_dir() else None
    if tiles is None:
        notes.append("No trainB: the lookup-table baseline and the real-tiles sanity row are not computed.")
        return FittedBaselines(DEFAULT_EOSIN_LEVEL, None, None)
    eosin_level = baselines.calibrate_eosin_level(stain_model, tiles)
    lookup = None
    if train_a is not None and train_a.is_dir():
        lookup = baselines.QuantileLookup.fit(load_gray_folder(train_a, recorded_normalization(dataroot)), tiles)
    else:
        notes.append("No trainA: the lookup-table baseline is not computed.")
    return FittedBaselines(eosin_level, lookup, tiles)


# -- helpers --------------------------------------------------------------------------------
def _per_image_scores(
    label: str, samples: list[Sample], stain_model: StainModel, min_area: int
) -> list[dict[str, float | str]]:
    """The faithfulness measures of every sample (nucleus measures where it has a mask).

    Computed in batches of one image size, all with or all without a mask, of at most
    :data:`BATCH_IMAGES` images, so memory stays bounded however many images there are.
    """
    rows: list[dict[str, float | str]] = [{"label": label, "image": sample.stem} for sample in samples]
    for indices in _batches(samples):
        colorized = np.stack([samples[index].fake_B for index in indices])
        gray = np.stack([samples[index].real_A for index in indices])
        masks = [samples[index].mask for index in indices]
        truth = None if masks[0] is None else np.stack(masks)
        scores = metrics.faithfulness_scores(colorized, gray, stain_model, truth, min_area)
        for position, index in enumerate(indices):
            rows[index].update({name: float(values[position]) for name, values in scores.items()})
    return rows


def _batches(samples: list[Sample]) -> Iterator[list[int]]:
    """Indices of the samples grouped by image size and by having a mask, at most :data:`BATCH_IMAGES` a group."""
    groups: dict[tuple[tuple[int, ...], bool], list[int]] = {}
    for index, sample in enumerate(samples):
        groups.setdefault((sample.real_A.shape, sample.mask is not None), []).append(index)
    for indices in groups.values():
        for start in range(0, len(indices), BATCH_IMAGES):
            yield indices[start : start + BATCH_IMAGES]


def _to_uint8(image: np.ndarray) -> np.ndarray:
    """[0, 1] floats -> uint8, exact for images that were 8-bit."""
    return np.rint(image * 255.0).astype(np.uint8)
