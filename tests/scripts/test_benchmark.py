"""scripts/benchmark.py at a tiny configuration, and the reference losses it compares against."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch

from models import improved_losses
from scripts.benchmark import (
    REQUIRED_KEYS,
    BenchmarkConfig,
    PeakMemory,
    add_ratios_to_cycle_gan,
    format_table,
    main,
    ratio_label,
    run_benchmark,
)
from scripts.reference_losses import (
    reference_color_variation_loss,
    reference_gt_loss,
    reference_hsv_loss,
    reference_hsv_loss_numpy,
)
from tests.helpers import demo_batch
from util.errors import DatasetError

TINY = [
    "--netG", "resnet_6blocks", "--ngf", "4", "--ndf", "4", "--crop_size", "32", "--gpu_ids", "-1",
    "--iterations", "1", "--warmup", "1", "--repeats", "1", "--loss_batch_size", "1", "--num_patches", "16",
]  # fmt: skip


@pytest.mark.slow
def test_json_has_every_model_every_key_and_finite_numbers(
    small_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "benchmark.json"
    assert main(["--dataroot", str(small_root), *TINY, "--json", str(output)]) == 0
    records = json.loads(output.read_text(encoding="utf-8"))

    models = [record for record in records if record["kind"] == "train"]
    assert [record["model"] for record in models] == ["cycle_gan", "seg_cycle_gan", "cut", "seg_cut"]
    for record in models:
        assert set(REQUIRED_KEYS) <= record.keys()
        assert (record["netG"], record["ngf"], record["batch_size"], record["crop_size"]) == (
            "resnet_6blocks",
            4,
            1,
            32,
        )
        assert (record["amp"], record["channels_last"], record["compile"], record["device"]) == (
            "none",
            False,
            False,
            "cpu",
        )
        for key in ("seconds_per_iteration", "train_images_per_s", "infer_seconds_per_batch", "infer_images_per_s"):
            assert math.isfinite(record[key]) and record[key] > 0, key
        assert record["train_peak_memory_mb"] is None or record["train_peak_memory_mb"] >= 0
    for record in models[1:]:
        assert record["train_time_ratio_to_cycle_gan"] > 0 and record["infer_time_ratio_to_cycle_gan"] > 0
    assert "train_time_ratio_to_cycle_gan" not in models[0]

    losses = {record["loss"]: record for record in records if record["kind"] == "loss"}
    assert losses.keys() == {"gt", "structure", "color", "color (numpy ref.)"}
    for record in losses.values():
        for key in ("ours_forward_backward_s", "ours_forward_s", "reference_forward_s", "speedup_forward"):
            assert math.isfinite(record[key]) and record[key] > 0, key

    printed = capsys.readouterr().out
    assert "seg/cycle" in printed and "speed-up fwd" in printed and torch.__version__ in printed
    assert "cut/cycle" in printed and "seg_cut/cycle" in printed and "train peak MB" in printed


def test_peak_memory_sees_what_the_iterations_allocate() -> None:
    """The CPU measure (peak resident memory above the start) sees a 64 MB tensor made and freed inside."""
    with PeakMemory(torch.device("cpu")) as memory:
        block = torch.ones(16 * 2**20)  # 64 MB, written so its pages are resident
        del block
    if memory.bytes is None:
        pytest.skip(f"no honest CPU measure here: {memory.measure}")
    assert 60 * 2**20 < memory.bytes < 200 * 2**20 and "VmHWM" in memory.measure
    with PeakMemory(torch.device("cpu")) as small:
        torch.ones(1000)
    assert small.bytes is not None and small.bytes < 16 * 2**20


def test_ratios_to_cycle_gan_cover_every_other_model_and_are_labelled_by_model() -> None:
    records = [
        {"model": name, "seconds_per_iteration": seconds, "infer_seconds_per_batch": 0.01, "train_peak_memory_mb": mb}
        for name, seconds, mb in (("cycle_gan", 0.2, 100.0), ("cut", 0.1, 40.0), ("seg_cut", 0.12, None))
    ]
    add_ratios_to_cycle_gan(records)
    assert records[1]["train_time_ratio_to_cycle_gan"] == pytest.approx(0.5)
    assert records[1]["train_memory_ratio_to_cycle_gan"] == pytest.approx(0.4)
    assert records[2]["train_memory_ratio_to_cycle_gan"] is None
    assert [ratio_label(name) for name in ("seg_cycle_gan", "cut", "seg_cut")] == [
        "seg/cycle",
        "cut/cycle",
        "seg_cut/cycle",
    ]


def test_reference_hsv_loss_is_zero_for_identical_images_and_grows_with_a_colour_shift(demo_root: Path) -> None:
    he = demo_batch(demo_root / "trainB", 2)
    shifted = he.roll(1, dims=1)  # R, G, B -> B, R, G: pink and purple become other hues
    assert reference_hsv_loss(he, he) == pytest.approx(0.0, abs=1e-6)
    assert reference_hsv_loss(shifted, he) > 0.1
    assert reference_hsv_loss_numpy(he, he) == pytest.approx(0.0, abs=1e-6)
    assert reference_hsv_loss_numpy(shifted, he) == pytest.approx(reference_hsv_loss(shifted, he), abs=0.05)


def test_reference_hsv_loss_scores_only_the_last_image_pair(demo_root: Path) -> None:
    he = demo_batch(demo_root / "trainB", 2)
    first_changed = he.clone()
    first_changed[0] = first_changed[0].roll(1, dims=0)
    assert reference_hsv_loss(first_changed, he) == pytest.approx(0.0, abs=1e-6)


def test_the_seeds_structure_loss_changes_sign_across_mid_gray_and_ours_does_not() -> None:
    """Flat 0.45 against flat 0.55 (in [0, 1]): nearly the same image. The seed's SSIM on [-1, 1] calls it
    anti-correlated (loss near 1); ours, on [0, 1], nearly identical (loss near 0)."""
    first, second = torch.full((1, 1, 32, 32), -0.1), torch.full((1, 1, 32, 32), 0.1)
    assert reference_color_variation_loss(first, second) > 0.95
    assert float(improved_losses.structure_loss(first, second)) < 0.02
    assert reference_color_variation_loss(first.expand(-1, 3, -1, -1), first) == pytest.approx(0.0, abs=1e-6)


def test_reference_gt_loss_agrees_in_direction(demo_root: Path) -> None:
    gray, mask = demo_batch(demo_root / "trainA", 4), demo_batch(demo_root / "trainA_GT", 4)
    assert mask.any() and not mask.all()
    inverted = -gray  # nuclei bright, background dark: the wrong way round
    assert reference_gt_loss(gray, mask) < reference_gt_loss(inverted, mask)
    perfect = 1.0 - 2.0 * mask  # nuclei black, background white
    assert reference_gt_loss(perfect, mask) == pytest.approx(0.0, abs=1e-6)


def test_bad_dataroot_is_a_clean_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    missing, empty = tmp_path / "missing", tmp_path / "empty"
    empty.mkdir()
    for dataroot in (missing, empty):
        assert main(["--dataroot", str(dataroot), *TINY]) == 1
    errors = [record for record in caplog.records if record.levelname == "ERROR"]
    assert len(errors) == 2 and all("does not exist" in record.getMessage() for record in errors)
    assert all(record.exc_info is None for record in errors)  # one line each, no traceback
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and captured.out == ""
    with pytest.raises(DatasetError, match="does not exist"):
        run_benchmark(BenchmarkConfig(dataroot=missing))


def test_table_columns_are_aligned() -> None:
    lines = format_table(["name", "value"], [["a", "1"], ["longer", "12.5"]]).splitlines()
    assert len({len(line) for line in lines}) == 1
    assert lines[1].startswith("a ") and lines[2].endswith("12.5")


def test_missing_default_demo_is_built_in_a_temporary_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    absent = tmp_path / "absent" / "demo"
    monkeypatch.setattr("scripts.benchmark.DEFAULT_OUTPUT", absent)
    assert main([*TINY, "--models", "cycle_gan", "--no_losses"]) == 0
    assert not absent.exists()  # built elsewhere and removed, never where the default points
    printed = capsys.readouterr().out
    assert "cycle_gan" in printed and "seg/cycle" not in printed and "speed-up" not in printed


@pytest.mark.slow
def test_threads_and_busy_processes_are_timed_in_one_run(small_root: Path, tmp_path: Path) -> None:
    """Every (threads, busy) pair gets a record that says how it was measured; the busy processes are gone after."""
    output = tmp_path / "threads.json"
    arguments = ["--dataroot", str(small_root), *TINY, "--models", "cycle_gan", "--no_losses"]
    assert main([*arguments, "--threads", "1", "2", "--busy", "0", "1", "--json", str(output)]) == 0
    records = json.loads(output.read_text(encoding="utf-8"))
    assert sorted((record["threads"], record["busy_processes"]) for record in records) == [
        (1, 0), (1, 1), (2, 0), (2, 1)
    ]  # fmt: skip
    assert not [line for line in Path("/proc").glob("*/cmdline") if b"while True: pass" in _read(line)]


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:  # a process that ended while we looked
        return b""


def test_auto_threads_are_train_py_s_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    from scripts.benchmark import build_parser, default_threads
    from util.device import choose_compute_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert build_parser().parse_args([]).threads == ["auto"]
    assert default_threads() == choose_compute_threads(None, min(4, os.cpu_count() or 1))[0]
