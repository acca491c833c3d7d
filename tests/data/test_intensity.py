"""data.intensity: the robust percentile stretch of raw microscopy frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from data.intensity import IntensityNormalisation
from util.errors import OptionError

SOURCE = Path(__file__).resolve().parents[2] / "datasets" / "sources" / "fluo_nuclei_dsb2018" / "image.tif"


def test_a_hot_pixel_does_not_darken_a_real_frame() -> None:
    frame = tifffile.imread(SOURCE).astype(np.uint16)  # real 16-bit frame, values 0..235
    hot = frame.copy()
    hot[0, 0] = 65535  # one saturated pixel
    normalised = IntensityNormalisation().apply(hot)
    assert normalised.dtype == np.uint8 and normalised.shape == frame.shape
    assert normalised.max() == 255 and np.percentile(normalised, 99) > 120  # min/max would put it near 0.5
    np.testing.assert_array_equal(IntensityNormalisation(invert=True).apply(hot), 255 - normalised)


def test_constant_frames_and_bad_settings() -> None:
    assert not IntensityNormalisation().apply(np.full((4, 4), 7, np.uint16)).any()
    with pytest.raises(OptionError, match="0 <= low < high <= 100"):
        IntensityNormalisation(low_percentile=50, high_percentile=10)
    with pytest.raises(ValueError, match="gray"):
        IntensityNormalisation().apply(np.zeros((4, 4, 3)))
    settings = IntensityNormalisation(2.0, 98.0, True)
    assert IntensityNormalisation.from_dict(settings.to_dict()) == settings
