"""data.intensity: the robust percentile stretch of raw microscopy frames."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from data import create_dataset
from data.image_io import read_array
from data.intensity import IntensityNormalization, prepare_source, recorded_normalization
from data.preparation import write_settings
from data.transforms import gray_to_tensor, normalize
from experiment import TRAIN_OPTIONS, Experiment, save_options
from tests.helpers import dataset_options
from util.errors import ImageReadError, OptionError

SOURCE = Path(__file__).resolve().parents[2] / "datasets" / "sources" / "fluo_nuclei_dsb2018" / "image.tif"


def test_a_hot_pixel_does_not_darken_a_real_frame() -> None:
    frame = tifffile.imread(SOURCE).astype(np.uint16)  # real 16-bit frame, values 0..235
    hot = frame.copy()
    hot[0, 0] = 65535  # one saturated pixel
    normalised = IntensityNormalization().apply(hot)
    assert normalised.dtype == np.uint8 and normalised.shape == frame.shape
    assert normalised.max() == 255 and np.percentile(normalised, 99) > 120  # min/max would put it near 0.5
    np.testing.assert_array_equal(IntensityNormalization(invert=True).apply(hot), 255 - normalised)


def test_constant_frames_and_bad_settings() -> None:
    assert not IntensityNormalization().apply(np.full((4, 4), 7, np.uint16)).any()
    with pytest.raises(OptionError, match="0 <= low < high <= 100"):
        IntensityNormalization(low_percentile=50, high_percentile=10)
    with pytest.raises(ValueError, match="gray"):
        IntensityNormalization().apply(np.zeros((4, 4, 3)))
    settings = IntensityNormalization(2.0, 98.0, True)
    assert IntensityNormalization.from_dict(settings.to_dict()) == settings


# -- the one way a source image reaches a generator -------------------------------------------------
def test_prepare_source_takes_prepared_crops_as_they_are_and_applies_the_rule_to_raw_frames(tmp_path: Path) -> None:
    rule = IntensityNormalization(0.5, 99.5, invert=True)
    dataroot = tmp_path / "data"
    write_settings(dataroot, {"normalization": rule.to_dict()})
    crop = np.arange(64, dtype=np.uint8).reshape(8, 8)
    prepared = dataroot / "testA" / "crop.png"  # what a preparation script wrote: the rule's output
    assert prepare_source(crop, rule, prepared) is crop
    np.testing.assert_array_equal(prepare_source(crop, rule, prepared, always=True), rule.apply(crop))
    # An 8-bit raw frame (Cell Tracking Challenge frames can be 8-bit) outside a prepared dataset gets the rule.
    np.testing.assert_array_equal(prepare_source(crop, rule, tmp_path / "raw" / "t000.tif"), rule.apply(crop))
    assert prepare_source(crop, None, tmp_path / "raw" / "t000.tif") is crop  # no rule: 8-bit as it is
    frame = tifffile.imread(SOURCE)[:64, :64]
    np.testing.assert_array_equal(prepare_source(frame, rule, prepared.with_suffix(".tif")), rule.apply(frame))
    by_range = prepare_source(frame, None, "frame.tif")
    assert by_range.dtype == np.uint8 and by_range.min() == 0 and by_range.max() == 255
    rgb = np.repeat(crop[:, :, None], 3, axis=2)
    np.testing.assert_array_equal(prepare_source(rgb, None, "rgb.png"), crop)
    with pytest.raises(ImageReadError, match=r"nan\.tif contains NaN"):
        prepare_source(np.full((4, 4), np.nan, np.float32), rule, "nan.tif")


def test_recorded_rule_is_read_from_old_and_new_files(tmp_path: Path) -> None:
    assert recorded_normalization(tmp_path) is None
    write_settings(tmp_path, {"normalisation": {"low_percentile": 2.0, "high_percentile": 98.0, "invert": True}})
    assert recorded_normalization(tmp_path) == IntensityNormalization(2.0, 98.0, True)
    write_settings(tmp_path, {"A": {"normalization": {"low_percentile": 1.0}}, "B": None})  # make_dataset.py's
    assert recorded_normalization(tmp_path) == IntensityNormalization(1.0, 99.8, False)


def test_one_raw_frame_reaches_the_generator_as_the_same_pixels_through_every_driver(
    demo_root: Path, tmp_path: Path
) -> None:
    """Training datasets, test.py and colorize.py feed G_A the same tensor for one raw 16-bit frame."""
    rule = IntensityNormalization(0.5, 99.5, invert=True)
    frame = tifffile.imread(SOURCE)[:128, :160]
    data = tmp_path / "data"
    for folder in ("trainA", "testA"):
        (data / folder).mkdir(parents=True)
        tifffile.imwrite(data / folder / "frame.tif", frame)
    shutil.copytree(demo_root / "trainB", data / "trainB")
    write_settings(data, {"normalization": rule.to_dict()})
    experiment = Experiment(tmp_path / "checkpoints", "run")  # what test.py and colorize.py read the rule from
    save_options(experiment.directory, TRAIN_OPTIONS, {"dataroot": str(data)}, "")
    assert experiment.training_normalization() == rule

    training = create_dataset(dataset_options(data, "--preprocess", "none", "--no_flip"))[(0, 0)]["A"]
    as_test_py = vars(dataset_options(data, "--preprocess", "none", "--no_flip"))
    testing_options = argparse.Namespace(**{**as_test_py, "dataset_mode": "single", "phase": "test"})
    testing = create_dataset(testing_options, experiment.training_normalization())[0]["A"]
    gray = prepare_source(
        read_array(data / "testA" / "frame.tif", max_pixels=None), experiment.training_normalization(), "frame.tif"
    )
    colorizing = normalize(gray_to_tensor(gray))  # colorize.py's tiles are slices of this
    assert training.shape == (1, 128, 160)
    assert torch.equal(training, testing) and torch.equal(training, colorizing)
    assert torch.equal(training, normalize(gray_to_tensor(rule.apply(frame))))  # the recorded rule, not min/max
