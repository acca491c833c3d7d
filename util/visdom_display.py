"""Optional live display in a visdom server; training never depends on it."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


class VisdomDisplay:
    """Shows the latest images and the loss curves in a running visdom server."""

    def __init__(self, client: Any, window_id: int) -> None:
        self.client = client
        self.window_id = window_id
        self.loss_history: dict[str, list[float]] = {}
        self.progress_history: list[float] = []

    @classmethod
    def connect(cls, window_id: int, server: str, port: int, env: str) -> VisdomDisplay | None:
        """A display if ``window_id > 0``, visdom is installed and its server answers; else None
        with a one-line warning (nothing is asked when ``window_id <= 0``)."""
        if window_id <= 0:
            return None
        try:
            import visdom
        except ImportError:
            logger.warning("visdom is not installed (pip install visdom); training continues without the live display")
            return None
        try:
            client = visdom.Visdom(server=server, port=port, env=env, raise_exceptions=True, use_incoming_socket=False)
            if not client.check_connection(timeout_seconds=2):
                raise ConnectionError("no answer")
        except Exception as error:  # any failure to reach the server only disables the display
            logger.warning(
                "no visdom server at %s:%d (%s); start one with 'python -m visdom.server' or set --display_id 0. "
                "Training continues without the live display.",
                server,
                port,
                error,
            )
            return None
        return cls(client, window_id)

    def show_images(self, images: dict[str, np.ndarray], epoch: int) -> None:
        """Show uint8 images (H, W) or (H, W, 3) side by side."""
        panels = []
        for image in images.values():
            rgb = np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image
            panels.append(rgb.transpose(2, 0, 1))
        try:
            self.client.images(
                panels, nrow=len(panels), win=self.window_id, opts={"title": f"epoch {epoch}: {' | '.join(images)}"}
            )
        except Exception as error:
            logger.warning("visdom display failed (%s); it is turned off for the rest of the run", error)
            self.window_id = 0

    def plot_losses(self, progress: float, losses: dict[str, float]) -> None:
        """Append one report to the loss plot."""
        if self.window_id <= 0:
            return
        self.progress_history.append(progress)
        for name, value in losses.items():
            self.loss_history.setdefault(name, []).append(value)
        names = list(self.loss_history)
        x = np.array(self.progress_history)
        y = np.stack([np.array(self.loss_history[name]) for name in names], axis=1)
        try:
            self.client.line(
                X=np.repeat(x[:, None], len(names), axis=1),
                Y=y,
                win=self.window_id + 1,
                opts={"title": "losses", "legend": names, "xlabel": "epoch", "ylabel": "loss"},
            )
        except Exception as error:
            logger.warning("visdom display failed (%s); it is turned off for the rest of the run", error)
            self.window_id = 0
