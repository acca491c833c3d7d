"""--cache: every file decoded once before training, the same items, and a fallback when memory is short."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from data import base_dataset, create_dataloader, create_dataset
from tests.helpers import dataset_options


def test_cached_items_equal_items_read_from_disk_and_need_no_reads(
    small_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    arguments = ("--model", "seg_cycle_gan", "--dataset_mode", "improvedunaligned")
    plain = create_dataset(dataset_options(small_root, *arguments))
    cached = create_dataset(dataset_options(small_root, *arguments, "--cache"))
    assert len(cached.cache) == len(plain.paths_A) + len(plain.paths_B) + len(plain.gt_paths)
    keys = [(0, 11), (1, 12), (2, 13)]
    expected = [plain[key] for key in keys]

    def no_disk(path: Path) -> None:
        raise AssertionError(f"{path} was read from disk")

    for kind in base_dataset.READERS:
        monkeypatch.setitem(base_dataset.READERS, kind, no_disk)
    for key, from_disk in zip(keys, expected, strict=True):
        from_cache = cached[key]
        for name in ("A", "B", "A_GT"):
            assert torch.equal(from_disk[name], from_cache[name]), name


def test_cache_is_skipped_with_a_warning_when_memory_is_short(
    small_root: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(base_dataset, "_available_memory_bytes", lambda: 40_000)
    dataset = create_dataset(dataset_options(small_root, "--cache"))
    assert dataset.cache == {}
    assert "--cache ignored" in caplog.text
    assert dataset[(0, 1)]["A"].shape[0] == 1  # still loads, from disk


def test_workers_of_a_cached_dataset_are_forked_so_they_share_its_pages(small_root: Path) -> None:
    cached = create_dataset(dataset_options(small_root, "--cache", "--num_threads", "2"))
    loader, _ = create_dataloader(cached, cached.opt, torch.device("cpu"))
    assert loader.multiprocessing_context.get_start_method() == "fork"
    plain = create_dataset(dataset_options(small_root, "--num_threads", "2"))
    assert create_dataloader(plain, plain.opt, torch.device("cpu"))[0].multiprocessing_context is None
