"""scripts/compare_with_upstream.py against a stand-in upstream checkout (the real one is not downloaded)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts.compare_with_upstream import main, summary


def fake_upstream(folder: Path, body: str) -> Path:
    (folder / "models").mkdir(parents=True)
    (folder / "models" / "cycle_gan_model.py").write_text("")
    (folder / "train.py").write_text(body)
    return folder


@pytest.mark.slow
def test_pairs_time_both_sides_and_report_ratios(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    upstream = fake_upstream(tmp_path / "upstream", "import sys, time, wandb\ntime.sleep(0.2)\n")
    output = tmp_path / "comparison.json"
    assert main(["--upstream", str(upstream), "--pairs", "1", "--json", str(output)]) == 0
    results = json.loads(output.read_text())
    train = results["train"][0]
    assert train["ours_cpu_s"] > 1 and train["ours_peak_rss_mib"] > 100  # a real training process
    assert train["upstream_wall_s"] >= 0.2 and train["upstream_cpu_s"] < train["ours_cpu_s"]
    printed = capsys.readouterr().out
    assert "train (1 pairs" in printed and "ratio of medians" in printed


def test_a_folder_that_is_not_the_upstream_checkout_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert main(["--upstream", str(tmp_path)]) == 1
    assert "is not a checkout of pytorch-CycleGAN-and-pix2pix" in caplog.text


@pytest.mark.slow
def test_a_failing_upstream_run_is_one_error_with_its_output(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    upstream = fake_upstream(tmp_path / "upstream", "raise SystemExit('upstream broke')\n")
    assert main(["--upstream", str(upstream), "--pairs", "1"]) == 1
    assert "upstream broke" in caplog.text


def test_summary_gives_medians_and_the_range_of_pair_ratios() -> None:
    rows = [
        {"load": 1.0, "ours_wall_s": 2.0, "upstream_wall_s": 1.0, "ours_cpu_s": 1.0, "upstream_cpu_s": 1.0,
         "ours_peak_rss_mib": 10.0, "upstream_peak_rss_mib": 10.0},
        {"load": 2.0, "ours_wall_s": 4.0, "upstream_wall_s": 4.0, "ours_cpu_s": 3.0, "upstream_cpu_s": 1.0,
         "ours_peak_rss_mib": 10.0, "upstream_peak_rss_mib": 20.0},
    ]  # fmt: skip
    text = summary({"train": rows})
    assert "wall_s        ours     3.00  upstream     2.50  ratio of medians 1.20  pair ratios 1.00-2.00" in text
