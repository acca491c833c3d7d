"""scripts/ablation.py: the demo flags it trains with, and a tiny run from training to the README table."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from data.image_io import read_array
from scripts.ablation import BASELINES, CONFIGURATIONS, DEMO_FLAGS, README_BEGIN, README_END, main
from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.slow

TINY = ["--ngf", "4", "--ndf", "4", "--n_epochs", "1", "--n_epochs_decay", "1", "--save_epoch_freq", "1"]


def test_demo_flags_are_the_makefiles() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    model = re.search(r"^DEMO_MODEL := --model seg_cycle_gan (.*)$", makefile, re.MULTILINE)[1].split()
    schedule = re.search(r"^DEMO_SCHEDULE := (.*)$", makefile, re.MULTILINE)[1].split()
    assert list(DEMO_FLAGS) == model + schedule


def test_a_tiny_ablation_writes_the_table_the_grid_and_the_readme_section(small_root: Path, tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nbefore\n{README_BEGIN}\nold table\n{README_END}\nafter\n", encoding="utf-8")
    docs = tmp_path / "docs"
    arguments = [
        "--dataroot", str(small_root), "--checkpoints_dir", str(tmp_path / "checkpoints"),
        "--results_dir", str(tmp_path / "results"), "--docs", str(docs), "--readme", str(readme),
        "--seeds", "0", "--configurations", "cycle_gan", "seg_cycle_gan", "--jobs", "2", "--extra", *TINY,
    ]  # fmt: skip
    assert main(arguments) == 0
    records = json.loads((docs / "results.json").read_text())
    assert set(records) == {"test", "val"}
    assert [record["configuration"] for record in records["test"]] == ["cycle_gan", "seg_cycle_gan", *BASELINES]
    for record in records["test"][:2] + records["val"][:2]:
        assert record["seeds"] == [0] and record["epochs"][0] in ("1", "2")
        assert record["nucleus_f1"]["mean"] is not None and 0 <= record["nucleus_f1"]["mean"] <= 1
    text = readme.read_text()
    assert text.startswith("# Title\n\nbefore\n") and text.endswith("after\n") and "old table" not in text
    assert "| `seg_cycle_gan` |" in text and "scripts/ablation.py" in text and "ablation_grid.jpg" in text
    assert "**Test split**" in text and "**Validation split**" in text
    assert "| `seg_cycle_gan` |" in (docs / "results.md").read_text()
    grid = read_array(docs / "images" / "ablation_grid.jpg")
    assert grid.ndim == 3 and grid.shape[1] > grid.shape[0]
    frame = read_array(docs / "images" / "colorized_frame.jpg")
    assert frame.shape == (512, 1024, 3)  # the 512x512 demo frame beside its stain
    # A second call finds every run evaluated and only rewrites the documents.
    logs = sorted((tmp_path / "results").glob("*.log"))
    sizes = [log.stat().st_size for log in logs]
    assert main(arguments) == 0
    assert [log.stat().st_size for log in logs] == sizes


def test_the_one_sided_models_are_configurations_and_score_beside_the_others(small_root: Path, tmp_path: Path) -> None:
    """cut and seg_cut train, test and evaluate like the cycle models: rows of the table and columns of the grid."""
    assert CONFIGURATIONS["cut"] == ("--model", "cut") and CONFIGURATIONS["seg_cut"] == ("--model", "seg_cut")
    readme = tmp_path / "README.md"
    readme.write_text(f"{README_BEGIN}\n{README_END}\n", encoding="utf-8")
    docs = tmp_path / "docs"
    arguments = [
        "--dataroot", str(small_root), "--checkpoints_dir", str(tmp_path / "checkpoints"),
        "--results_dir", str(tmp_path / "results"), "--docs", str(docs), "--readme", str(readme),
        "--seeds", "0", "--configurations", "cut", "seg_cut", "--jobs", "2", "--extra", *TINY,
    ]  # fmt: skip
    assert main(arguments) == 0
    records = json.loads((docs / "results.json").read_text())
    assert [record["configuration"] for record in records["test"]] == ["cut", "seg_cut", *BASELINES]
    for record in records["test"][:2]:
        assert record["epochs"][0] in ("1", "2") and 0 <= record["nucleus_f1"]["mean"] <= 1
        assert record["lab_swd_regions"]["mean"] > 0
    assert "| `seg_cut` |" in readme.read_text()
    grid = read_array(docs / "images" / "ablation_grid.jpg")
    assert grid.shape[1] > grid.shape[0]  # input, mask, cut, seg_cut, lookup table, real H&E side by side
    assert not (docs / "images" / "colorized_frame.jpg").exists()  # drawn from seg_cycle_gan only
