"""The improvedunaligned dataset: source images with their nucleus masks, paired by name, on real demo crops."""

import argparse
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from data import create_dataloader, create_dataset, dataset_names
from data.image_io import read_array, read_image
from data.sampler import EpochSampler
from data.transforms import to_uint8_image
from tests.helpers import dataset_options
from util.errors import DatasetError, OptionError


def options(dataroot: Path, *extra: str) -> argparse.Namespace:
    """Training options for ``dataroot`` with masks."""
    return dataset_options(dataroot, "--dataset_mode", "improvedunaligned", *extra)


def gray8(path: Path) -> np.ndarray:
    """The 8-bit gray pixels the dataset sees for source image ``path``."""
    return np.rint(read_image(path, 1)[:, :, 0] * 255).astype(np.uint8)


def threshold(pixels: np.ndarray) -> int:
    return int(np.median(pixels))


def self_masked_root(demo_root: Path, root: Path, names: dict[str, str], mask_suffix: str = ".png") -> Path:
    """A dataroot whose masks are derived from their own image: 255 where the pixel is darker than its median.

    ``names`` maps a demo trainA file to its name in the new root, so tests choose the names.
    """
    for source_name, name in names.items():
        image_path, mask_path = root / "trainA" / name, (root / "trainA_GT" / name).with_suffix(mask_suffix)
        image_path.parent.mkdir(parents=True, exist_ok=True)
        mask_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(demo_root / "trainA" / source_name, image_path)
        pixels = gray8(image_path)
        mask = np.where(pixels < threshold(pixels), 255, 0).astype(np.uint8)
        if mask_suffix == ".tif":
            tifffile.imwrite(mask_path, mask)
        else:
            Image.fromarray(mask).save(mask_path)
    (root / "trainB").mkdir()
    for path in sorted((demo_root / "trainB").glob("*.png"))[:8]:
        shutil.copy(path, root / "trainB" / path.name)
    return root


def demo_names(demo_root: Path, count: int) -> list[str]:
    return [path.name for path in sorted((demo_root / "trainA").glob("*.png"))[:count]]


def locate(crop: np.ndarray, original: np.ndarray) -> tuple[int, int, bool]:
    """Where ``crop`` lies in ``original``: (top, left, flipped); fails if it is no crop of it."""
    size = crop.shape[0]
    for flipped in (False, True):
        unflipped = crop[:, ::-1] if flipped else crop
        rows = np.lib.stride_tricks.sliding_window_view(original, size, axis=1)  # (H, W - size + 1, size)
        for top, left in zip(*np.nonzero((rows == unflipped[0]).all(axis=-1)), strict=True):
            window = original[top : top + size, left : left + size]
            if window.shape == crop.shape and np.array_equal(window, unflipped):
                return int(top), int(left), flipped
    raise AssertionError("the returned A is not a crop of its source image")


def test_factory_lists_improvedunaligned() -> None:
    assert "improvedunaligned" in dataset_names()


def test_items_hold_the_mask_of_their_image(small_root: Path) -> None:
    dataset = create_dataset(options(small_root, "--preprocess", "none", "--no_flip"))
    assert len(dataset) == 3
    for index in range(3):
        item = dataset[(index, index)]
        assert set(item) == {"A", "B", "A_GT", "A_paths", "B_paths", "A_GT_paths"}
        assert item["A"].shape == item["A_GT"].shape == (1, 128, 128) and item["B"].shape == (3, 128, 128)
        assert item["A"].dtype == item["A_GT"].dtype == torch.float32
        assert set(item["A_GT"].unique().tolist()) == {0.0, 1.0}
        assert Path(item["A_GT_paths"]).parent.name == "trainA_GT"
        assert Path(item["A_GT_paths"]).name == Path(item["A_paths"]).name
        expected = read_array(item["A_GT_paths"]) > 0
        assert torch.equal(item["A_GT"][0], torch.from_numpy(expected).float())


def test_mask_follows_every_random_crop_and_flip(demo_root: Path, tmp_path: Path) -> None:
    names = demo_names(demo_root, 4)
    root = self_masked_root(demo_root, tmp_path / "data", {name: name for name in names})
    originals = {name: gray8(root / "trainA" / name) for name in names}
    dataset = create_dataset(options(root, "--crop_size", "64"))
    assert len(dataset) == 8

    def check(index: int, seed: int) -> tuple[int, int, bool]:
        item = dataset[(index, seed)]
        pixels = to_uint8_image(item["A"])
        original = originals[Path(item["A_paths"]).name]
        assert item["A_GT"].shape == (1, 64, 64)
        expected = torch.from_numpy(pixels < threshold(original)).float()
        assert torch.equal(item["A_GT"][0], expected), f"mask and image differ for sample ({index}, {seed})"
        return locate(pixels, original)

    placements = [check(index % len(dataset), seed) for index, seed in enumerate(range(40))]
    assert {flipped for _, _, flipped in placements} == {False, True}
    assert len({(top, left) for top, left, _ in placements}) > 20
    # Samples of one epoch draw their own flips: not one flip for the whole run.
    sampler = EpochSampler(len(dataset), shuffle=True, seed=7)
    sampler.set_epoch(1)
    assert len({check(index, seed)[2] for index, seed in sampler}) == 2


def test_resize_keeps_the_mask_binary_and_a_batch_stacks(small_root: Path) -> None:
    opt = options(small_root, "--preprocess", "resize_and_crop", "--load_size", "150", "--batch_size", "2")
    dataset = create_dataset(opt)
    loader, sampler = create_dataloader(dataset, opt, torch.device("cpu"))
    sampler.set_epoch(1)
    batch = next(iter(loader))
    assert batch["A_GT"].shape == (2, 1, 128, 128) and len(batch["A_GT_paths"]) == 2
    assert set(batch["A_GT"].unique().tolist()) == {0.0, 1.0}


def test_masks_pair_by_name_not_by_sorted_position(demo_root: Path, tmp_path: Path) -> None:
    first, second, third = demo_names(demo_root, 3)
    names = {first: "img.png", second: "img.rot.png", third: "sub/deep.png"}
    root = self_masked_root(demo_root, tmp_path / "data", names, mask_suffix=".tif")
    images = [path.relative_to(root / "trainA").as_posix() for path in sorted((root / "trainA").rglob("*.png"))]
    masks = [path.relative_to(root / "trainA_GT").as_posix() for path in sorted((root / "trainA_GT").rglob("*.tif"))]
    # Precondition: pairing by sorted position would swap the masks of img and img.rot.
    assert images[:2] == ["img.png", "img.rot.png"] and masks[:2] == ["img.rot.tif", "img.tif"]
    dataset = create_dataset(options(root, "--preprocess", "none", "--no_flip"))
    for index in range(3):
        item = dataset[index]
        image_name = Path(item["A_paths"]).relative_to(root / "trainA")
        assert Path(item["A_GT_paths"]).relative_to(root / "trainA_GT") == image_name.with_suffix(".tif")
        pixels = to_uint8_image(item["A"])
        assert torch.equal(item["A_GT"][0], torch.from_numpy(pixels < threshold(pixels)).float())


def copy_small(small_root: Path, root: Path) -> Path:
    for folder in ("trainA", "trainA_GT", "trainB"):
        shutil.copytree(small_root / folder, root / folder)
    return root


def test_missing_extra_and_duplicate_masks_are_listed(small_root: Path, tmp_path: Path) -> None:
    root = copy_small(small_root, tmp_path / "data")
    names = sorted(path.name for path in (root / "trainA_GT").iterdir())
    (root / "trainA_GT" / names[0]).unlink()
    shutil.copy(root / "trainA_GT" / names[1], root / "trainA_GT" / "ghost.png")
    tifffile.imwrite((root / "trainA_GT" / names[2]).with_suffix(".tif"), read_array(root / "trainA_GT" / names[2]))
    with pytest.raises(DatasetError) as error:
        create_dataset(options(root))
    message = str(error.value)
    stem = Path(names[2]).stem
    assert f"without a mask in {root / 'trainA_GT'} (1): {names[0]}" in message
    assert f"without an image in {root / 'trainA'} (1): ghost.png" in message
    assert f"more than one mask in {root / 'trainA_GT'} (1): {stem} ({stem}.png, {stem}.tif)" in message


def test_masks_beyond_max_dataset_size_are_not_extra(small_root: Path, tmp_path: Path) -> None:
    dataset = create_dataset(options(copy_small(small_root, tmp_path / "data"), "--max_dataset_size", "1"))
    assert len(dataset.paths_A) == 1 and dataset[0]["A_GT"].shape == (1, 128, 128)


def test_long_lists_name_ten_files_and_the_count(small_root: Path, tmp_path: Path) -> None:
    root = copy_small(small_root, tmp_path / "data")
    source = next((root / "trainA").iterdir())
    for number in range(12):
        shutil.copy(source, root / "trainA" / f"unmasked_{number:02d}.png")
    with pytest.raises(DatasetError, match=r"\(12\): unmasked_00\.png, .*unmasked_09\.png, and 2 more; add a mask"):
        create_dataset(options(root))


def test_missing_mask_folder_suggests_unaligned(small_root: Path, tmp_path: Path) -> None:
    root = copy_small(small_root, tmp_path / "data")
    shutil.rmtree(root / "trainA_GT")
    with pytest.raises(DatasetError, match=r"mask folder .*trainA_GT does not exist.*--dataset_mode unaligned"):
        create_dataset(options(root))


@pytest.mark.parametrize(
    ("encoding", "seen"),
    [("labels16_tif", "values 0..17 (instance labels?)"), ("labels16_png", "0..17"), ("zero_one", "values 0, 1")],
)
def test_label_and_zero_one_masks_are_binarised_with_one_warning(
    small_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, encoding: str, seen: str
) -> None:
    root = copy_small(small_root, tmp_path / "data")
    reference = create_dataset(options(root, "--preprocess", "none", "--no_flip"))
    expected = [reference[index]["A_GT"] for index in range(3)]
    for path in sorted((root / "trainA_GT").iterdir()):
        binary = read_array(path) > 0
        if encoding == "zero_one":
            Image.fromarray(binary.astype(np.uint8)).save(path)
            continue
        labels = np.zeros(binary.shape, dtype=np.uint16)
        labels[binary] = np.arange(binary.sum()) % 17 + 1  # instance labels 1..17 over the nuclei
        path.unlink()
        if encoding == "labels16_tif":
            tifffile.imwrite(path.with_suffix(".tif"), labels)
        else:
            Image.fromarray(labels).save(path)
        assert read_array(path.with_suffix(".tif") if encoding == "labels16_tif" else path).dtype == np.uint16
    dataset = create_dataset(options(root, "--preprocess", "none", "--no_flip"))
    with caplog.at_level(logging.WARNING, logger="data.unaligned_dataset"):
        masks = [dataset[index]["A_GT"] for index in range(3)]
    assert all(torch.equal(mask, reference_mask) for mask, reference_mask in zip(masks, expected, strict=True))
    assert len(caplog.records) == 1, "the warning is given once per dataset"
    assert seen in caplog.text and "trainA_GT" in caplog.text and "value > 0" in caplog.text


def test_colour_masks_count_any_channel_and_0_255_gives_no_warning(
    small_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = copy_small(small_root, tmp_path / "data")
    path = sorted((root / "trainA_GT").iterdir())[0]
    binary = read_array(path) > 0
    colour = np.zeros((*binary.shape, 4), dtype=np.uint8)
    colour[..., 3] = 255  # opaque alpha must not count as foreground
    colour[binary, 0] = 255
    Image.fromarray(colour, mode="RGBA").save(path)
    dataset = create_dataset(options(root, "--preprocess", "none", "--no_flip"))
    with caplog.at_level(logging.WARNING):
        item = dataset[0]
    assert torch.equal(item["A_GT"][0], torch.from_numpy(binary).float()) and not caplog.records


def test_mask_of_another_size_names_both_files(small_root: Path, tmp_path: Path) -> None:
    root = copy_small(small_root, tmp_path / "data")
    path = sorted((root / "trainA_GT").iterdir())[0]
    Image.fromarray(read_array(path)[:64, :96]).save(path)
    dataset = create_dataset(options(root))
    with pytest.raises(DatasetError, match=rf"mask .*trainA_GT/{path.name} is 96x64 .*trainA/{path.name} is 128x128"):
        dataset[0]


def test_direction_BtoA_is_refused(small_root: Path) -> None:
    with pytest.raises(OptionError, match=r"masks .* belong to domain A.*--direction AtoB"):
        create_dataset(options(small_root, "--direction", "BtoA", "--input_nc", "3", "--output_nc", "1"))
