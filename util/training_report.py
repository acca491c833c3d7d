"""Everything a training run shows its user: loss logs, loss curves, the HTML page of samples,
and the optional visdom display."""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

import numpy as np

from data.image_io import write_image
from util.html import HTMLPage
from util.loss_log import LossLog, LossReport
from util.plots import plot_loss_curves
from util.visdom_display import VisdomDisplay

logger = logging.getLogger(__name__)

_SAMPLE_NAME = re.compile(r"epoch(\d+)_(.+)\.png")


class TrainingReport:
    """Writes ``loss_log.txt/.csv``, ``loss_curves.png`` and ``web/index.html`` into the
    experiment folder; the page shows the same sample images translated after every epoch."""

    def __init__(self, opt: argparse.Namespace, loss_names: list[str], visual_names: list[str]) -> None:
        self.directory = Path(opt.checkpoints_dir) / opt.name
        self.web_directory = self.directory / "web"
        self.name = opt.name
        self.loss_names = loss_names
        self.visual_names = visual_names
        self.image_width = opt.display_winsize
        self.loss_log = LossLog(self.directory, loss_names)
        self.display = VisdomDisplay.connect(opt.display_id, opt.display_server, opt.display_port, opt.display_env)

    @property
    def page_path(self) -> Path:
        return self.web_directory / "index.html"

    @property
    def plot_path(self) -> Path:
        return self.directory / "loss_curves.png"

    def start(self, first_epoch: int) -> None:
        self.loss_log.start(first_epoch)

    def log_losses(self, report: LossReport) -> None:
        logger.debug(self.loss_log.record(report))
        if self.display is not None:
            self.display.plot_losses(report.progress, report.losses)

    def end_epoch(self, epoch: int, samples: dict[str, np.ndarray]) -> None:
        """Save this epoch's sample images (uint8) and refresh the page and the loss plot."""
        for name, image in samples.items():
            write_image(self.web_directory / "images" / f"epoch{epoch:04d}_{name}.png", image)
        plot_loss_curves(self.loss_log.read(), self.loss_names, self.plot_path, f"{self.name}: training losses")
        self.write_page()
        if self.display is not None:
            self.display.show_images(samples, epoch)

    def write_page(self) -> Path:
        """Rebuild the page from the saved images, newest epoch first (so it survives resumes)."""
        by_epoch: dict[int, list[str]] = {}
        for path in sorted((self.web_directory / "images").glob("epoch*.png")):
            match = _SAMPLE_NAME.fullmatch(path.name)
            if match:
                by_epoch.setdefault(int(match.group(1)), []).append(match.group(2))
        page = HTMLPage(f"Training: {self.name}", refresh_seconds=60)
        if self.plot_path.is_file():
            page.add_header("Losses")
            page.add_images([("../loss_curves.png", "loss curves")], width=900)
        for epoch in sorted(by_epoch, reverse=True):
            page.add_header(f"Epoch {epoch}")
            names = sorted(by_epoch[epoch], key=self._display_order)
            page.add_images([(f"images/epoch{epoch:04d}_{name}.png", name) for name in names], self.image_width)
        return page.save(self.page_path)

    def _display_order(self, name: str) -> tuple[int, str]:
        """The model's own order of visuals (real, fake, reconstruction, ...), unknown names last."""
        known = self.visual_names
        return (known.index(name) if name in known else len(known), name)
