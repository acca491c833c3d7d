"""The one rule that turns a raw microscopy frame (8/16-bit, any range) into the 8-bit domain-A image.

Microscopy cameras rarely fill their bit depth and a few hot pixels can sit far above the
cells, so the frame is stretched between two robust percentiles of its own values rather than
by its type's maximum or its min/max. Optionally inverted, so that nuclei are dark as in H&E.
``scripts/prepare_ctc.py`` records the settings it used beside the crops, so that the same rule
can be applied to whole frames later.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from util.errors import OptionError


@dataclass(frozen=True)
class IntensityNormalisation:
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
    def from_dict(cls, values: dict[str, Any]) -> IntensityNormalisation:
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
