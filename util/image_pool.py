"""A history of generated images for the discriminators (Shrivastava et al., CVPR 2017).

Showing a discriminator a mix of the newest fakes and older ones keeps generator and
discriminator from chasing each other's latest move, which steadies GAN training.
"""

from __future__ import annotations

from typing import Any

import torch


class ImagePool:
    """Keeps up to ``capacity`` past fakes; ``query`` returns a batch mixing new and stored ones.

    The pool owns its random generator, so its whole state (images and generator) can be saved
    in a checkpoint and a resumed run draws exactly what an uninterrupted run would have drawn.
    """

    def __init__(self, capacity: int, seed: int = 0) -> None:
        if capacity < 0:
            raise ValueError(f"pool capacity must be >= 0, got {capacity}")
        self.capacity = capacity
        self.images: list[torch.Tensor] = []
        self.generator = torch.Generator().manual_seed(seed)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """Return a batch shaped like ``images``: each item is either itself or a stored fake.

        While the pool fills, every new image is stored and returned. Once full, each new image
        is, with probability 1/2, swapped for a random stored one (which is returned instead).
        """
        if self.capacity == 0:
            return images
        chosen = []
        for image in images.detach():
            if len(self.images) < self.capacity:
                self.images.append(image.clone())
                chosen.append(image)
                continue
            if torch.rand((), generator=self.generator).item() < 0.5:
                slot = int(torch.randint(self.capacity, (), generator=self.generator))
                chosen.append(self.images[slot])
                self.images[slot] = image.clone()
            else:
                chosen.append(image)
        return torch.stack(chosen)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: stored images (on the CPU) and RNG state."""
        return {
            "capacity": self.capacity,
            "images": [image.cpu() for image in self.images],
            "generator_state": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        """Restore a state from :meth:`state_dict`, moving the images to ``device``."""
        self.images = [image.to(device) for image in state["images"]][: self.capacity]
        self.generator.set_state(state["generator_state"])
