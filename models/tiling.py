"""Apply a generator to an image of any size in overlapping tiles, without seams, in bounded memory.

Two things make naive tiling show seams. Tiles see different context at their borders, which a
smooth blending window hides: in the overlap each output pixel is the weighted mean of the tiles
covering it, the weight ramping down (raised cosine) towards a tile's inner edges. And instance
normalization computes its mean and variance per tile, so a tile of background and a tile full of
nuclei are normalised differently and meet at a visible step (the known cause of tile seams in
CycleGAN inference; Lahiani et al. 2019, arXiv 1906.00617; URUST's kernelized instance
normalization, ECCV 2022). Here every instance-norm layer is given statistics of the whole image:
a first pass over all tiles gathers each layer's per-channel mean and mean square (pixel-weighted
over tiles), and the second pass normalises every tile with them. The first pass sees
tile-normalised activations in the layers below, so the statistics approximate the untiled ones
rather than equal them; on real crops the result is close to applying the network to the whole
image at once (see the tests), which tiling exists to avoid for large images.

Memory: the input stays uint8/uint16 (as read); tiles go through the network ``batch_size`` at a
time, and output rows are finished and converted to uint8 a band of tiles at a time, so the float
accumulators cover one band (tile height x image width), not the image. :meth:`TiledColorizer.bands`
hands those finished bands over as they come, so a writer that streams them (the pyramidal OME-TIFF
of ``data/ome_tiff.py``) never holds the whole colorized image.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from util.grid import window_starts


class GlobalStatisticsInstanceNorm(nn.Module):
    """Instance norm whose statistics can be gathered over many tiles and then imposed on each."""

    def __init__(self, norm: nn.InstanceNorm2d) -> None:
        super().__init__()
        self.eps = norm.eps
        self.mode = "tile"  # "tile": usual instance norm; "collect": also gather; "apply": use gathered
        self.reset()

    def reset(self) -> None:
        self.total: torch.Tensor | None = None
        self.total_squares: torch.Tensor | None = None
        self.count = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "apply":
            if self.count == 0:
                raise RuntimeError("no statistics were collected before mode 'apply'")
            mean = (self.total / self.count).to(x.dtype).view(1, -1, 1, 1)
            variance = (self.total_squares / self.count).to(x.dtype).view(1, -1, 1, 1) - mean * mean
            return (x - mean) / torch.sqrt(variance.clamp_min(0.0) + self.eps)
        if self.mode == "collect":
            values = x.detach().double()
            sums, squares = values.sum(dim=(0, 2, 3)), (values * values).sum(dim=(0, 2, 3))
            self.total = sums if self.total is None else self.total + sums
            self.total_squares = squares if self.total_squares is None else self.total_squares + squares
            self.count += x.shape[0] * x.shape[2] * x.shape[3]
        mean = x.mean(dim=(2, 3), keepdim=True)
        variance = x.var(dim=(2, 3), keepdim=True, unbiased=False)
        return (x - mean) / torch.sqrt(variance + self.eps)


def with_global_statistics(generator: nn.Module) -> list[GlobalStatisticsInstanceNorm]:
    """Replace every affine-free instance norm of ``generator`` in place; return the new layers."""
    replaced = []
    for parent in list(generator.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.InstanceNorm2d) and not child.affine and not child.track_running_stats:
                layer = GlobalStatisticsInstanceNorm(child)
                setattr(parent, name, layer)
                replaced.append(layer)
    return replaced


@contextmanager
def statistics_mode(layers: list[GlobalStatisticsInstanceNorm], mode: str) -> Iterator[None]:
    for layer in layers:
        layer.mode = mode
    try:
        yield
    finally:
        for layer in layers:
            layer.mode = "tile"


def blend_ramp(size: int, ramp: int, fade_start: bool, fade_end: bool) -> np.ndarray:
    """(size,) float32 weights: 1 inside, a raised-cosine ramp over ``ramp`` pixels at the faded ends.

    The weights stay above 0 so that a pixel covered by one tile only is never divided by zero.
    """
    weights = np.ones(size, np.float32)
    ramp = min(ramp, size // 2)
    if ramp > 0:
        rise = (0.5 - 0.5 * np.cos(np.pi * (np.arange(ramp) + 0.5) / ramp)).astype(np.float32)
        if fade_start:
            weights[:ramp] = rise
        if fade_end:
            weights[-ramp:] = rise[::-1]
    return weights


class TiledColorizer:
    """``generator`` applied to (H, W, C) images in tiles of ``tile`` px overlapping by ``overlap`` px.

    ``global_statistics`` (default) gives instance-norm layers whole-image statistics as the module
    docstring explains; False keeps per-tile statistics (for comparison). ``to_input`` maps a uint8 or
    uint16 image array to the network's input in [-1, 1], (H, W) -> (1, C, H, W) tensor; ``to_output``
    maps blended output rows, (h, W, C) float32 in the network's range, to the image to keep (uint8).
    The caller owns both pixel conventions; this class only knows where tiles go.
    """

    def __init__(
        self,
        generator: nn.Module,
        to_input: Callable[[np.ndarray], torch.Tensor],
        to_output: Callable[[np.ndarray], np.ndarray],
        tile: int = 512,
        overlap: int = 64,
        batch_size: int = 4,
        global_statistics: bool = True,
        device: torch.device | str = "cpu",
        autocast: bool = False,
    ) -> None:
        if overlap < 0 or overlap >= tile:
            raise ValueError(f"overlap must be in [0, tile), got {overlap} for tile {tile}")
        self.generator = generator.eval()
        self.norms = with_global_statistics(generator) if global_statistics else []
        self.to_input, self.to_output = to_input, to_output
        self.tile, self.overlap, self.batch_size = tile, overlap, batch_size
        self.device = torch.device(device)
        self.autocast = autocast

    def tiles(self, height: int, width: int) -> list[tuple[int, int, int, int]]:
        """(y, x, tile height, tile width) of every tile, row by row."""
        step = self.tile - self.overlap
        rows, columns = window_starts(height, self.tile, step), window_starts(width, self.tile, step)
        return [(y, x, min(self.tile, height), min(self.tile, width)) for y in rows for x in columns]

    @torch.no_grad()
    def _run(self, image: np.ndarray, boxes: list[tuple[int, int, int, int]]) -> Iterator[torch.Tensor]:
        """The generator's output (N, C, h, w) in [-1, 1], float32 on the CPU, for batches of ``boxes``."""
        for start in range(0, len(boxes), self.batch_size):
            batch = boxes[start : start + self.batch_size]
            inputs = torch.cat([self.to_input(image[y : y + h, x : x + w]) for y, x, h, w in batch])
            with torch.autocast(self.device.type, enabled=self.autocast):
                outputs = self.generator(inputs.to(self.device))
            yield from outputs.float().cpu()

    def __call__(self, image: np.ndarray, progress: Callable[[int], None] | None = None) -> np.ndarray:
        """The colorized image, (H, W, 3) uint8, exactly the input's height and width."""
        output = None
        top = 0
        for band in self.bands(image, progress):
            if output is None:
                output = np.empty((image.shape[0], image.shape[1], band.shape[2]), band.dtype)
            output[top : top + len(band)] = band
            top += len(band)
        return output

    def bands(self, image: np.ndarray, progress: Callable[[int], None] | None = None) -> Iterator[np.ndarray]:
        """The colorized image as consecutive bands of finished rows, top to bottom: (h, W, 3) uint8 each.

        Only one band of tiles is held as floats at a time, so a writer that consumes the bands as
        they come (a tiled TIFF) needs memory for a band, not for the image. With global statistics
        the first pass over every tile runs before the first band is given.
        """
        boxes = self.tiles(*image.shape[:2])
        if not self.norms:
            yield from self._blend(image, boxes, progress)
            return
        for layer in self.norms:
            layer.reset()
        with statistics_mode(self.norms, "collect"):
            for _ in self._run(image, boxes):
                if progress:
                    progress(1)
        with statistics_mode(self.norms, "apply"):
            yield from self._blend(image, boxes, progress)

    def _blend(
        self, image: np.ndarray, boxes: list[tuple[int, int, int, int]], progress: Callable[[int], None] | None
    ) -> Iterator[np.ndarray]:
        """Blend the tiles row by row; rows that no later tile touches are finished, given and dropped."""
        height, width = image.shape[:2]
        outputs = self._run(image, boxes)
        row_starts = sorted({y for y, _, _, _ in boxes})
        accumulated = weights = None
        band_top = 0  # the image row held in accumulated[0]
        for row_index, row_y in enumerate(row_starts):
            row = [(box, next(outputs).permute(1, 2, 0).numpy()) for box in boxes if box[0] == row_y]
            channels = row[0][1].shape[2]
            if accumulated is None:
                accumulated = np.zeros((0, width, channels), np.float32)
                weights = np.zeros((0, width, 1), np.float32)
            missing = row_y + row[0][0][2] - band_top - len(accumulated)
            if missing > 0:
                accumulated = np.concatenate([accumulated, np.zeros((missing, width, channels), np.float32)])
                weights = np.concatenate([weights, np.zeros((missing, width, 1), np.float32)])
            for (y, x, h, w), tile in row:
                window = (
                    blend_ramp(h, self.overlap, y > 0, y + h < height)[:, None]
                    * blend_ramp(w, self.overlap, x > 0, x + w < width)[None, :]
                )[:, :, None]
                accumulated[y - band_top : y - band_top + h, x : x + w] += tile * window
                weights[y - band_top : y - band_top + h, x : x + w] += window
                if progress:
                    progress(1)
            next_top = row_starts[row_index + 1] if row_index + 1 < len(row_starts) else height
            done = next_top - band_top
            yield self.to_output(accumulated[:done] / weights[:done])
            accumulated, weights, band_top = accumulated[done:], weights[done:], next_top
