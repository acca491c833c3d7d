"""Losses summed on the training device between two reports, with non-finite steps kept apart.

Reading a loss makes the host wait for the device, so each step only adds on the device; the
window is read at report points. A step whose losses are not all finite is not added; it is
remembered (which losses, first iteration) so that training can stop with a clear message.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from util import distributed
from util.distributed import DistributedContext


@dataclass(frozen=True)
class WindowSummary:
    """What a window held, over every process."""

    means: dict[str, float]  # over the finite steps, of the losses this process has seen
    non_finite: list[str]  # losses that were NaN or infinite in the first failing step
    first_non_finite_iteration: int | None  # in this process; None if all were finite here
    skipped_steps: int  # steps with a non-finite loss, in all processes


class LossWindow:
    """Sums of named scalar losses since the last :meth:`read`, kept on ``device``."""

    def __init__(self, names: list[str], device: torch.device) -> None:
        self.names = list(names)
        self.device = device
        self._reset()

    def _reset(self) -> None:
        count = len(self.names)
        self.sums = torch.zeros(count, device=self.device)
        self.non_finite = torch.zeros(count, dtype=torch.bool, device=self.device)
        self.finite_steps = torch.zeros((), device=self.device)
        self.steps = 0
        self.seen: set[str] = set()
        self.first_bad = torch.full((), -1, dtype=torch.long, device=self.device)

    def add(self, losses: dict[str, torch.Tensor], iteration: int) -> None:
        """Add one step's losses (names missing from ``losses`` count as 0); no host-device sync."""
        values = torch.stack(
            [losses[name].detach().float() if name in losses else self.sums.new_zeros(()) for name in self.names]
        )
        finite_each = torch.isfinite(values)
        finite = finite_each.all()
        first_failure = (self.first_bad < 0) & ~finite
        self.sums += torch.where(finite, values, torch.zeros_like(values))
        # The losses of the first failing step name the culprit; later steps fail everywhere.
        self.non_finite = torch.where(first_failure, ~finite_each, self.non_finite)
        self.finite_steps += finite
        self.first_bad = torch.where(first_failure, iteration, self.first_bad)
        self.steps += 1
        self.seen.update(losses)

    def peek(self) -> dict[str, float]:
        """This process's means so far, the window kept open: one host-device sync, no collective
        (for the progress bar, which only the main process draws)."""
        if self.steps == 0:
            return {}
        *sums, finite_steps = torch.cat([self.sums, self.finite_steps[None]]).tolist()
        return {
            name: total / max(finite_steps, 1.0)
            for name, total in zip(self.names, sums, strict=True)
            if name in self.seen
        }

    def read(self, context: DistributedContext) -> WindowSummary:
        """The window's summary over all processes (a collective under torchrun), then start a new window."""
        count = len(self.names)
        local = torch.cat([self.sums, self.non_finite.float(), self.finite_steps[None]])
        totals = distributed.all_reduce_sum(local, context).tolist()
        sums, flags, finite_steps = totals[:count], totals[count : 2 * count], totals[-1]
        first_bad = int(self.first_bad)
        summary = WindowSummary(
            means={
                name: total / max(finite_steps, 1.0)
                for name, total in zip(self.names, sums, strict=True)
                if name in self.seen
            },
            non_finite=[name for name, flag in zip(self.names, flags, strict=True) if flag > 0],
            first_non_finite_iteration=first_bad if first_bad >= 0 else None,
            skipped_steps=round(self.steps * context.world_size - finite_steps),
        )
        self._reset()
        return summary
