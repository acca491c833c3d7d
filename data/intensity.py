"""How a source image becomes what a generator reads: one 8-bit gray image, whichever driver reads it.

Microscopy cameras rarely fill their bit depth and a few hot pixels can sit far above the
cells, so a raw frame is stretched between two robust percentiles of its own values rather than
by its type's maximum or its min/max, and optionally inverted so that nuclei are dark as in H&E
(:class:`IntensityNormalization`). The preparation scripts record the rule they used in
``preparation.json`` beside the crops (:func:`recorded_normalization`), and :func:`prepare_source`
applies it to raw frames wherever they enter: the training datasets, ``test.py`` and
``colorize.py``, so the same frame reaches the generator as the same pixels.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from data.image_io import image_from_array, unit_range_bounds
from data.preparation import SETTINGS_NAME, read_settings
from util.errors import ImageReadError, OptionError


@dataclass(frozen=True)
class IntensityNormalization:
    """Percentile stretch to [0, 255] (``low``/``high`` in percent), then optional inversion."""

    low_percentile: float = 1.0
    high_percentile: float = 99.8
    invert: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.low_percentile < self.high_percentile <= 100.0:
            raise OptionError(
                f"percentiles must satisfy 0 <= low < high <= 100, got low {self.low_percentile} "
                f"and high {self.high_percentile}"
            )

    def apply(self, frame: np.ndarray) -> np.ndarray:
        """(H, W) gray frame of any numeric type -> (H, W) uint8; a constant frame becomes 0 (255 inverted)."""
        frame = np.asarray(frame)
        if frame.ndim != 2:
            raise ValueError(f"expected a gray (H, W) frame, got shape {frame.shape}")
        low, high = np.percentile(frame, [self.low_percentile, self.high_percentile])
        return stretch_to_uint8(frame, float(low), float(high), self.invert)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> IntensityNormalization:
        return cls(**{key: values[key] for key in ("low_percentile", "high_percentile", "invert") if key in values})


def stretch_to_uint8(frame: np.ndarray, low: float, high: float, invert: bool = False) -> np.ndarray:
    """(H, W) frame -> uint8 with ``low`` -> 0 and ``high`` -> 255, clipped; a constant range gives 0s.

    Computed a band of rows at a time, so a 10k x 10k frame is never held as float64 at once.
    """
    output = np.zeros(frame.shape, np.uint8)
    if high > low:
        for top in range(0, frame.shape[0], _ROWS_PER_BAND):
            band = frame[top : top + _ROWS_PER_BAND].astype(np.float64)
            scaled = np.clip((band - low) / (high - low), 0.0, 1.0)
            output[top : top + _ROWS_PER_BAND] = np.rint(scaled * 255.0)
    if invert:
        np.subtract(255, output, out=output)
    return output


_ROWS_PER_BAND = 512


def recorded_normalization(dataroot: str | os.PathLike) -> IntensityNormalization | None:
    """The rule a preparation script recorded in ``<dataroot>/preparation.json`` (for a dataroot assembled by
    ``make_dataset.py``, its A side's), or None when there is none."""
    settings = read_settings(Path(dataroot)) if Path(dataroot).is_dir() else None
    if not settings:
        return None
    for record in (settings, settings.get("A") or {}):
        values = record.get("normalization") or record.get("normalisation")  # the older key
        if values:
            return IntensityNormalization.from_dict(values)
    return None


def is_prepared(path: str | os.PathLike) -> bool:
    """True for an image inside a dataset a preparation script wrote (``<dataroot>/<split>A/x.png``, with the
    ``preparation.json`` beside the split folders): its pixels are the rule's output already."""
    folder = Path(path).parent
    return (folder / SETTINGS_NAME).is_file() or (folder.parent / SETTINGS_NAME).is_file()


def prepare_source(
    array: np.ndarray, normalization: IntensityNormalization | None, path: str | os.PathLike, always: bool = False
) -> np.ndarray:
    """The (H, W) uint8 gray image a generator reads, from the stored pixels of the source image at ``path``.

    - An 8-bit image inside a prepared dataset (:func:`is_prepared`) is taken as it is: the crops
      the preparation scripts write are the rule's 8-bit output, and stretching them again would
      change them.
    - Any other image is a raw frame: ``normalization`` (the recorded percentile stretch and
      inversion) applies to it, whatever its depth (Cell Tracking Challenge frames can be 8-bit).
      Without a rule an 8-bit image is taken as it is and any other depth is stretched by its own
      range (:func:`data.image_io.to_unit_range`), then rounded to 8 bits like the training crops.
    - ``always`` applies ``normalization`` to every image (colorize.py's explicit overrides).

    Colour becomes gray by BT.601 luma first; NaN or infinite pixels are refused, naming ``path``.
    Raw 2-D frames are converted a band of rows at a time, so large frames stay small in memory.
    """
    array = np.asarray(array)
    eight_bit = array.dtype == np.uint8
    raw = always or not eight_bit or not is_prepared(path)
    if array.ndim == 3:
        array = image_from_array(array, 1, path)[:, :, 0]  # luma in [0, 1]; NaN refused
        if normalization is not None and raw:
            return normalization.apply(array)
        return np.rint(array * 255.0).astype(np.uint8)
    if array.dtype.kind == "f":
        require_finite(array, path)
    if normalization is not None and raw:
        return normalization.apply(array)
    return array if eight_bit else stretch_to_uint8(array, *unit_range_bounds(array))


def require_finite(array: np.ndarray, path: str | os.PathLike, rows_at_a_time: int = 1024) -> None:
    """Refuse NaN or infinite pixels, naming ``path`` and how many: they have no intensity, and a stretch
    to 8 bits would spread them over the whole image. Checked a band of rows at a time, to stay small."""
    bad = sum(
        int(np.count_nonzero(~np.isfinite(array[top : top + rows_at_a_time])))
        for top in range(0, len(array), rows_at_a_time)
    )
    if bad:
        raise ImageReadError(
            f"image {path} contains NaN or infinite values ({bad} of {array.size} samples), which have no intensity; "
            "replace them (e.g. by 0) or leave the image out"
        )
