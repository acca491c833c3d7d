"""demo.ipynb runs top to bottom (tiny settings injected into its parameters cell); it is stored with the
outputs of its own code (``make notebook``) and stays small in git."""

from __future__ import annotations

import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from scripts.run_notebook import METADATA_KEY, code_digest
from tests.helpers import REPO_ROOT

NOTEBOOK = REPO_ROOT / "demo.ipynb"


def test_notebook_is_stored_with_the_outputs_of_its_own_code_and_has_a_parameters_cell() -> None:
    """A code cell edited after the last `make notebook` would leave outputs that no longer belong to it."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert NOTEBOOK.stat().st_size < 4_000_000
    assert notebook.metadata[METADATA_KEY]["code_digest"] == code_digest(notebook), "run `make notebook` again"
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    assert len([output for output in outputs if {"image/png", "image/jpeg"} & set(output.get("data", {}))]) >= 5
    tagged = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1 and "FULL = False" in tagged[0].source


@pytest.mark.slow
def test_notebook_runs_end_to_end_with_tiny_settings(tmp_path: Path) -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    parameters = next(cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", []))
    parameters.source += (
        f"\nWORK = {str(tmp_path / 'run')!r}\nEPOCHS, DECAY_EPOCHS, SAVE_EVERY = 1, 1, 1\n"
        'NETWORKS = dict(netG="resnet_6blocks", ngf=4, ndf=4)\n'
        'MAX_IMAGES = 4\nEXTRA_FLAGS = dict(crop_size=64, num_threads=0)\nGPU = "-1"\n'
    )
    started = time.perf_counter()
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(REPO_ROOT)}}
    ).execute()
    print(f"notebook ran in {time.perf_counter() - started:.0f} s")
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    images = [output for output in outputs if {"image/png", "image/jpeg"} & set(output.get("data", {}))]
    assert len(images) >= 5  # domains, losses, scatter plot, the models side by side, colorized frame
    run = tmp_path / "run"
    for name in ("seg", "cycle"):
        assert (run / "results" / name / "evaluation" / "scores.json").is_file()
    assert (run / "colorized" / "image.png").is_file() and (run / "colorized" / "image_preview.png").is_file()
