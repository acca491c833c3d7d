"""The dataset factory, the unaligned and single datasets, and the sampler, on real demo crops."""

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from data import create_dataloader, create_dataset, dataset_names, find_dataset_class
from data.sampler import EpochSampler
from tests.helpers import dataset_options as options
from util.cli import run_script
from util.errors import DatasetError, ImageReadError, OptionError


def test_factory_lists_valid_names() -> None:
    assert {"single", "unaligned"} <= set(dataset_names())
    with pytest.raises(OptionError, match=r"valid values: .*single.*unaligned"):
        find_dataset_class("aligned_typo")


def test_unaligned_items_are_gray_A_and_rgb_B_in_model_range(demo_root: Path) -> None:
    dataset = create_dataset(options(demo_root))
    assert len(dataset) == max(35, 48)
    item = dataset[(0, 123)]
    assert item["A"].shape == (1, 128, 128) and item["B"].shape == (3, 128, 128)
    for side in ("A", "B"):
        assert item[side].dtype == torch.float32 and -1 <= item[side].min() < item[side].max() <= 1
    assert item["A_paths"].endswith("fluo_r000_c000.png") and "trainB" in item["B_paths"]
    again = dataset[(0, 123)]
    assert torch.equal(item["A"], again["A"]) and item["B_paths"] == again["B_paths"]


def test_serial_batches_and_max_dataset_size(demo_root: Path) -> None:
    dataset = create_dataset(options(demo_root, "--serial_batches", "--max_dataset_size", "5"))
    assert len(dataset) == 5
    assert [Path(dataset[index]["B_paths"]).name for index in range(5)] == sorted(
        path.name for path in (demo_root / "trainB").iterdir()
    )[:5]


def test_direction_BtoA_swaps_the_folders(demo_root: Path) -> None:
    item = create_dataset(options(demo_root, "--direction", "BtoA", "--input_nc", "3", "--output_nc", "1"))[0]
    assert "trainB" in item["A_paths"] and item["A"].shape[0] == 3 and item["B"].shape[0] == 1


def test_loading_does_not_depend_on_worker_count(small_root: Path) -> None:
    """Per-sample seeds make batches identical with 0 or 2 worker processes."""
    batches = []
    for workers in ("0", "2"):
        opt = options(small_root, "--num_threads", workers, "--batch_size", "2", "--crop_size", "64")
        dataset = create_dataset(opt)
        loader, sampler = create_dataloader(dataset, opt, torch.device("cpu"))
        sampler.set_epoch(3)
        batches.append([batch["A"] for batch in loader] + [batch["B"] for batch in loader])
    assert all(torch.equal(a, b) for a, b in zip(*batches, strict=True))


def test_single_reads_testA_or_a_plain_folder(demo_root: Path, tmp_path: Path) -> None:
    opt = options(demo_root)
    opt.dataset_mode, opt.phase, opt.preprocess = "single", "test", "none"
    dataset = create_dataset(opt)
    assert len(dataset) == 7 and set(dataset[0]) == {"A", "A_paths"} and "testA" in dataset[0]["A_paths"]
    for path in sorted((demo_root / "testB").iterdir())[:2]:
        shutil.copy(path, tmp_path / path.name)
    opt.dataroot = str(tmp_path)
    plain = create_dataset(opt)
    assert len(plain) == 2 and plain[1]["A"].shape == (1, 128, 128)


def test_missing_dataroot_names_path_and_layout(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"--dataroot .*nowhere does not exist.*trainA"):
        create_dataset(options(tmp_path / "nowhere"))


def test_missing_domain_folder_names_path_and_layout(small_root: Path, tmp_path: Path) -> None:
    shutil.copytree(small_root / "trainA", tmp_path / "trainA")
    with pytest.raises(DatasetError, match=r"target-domain folder .*trainB does not exist\. Expected layout: .*trainA"):
        create_dataset(options(tmp_path))


def test_empty_folder_is_reported(small_root: Path, tmp_path: Path) -> None:
    shutil.copytree(small_root / "trainA", tmp_path / "trainA")
    (tmp_path / "trainB").mkdir()
    (tmp_path / "trainB" / "readme.txt").write_text("images go here")
    with pytest.raises(DatasetError, match=r"trainB contains no images"):
        create_dataset(options(tmp_path))


def test_corrupt_image_error_names_the_file(small_root: Path, tmp_path: Path) -> None:
    shutil.copytree(small_root / "trainA", tmp_path / "trainA")
    shutil.copytree(small_root / "trainB", tmp_path / "trainB")
    (tmp_path / "trainA" / "aaa_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    dataset = create_dataset(options(tmp_path))
    with pytest.raises(ImageReadError, match=r"aaa_broken\.png"):
        dataset[0]


@pytest.mark.parametrize("cache", [False, True], ids=["read_in_a_worker", "cache"])
def test_a_bad_image_deep_in_the_data_stops_with_one_line_that_tells_how_to_find_them_all(
    demo_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, cache: bool
) -> None:
    """A truncated crop met mid-epoch in a loader worker (or while caching) ends the run with one ERROR line
    naming it and the command that lists every bad file; no traceback."""
    for folder in ("trainA", "trainB"):
        shutil.copytree(demo_root / folder, tmp_path / folder)
    last = sorted((tmp_path / "trainB").glob("*.png"))[-1]
    last.write_bytes(last.read_bytes()[:-12])  # without its IEND chunk: Pillow alone loads it
    extra = ["--cache"] if cache else ["--num_threads", "1"]
    opt = options(tmp_path, "--serial_batches", "--batch_size", "4", "--crop_size", "32", *extra)

    def one_epoch() -> None:
        loader, _ = create_dataloader(create_dataset(opt), opt, torch.device("cpu"))
        for _ in loader:
            pass

    assert run_script(one_epoch) == 1
    errors = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert errors == [
        f"cannot read image {last}: the PNG file ends at byte {last.stat().st_size} without its closing IEND "
        "chunk. The file is truncated or corrupt; replace it or remove it from the folder. Find every bad file "
        f"at once with: python scripts/make_dataset.py --check {tmp_path}"
    ]
    assert "Traceback" not in caplog.text


def test_a_plain_folder_of_images_gets_no_dataroot_check_hint(demo_root: Path, tmp_path: Path) -> None:
    shutil.copy(sorted((demo_root / "testA").iterdir())[0], tmp_path / "frame.png")
    (tmp_path / "frame_cut.png").write_bytes((tmp_path / "frame.png").read_bytes()[:-12])
    opt = options(tmp_path)
    opt.dataset_mode, opt.phase, opt.preprocess = "single", "test", "none"
    with pytest.raises(ImageReadError) as caught:
        create_dataset(opt)[1]
    assert str(caught.value).endswith("replace it or remove it from the folder.")


def test_sampler_is_a_reproducible_permutation_per_epoch() -> None:
    sampler = EpochSampler(10, shuffle=True, seed=5)
    sampler.set_epoch(1)
    first = list(sampler)
    assert sorted(index for index, _ in first) == list(range(10))
    assert list(sampler) == first
    sampler.set_epoch(2)
    assert list(sampler) != first
    serial = EpochSampler(4, shuffle=False, seed=5)
    assert [index for index, _ in serial] == [0, 1, 2, 3]
    assert len({seed for _, seed in first}) == 10 and np.iinfo(np.int64).max > max(seed for _, seed in first)
