"""Find the tested epochs of an experiment, pair their images, score them and the baselines, rank them.

The pieces of ``Stain_Evaluation.py`` that compute; writing the report is :mod:`evaluation.report`.
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
from scipy.stats import rankdata

from data.image_io import decode_array, image_from_array, list_images, read_array, read_mask_values, to_unit_range
from evaluation import baselines, metrics
from util.errors import EvaluationError

logger = logging.getLogger(__name__)


#: Every metric of the table: (name, higher is better, what it measures).
METRICS: tuple[tuple[str, bool, str], ...] = (
    ("hsv_correlation", True, "HSV histogram correlation with the real H&E (1 = same colours)"),
    ("lab_swd", False, "sliced Wasserstein distance of CIELAB colours to the real H&E"),
    ("hematoxylin_w1", False, "Wasserstein distance of hematoxylin density to the real H&E"),
    ("eosin_w1", False, "Wasserstein distance of eosin density to the real H&E"),
    ("ssim", True, "structure kept: SSIM of gray(fake_B) with real_A"),
    ("dice", True, "nuclei where the mask says: Dice of Otsu(darkness) with the GT"),
    ("iou", True, "the same overlap as IoU"),
    ("dice_hematoxylin", True, "Dice of Otsu(hematoxylin density) with the GT (secondary rule)"),
    ("fid", False, "Frechet Inception distance to the real H&E (with --inception_weights)"),
    ("kid", False, "kernel Inception distance to the real H&E (with --inception_weights)"),
)
METRIC_NAMES = tuple(name for name, _, _ in METRICS)
HIGHER_IS_BETTER = {name: higher for name, higher, _ in METRICS}
#: Metrics averaged over images (the others compare whole colour distributions).
PER_IMAGE_METRICS = ("ssim", "dice", "iou", "dice_hematoxylin")
#: Default weights of the composite score: nuclei fidelity counts once (dice), not three times, and
#: Inception realism once (fid; kid measures the same and is reported beside it).
DEFAULT_WEIGHTS = {
    "hsv_correlation": 1.0,
    "lab_swd": 1.0,
    "hematoxylin_w1": 1.0,
    "eosin_w1": 1.0,
    "ssim": 1.0,
    "dice": 2.0,
    "iou": 0.0,
    "dice_hematoxylin": 0.0,
    "fid": 1.0,
    "kid": 0.0,
}
#: Metrics computed only on request, in a second pass (they need a network and its weights).
INCEPTION_METRICS = ("fid", "kid")
#: Most images scored in one batch (about 150 MB of temporaries at 128x128).
BATCH_IMAGES = 128
BASELINES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "baseline: gray input": baselines.gray_as_rgb,
    "baseline: Beer-Lambert": baselines.beer_lambert_he,
}


@dataclass
class Sample:
    """One test image of an epoch: its stem, input, colorization and (if any) mask."""

    stem: str
    real_A: np.ndarray  # (H, W) uint8
    fake_B: np.ndarray  # (H, W, 3) uint8
    mask: np.ndarray | None  # (H, W) bool


@dataclass
class SharedInputs:
    """What every epoch shares, read once: the inputs and the GT masks, by image stem.

    ``test.py`` writes the same ``real_A`` into every epoch folder; each is kept with the digest of
    its file, and an epoch's file with the same digest is not decoded again. Masks are bool (H, W).
    """

    real_A: dict[str, tuple[bytes, np.ndarray]] = field(default_factory=dict)
    masks: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Row:
    """The scores of one epoch or baseline."""

    label: str
    is_baseline: bool
    scores: dict[str, float]
    per_image: list[dict[str, float | str]] = field(default_factory=list)
    composite: float = math.nan


# -- discovery ------------------------------------------------------------------------------
def epoch_folders(results_dir: Path) -> list[tuple[str, Path]]:
    """The ``test_<label>`` folders holding images, numbered epochs in order, then named ones."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise EvaluationError(
            f"results folder {results_dir} does not exist; run python test.py --name <experiment> --epoch all first"
        )
    found = []
    for folder in results_dir.glob("test_*"):
        if folder.is_dir() and any((folder / "images").glob("*_fake_B.png")):
            found.append((folder.name.removeprefix("test_"), folder))
    if not found:
        raise EvaluationError(
            f"no test_<epoch>/images/*_fake_B.png in {results_dir}; run python test.py --name <experiment> "
            "--epoch all first"
        )
    return sorted(found, key=lambda item: _epoch_order(item[0]))


def mask_paths(dataroot: Path | None) -> dict[str, Path]:
    """GT masks of ``<dataroot>/testA_GT`` by file stem (empty without a dataroot or that folder)."""
    if dataroot is None or not (Path(dataroot) / "testA_GT").is_dir():
        return {}
    folder = Path(dataroot) / "testA_GT"
    return {path.relative_to(folder).with_suffix("").as_posix(): path for path in list_images(folder)}


def load_test_inputs(folder: Path, masks: dict[str, Path]) -> SharedInputs:
    """The inputs of one epoch folder and every mask of :func:`mask_paths`, decoded once for all epochs."""
    inputs = SharedInputs(masks={stem: read_mask_values(path) > 0 for stem, path in masks.items()})
    for real_path in sorted((folder / "images").glob("*_real_A.png")):
        data = real_path.read_bytes()
        image = as_uint8(decode_array(data, str(real_path)), 1, real_path)
        inputs.real_A[real_path.name.removesuffix("_real_A.png")] = (_digest(data), image)
    return inputs


def load_samples(folder: Path, inputs: SharedInputs) -> tuple[list[Sample], dict[str, list[str]]]:
    """The samples of one epoch folder, and by reason the stems skipped or (``without a mask``) scored
    without the nuclei metrics."""
    skipped: dict[str, list[str]] = {"no real_A": [], "size differs": [], "without a mask": []}
    samples = []
    for fake_path in sorted((folder / "images").glob("*_fake_B.png")):
        stem = fake_path.name.removesuffix("_fake_B.png")
        real_path = fake_path.with_name(f"{stem}_real_A.png")
        if not real_path.is_file():
            skipped["no real_A"].append(stem)
            continue
        fake_B, real_A = read_uint8(fake_path, 3), _input_image(real_path, stem, inputs)
        mask = inputs.masks.get(stem)
        if mask is None and inputs.masks:
            skipped["without a mask"].append(stem)
        if fake_B.shape[:2] != real_A.shape or (mask is not None and mask.shape != real_A.shape):
            skipped["size differs"].append(stem)
            continue
        samples.append(Sample(stem, real_A, fake_B, mask))
    return samples, {reason: stems for reason, stems in skipped.items() if stems}


def _input_image(path: Path, stem: str, inputs: SharedInputs) -> np.ndarray:
    """The ``real_A`` at ``path``: the decoded copy in ``inputs`` when the file is the same, else read now."""
    data = path.read_bytes()
    known = inputs.real_A.get(stem)
    if known is not None and known[0] == _digest(data):
        return known[1]
    return as_uint8(decode_array(data, str(path)), 1, path)


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def load_reference(reference_dir: Path) -> list[np.ndarray]:
    """The real H&E tiles, (H, W, 3) uint8 each; a clear error for a missing, empty or gray folder."""
    reference_dir = Path(reference_dir)
    if not reference_dir.is_dir():
        raise EvaluationError(f"reference folder {reference_dir} does not exist; pass --reference_dir <real H&E tiles>")
    paths = list_images(reference_dir)
    if not paths:
        raise EvaluationError(f"reference folder {reference_dir} contains no images; it must hold real H&E tiles")
    tiles = []
    for path in paths:
        array = read_array(path)
        if array.ndim != 3 or array.shape[2] < 3:
            raise EvaluationError(
                f"reference image {path} is not RGB (shape {array.shape}); the reference must be colour H&E tiles"
            )
        tiles.append(_to_uint8(to_unit_range(array[:, :, :3])))
    return tiles


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
def score(label: str, samples: list[Sample], reference: metrics.ColourSummary, is_baseline: bool = False) -> Row:
    """Every metric of one set of colorizations (an epoch or a baseline) against the summarised real H&E."""
    summary = metrics.summarise_colours([sample.fake_B for sample in samples], *reference.settings)
    scores = metrics.colour_distances(summary, reference) | dict.fromkeys(INCEPTION_METRICS, math.nan)
    per_image = _per_image_scores(label, samples)
    for name in PER_IMAGE_METRICS:
        values = [float(item[name]) for item in per_image if name in item]
        scores[name] = float(np.mean(values)) if values else math.nan
    return Row(label, is_baseline, scores, per_image)


def score_epoch(
    label: str, folder: Path, inputs: SharedInputs, reference: metrics.ColourSummary
) -> tuple[Row | None, dict[str, list[str]]]:
    """Load and score one epoch folder (None when no image could be scored), with what was skipped."""
    samples, skipped = load_samples(folder, inputs)
    return (score(label, samples, reference) if samples else None), skipped


def score_epochs(
    folders: list[tuple[str, Path]], inputs: SharedInputs, reference: metrics.ColourSummary, workers: int = 1
) -> Iterator[tuple[str, Row | None, dict[str, list[str]]]]:
    """:func:`score_epoch` for every folder, in order; ``workers`` > 1 scores several epochs at once in processes."""
    if workers <= 1 or len(folders) < 2:
        for label, folder in folders:
            yield label, *score_epoch(label, folder, inputs, reference)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(score_epoch, label, folder, inputs, reference) for label, folder in folders]
        for (label, _), future in zip(folders, futures, strict=True):
            yield label, *future.result()


def baseline_samples(samples: list[Sample], colorize: Callable[[np.ndarray], np.ndarray]) -> list[Sample]:
    """The same test images, colorized by a baseline from the input alone."""
    return [Sample(sample.stem, sample.real_A, colorize(sample.real_A), sample.mask) for sample in samples]


def rank(rows: list[Row], weights: dict[str, float]) -> None:
    """Fill each row's composite score: the weighted mean of its rank per metric (1 = best).

    Epochs and baselines are ranked together, so the composite says directly whether an epoch
    beats the baselines. Metrics that are missing (no masks) or weighted 0 are left out.
    """
    used = [
        name for name in METRIC_NAMES if weights.get(name, 0.0) > 0 and all(math.isfinite(r.scores[name]) for r in rows)
    ]
    if not used:
        raise EvaluationError("no metric with a positive weight could be computed; check --weights")
    total = sum(weights[name] for name in used)
    composite = np.zeros(len(rows))
    for name in used:
        values = np.array([row.scores[name] for row in rows])
        order = -values if HIGHER_IS_BETTER[name] else values
        ranks = rankdata(order, method="average")
        composite += weights[name] * ranks
    for row, value in zip(rows, composite / total, strict=True):
        row.composite = float(value)


def best_epoch(rows: list[Row]) -> Row:
    """The epoch with the lowest composite rank; a tie goes to the lower epoch."""
    epochs = [row for row in rows if not row.is_baseline]
    return min(epochs, key=lambda row: (row.composite, _epoch_order(row.label)))


def metric_winners(rows: list[Row]) -> dict[str, str]:
    """For every metric, the label of the best row (epochs and baselines alike)."""
    winners = {}
    for name in METRIC_NAMES:
        finite = [row for row in rows if math.isfinite(row.scores[name])]
        if finite:
            pick = max if HIGHER_IS_BETTER[name] else min
            winners[name] = pick(finite, key=lambda row: row.scores[name]).label
    return winners


# -- helpers --------------------------------------------------------------------------------
def _per_image_scores(label: str, samples: list[Sample]) -> list[dict[str, float | str]]:
    """SSIM of every sample and, where it has a mask, its nuclei Dice, IoU and H-channel Dice.

    Computed in batches of one image size, all with or all without a mask, of at most
    :data:`BATCH_IMAGES` images, so memory stays bounded however many test images there are.
    """
    rows: list[dict[str, float | str]] = [{"label": label, "image": sample.stem} for sample in samples]
    for indices in _batches(samples):
        colorized = np.stack([samples[index].fake_B for index in indices])
        gray = np.stack([samples[index].real_A for index in indices])
        masks = [samples[index].mask for index in indices]
        scores = metrics.image_scores(colorized, gray, None if masks[0] is None else np.stack(masks))
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


def _epoch_order(label: str) -> tuple[int, int, str]:
    """Numbered epochs in numeric order (2 before 10), then named ones such as ``latest``."""
    return (0, int(label), "") if label.isdigit() else (1, 0, label)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    """[0, 1] floats -> uint8, exact for images that were 8-bit."""
    return np.rint(image * 255.0).astype(np.uint8)
