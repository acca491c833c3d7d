"""Loss log, loss plot, HTML pages and the optional visdom display."""

import logging
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from util.html import HTMLPage
from util.loss_log import LossLog, LossReport
from util.plots import plot_loss_curves
from util.visdom_display import VisdomDisplay


def test_loss_log_records_text_and_csv(tmp_path: Path) -> None:
    log = LossLog(tmp_path, ["G_A", "D_A"])
    log.start(1)
    log.record(LossReport(1, 10, 0.5, 2e-4, 0.1, {"G_A": 0.75, "D_A": 0.25}))
    rows = log.read()
    assert rows == [
        {"epoch": "1", "iteration": "10", "progress": "0.5000", "lr": "0.0002", "seconds_per_iteration": "0.1000",
         "G_A": "0.75000", "D_A": "0.25000"}
    ]  # fmt: skip
    assert "G_A: 0.750 D_A: 0.250" in (tmp_path / "loss_log.txt").read_text()


def test_loss_log_drops_unfinished_epochs_on_resume(tmp_path: Path) -> None:
    log = LossLog(tmp_path, ["G_A"])
    log.start(1)
    for epoch in (1, 2, 3):
        log.record(LossReport(epoch, 5, epoch - 0.5, 1e-3, 0.1, {"G_A": float(epoch)}))
    log.start(3)  # epoch 3 never finished: its rows are gone
    assert [row["epoch"] for row in log.read()] == ["1", "2"]
    assert "resumed at epoch 3" in (tmp_path / "loss_log.txt").read_text()


@pytest.mark.slow
def test_plot_loss_curves_writes_png(tmp_path: Path) -> None:
    rows = [{"progress": str(step / 10), "G_A": str(1 / (step + 1)), "D_A": "0.25"} for step in range(50)]
    path = plot_loss_curves(rows, ["G_A", "D_A", "absent"], tmp_path / "curves.png", "test")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 300
    assert plot_loss_curves([], ["G_A"], tmp_path / "none.png", "empty") is None


def test_html_page_links_images(tmp_path: Path) -> None:
    page = HTMLPage("Results")
    page.add_header("Epoch 1")
    page.add_images([("images/a.png", "real_A"), ("images/b.png", "fake_B")], width=128)
    page.add_link("test_1", "test_1/index.html")
    html = page.save(tmp_path / "index.html").read_text()
    assert '<img alt="real_A" src="images/a.png" style="width:128px">' in html
    assert 'href="test_1/index.html"' in html


def test_visdom_off_by_default_asks_nothing() -> None:
    assert VisdomDisplay.connect(0, "http://localhost", 8097, "main") is None


def test_visdom_missing_gives_one_warning_not_a_crash(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "visdom", None)  # makes "import visdom" fail
    with caplog.at_level(logging.WARNING):
        assert VisdomDisplay.connect(1, "http://localhost", 8097, "main") is None
    assert len(caplog.records) == 1 and "visdom is not installed" in caplog.text


def test_visdom_server_down_gives_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    class FakeVisdomModule:
        class Visdom:
            def __init__(self, **kwargs: object) -> None:
                pass

            def check_connection(self, timeout_seconds: int) -> bool:
                return False

    monkeypatch.setitem(sys.modules, "visdom", FakeVisdomModule)
    with caplog.at_level(logging.WARNING):
        assert VisdomDisplay.connect(1, "http://localhost", 1, "main") is None
    assert "no visdom server at http://localhost:1" in caplog.text


def test_visdom_display_sends_images_and_losses() -> None:
    class Client:
        def __init__(self) -> None:
            self.calls: list[str] = []

        def images(self, panels: list[np.ndarray], **kwargs: object) -> None:
            assert all(panel.shape == (3, 4, 4) for panel in panels)
            self.calls.append("images")

        def line(self, X: np.ndarray, Y: np.ndarray, **kwargs: object) -> None:
            assert X.shape == Y.shape
            self.calls.append("line")

    client = Client()
    display = VisdomDisplay(client, window_id=1)
    display.show_images({"real_A": np.zeros((4, 4), np.uint8), "fake_B": np.zeros((4, 4, 3), np.uint8)}, epoch=1)
    display.plot_losses(0.5, {"G_A": 1.0, "D_A": 0.5})
    display.plot_losses(1.0, {"G_A": 0.8, "D_A": 0.4})
    assert client.calls == ["images", "line", "line"]
