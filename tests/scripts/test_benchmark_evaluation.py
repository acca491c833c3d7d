"""scripts/benchmark_evaluation.py at a tiny size: it builds epochs from real crops, evaluates them and reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts.benchmark_evaluation import build_results, main


def test_built_epochs_look_like_test_py_output(demo_root: Path, tmp_path: Path) -> None:
    results, data = build_results(tmp_path, demo_root, epochs=2, images=3)
    for split in ("val", "test"):
        for epoch in ("1", "2"):
            names = sorted(path.name for path in (results / f"{split}_{epoch}" / "images").iterdir())
            assert names == [f"crop{index:05d}_{kind}.png" for index in range(3) for kind in ("fake_B", "real_A")]
        first, second = (results / f"{split}_{epoch}" / "images" / "crop00000_fake_B.png" for epoch in ("1", "2"))
        assert first.read_bytes() != second.read_bytes()  # every epoch colours differently
        assert len(list((data / f"{split}A_GT").iterdir())) == 3 and any((data / f"{split}B").iterdir())
    assert any((data / "trainA").iterdir()) and any((data / "trainB").iterdir())


@pytest.mark.slow
def test_a_tiny_run_prints_and_saves_the_time(
    demo_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record_path = tmp_path / "evaluation.json"
    arguments = ["--epochs", "2", "--images", "3", "--workers", "1", "--dataroot", str(demo_root)]
    assert main([*arguments, "--json", str(record_path)]) == 0
    record = json.loads(record_path.read_text())
    assert record["epochs"] == 2 and record["images_per_epoch"] == 3 and record["seconds"] > 0
    assert record["images_per_s"] == pytest.approx(6 / record["seconds"], rel=0.05)
    printed = capsys.readouterr().out
    assert "2 epochs x 3 images (val; the chosen epoch on test too) scored in" in printed
    assert "test split, epoch" in printed  # an epoch passed the guards and was scored on test as well
