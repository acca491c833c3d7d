"""scripts/export_model.py: TorchScript and ONNX files that run without this project and match PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from data.image_io import read_array
from experiment import Experiment
from scripts import export_model


def real_crops(demo_root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Two real gray crops, one of them cut to an odd size, as the network's [-1, 1] input."""
    pixels = read_array(sorted((demo_root / "testA").glob("*.png"))[0]).astype(np.float32)
    crop = torch.from_numpy(pixels / 127.5 - 1.0)[None, None]
    return crop, crop[..., 3:100, 5:122].contiguous()


@pytest.mark.slow
@pytest.mark.parametrize("export_format", ["torchscript", "onnx"])
def test_exported_generator_matches_pytorch_on_real_crops(
    export_format: str, trained_experiment: tuple[Path, str], demo_root: Path, tmp_path: Path
) -> None:
    checkpoints, name = trained_experiment
    output = tmp_path / f"g_a.{export_format}"
    arguments = ["--name", name, "--checkpoints_dir", str(checkpoints), "--epoch", "2", "--format", export_format]
    assert export_model.main([*arguments, "--output", str(output)]) == 0

    generator, architecture = Experiment(checkpoints, name).load_generator("2", torch.device("cpu"))
    for images in real_crops(demo_root):
        with torch.no_grad():
            expected = generator(images).numpy()
        exported = export_model.run_exported(output, export_format, images)
        assert exported.shape == expected.shape == (1, 3, *images.shape[-2:])
        assert np.abs(exported - expected).max() < 1e-4

    metadata = export_model.read_metadata(output, export_format)
    assert metadata["epoch"] == "2" and metadata["architecture"] == architecture
    assert metadata["input"]["channels"] == 1 and metadata["output"]["range"] == [-1.0, 1.0]
    assert [path.name for path in tmp_path.iterdir()] == [output.name]  # no temporary left behind


def test_existing_files_and_missing_epochs_are_refused(
    trained_experiment: tuple[Path, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    checkpoints, name = trained_experiment
    output = tmp_path / "mine.pt"
    output.write_bytes(b"mine")
    arguments = ["--name", name, "--checkpoints_dir", str(checkpoints), "--format", "torchscript"]
    assert export_model.main([*arguments, "--output", str(output)]) == 1
    assert "exists already" in caplog.text and output.read_bytes() == b"mine"
    assert export_model.main([*arguments, "--epoch", "9", "--output", str(tmp_path / "new.pt")]) == 1
    assert "no checkpoint for epoch '9'" in caplog.text and ": 1, 2, latest" in caplog.text
    assert not (tmp_path / "new.pt").exists()
