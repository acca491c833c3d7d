import numpy as np
import pytest
import torch

from data.transforms import Augmentation, Preprocessing, normalize, to_tensor, to_uint8_image
from util.errors import DatasetError


def test_crop_stays_inside_and_varies_with_the_seed() -> None:
    preprocessing = Preprocessing("crop", load_size=0, crop_size=32, flip=True)
    boxes = set()
    for seed in range(50):
        augmentation = preprocessing.draw(100, 60, np.random.default_rng(seed))
        top, left, height, width = augmentation.crop_box
        assert 0 <= top <= 68 and 0 <= left <= 28 and height == width == 32
        boxes.add((top, left, augmentation.flip))
    assert len(boxes) > 40


def test_same_augmentation_keeps_image_and_mask_aligned() -> None:
    image = torch.rand(1, 64, 64)
    mask = (image > 0.5).float()
    preprocessing = Preprocessing("resize_and_crop", load_size=80, crop_size=48, flip=True)
    for seed in range(10):
        augmentation = preprocessing.draw(64, 64, np.random.default_rng(seed))
        assert augmentation.resize_to == (80, 80)
        warped_image = augmentation.apply(image, "nearest")
        warped_mask = augmentation.apply(mask, "nearest")
        assert warped_image.shape == (1, 48, 48)
        assert torch.equal(warped_mask, (warped_image > 0.5).float())


def test_flip_and_resize() -> None:
    image = torch.arange(12.0).reshape(1, 3, 4)
    assert torch.equal(Augmentation(flip=True).apply(image), image.flip(-1))
    assert Augmentation(resize_to=(6, 8)).apply(image).shape == (1, 6, 8)
    mask = Augmentation(resize_to=(6, 8)).apply((image > 5).float(), "nearest")
    assert set(mask.unique().tolist()) == {0.0, 1.0}


def test_scale_width_keeps_aspect_ratio() -> None:
    augmentation = Preprocessing("scale_width", load_size=50, crop_size=10, flip=False).draw(
        200, 100, np.random.default_rng(0)
    )
    assert augmentation.resize_to == (100, 50) and augmentation.crop_box is None and not augmentation.flip


def test_none_changes_nothing() -> None:
    augmentation = Preprocessing("none", 0, 0, flip=False).draw(517, 389, np.random.default_rng(0))
    assert augmentation == Augmentation(input_size=(517, 389))
    image = torch.zeros(1, 517, 389)
    assert torch.equal(augmentation.apply(image), image)
    with pytest.raises(ValueError, match=r"drawn for 389x517 images applied to a 388x517 image"):
        augmentation.apply(torch.zeros(1, 517, 388))


def test_crop_larger_than_image_is_a_clear_error() -> None:
    with pytest.raises(DatasetError, match="smaller than --crop_size 128"):
        Preprocessing("crop", 0, 128, True).draw(100, 200, np.random.default_rng(0), source="image a.png")


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown preprocess mode"):
        Preprocessing("zoom")


def test_tensor_round_trip_to_uint8() -> None:
    image = np.random.default_rng(0).integers(0, 256, (5, 7, 3)).astype(np.float32) / 255
    tensor = normalize(to_tensor(image))
    assert tensor.shape == (3, 5, 7) and tensor.min() >= -1 and tensor.max() <= 1
    np.testing.assert_array_equal(to_uint8_image(tensor), np.round(image * 255).astype(np.uint8))
    assert to_uint8_image(tensor[:1]).shape == (5, 7)
