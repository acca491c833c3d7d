"""PatchNCE (Park et al., ECCV 2020): a patch of the output must be recognised as coming from the same
place of the input, among the other places of the same image.

The encoder features of the input give the *keys*, those of the output the *queries*, both taken at
the same randomly sampled locations and projected to unit vectors (``networks.ProjectionHeads``).
For each query the key of its own location is the positive and the keys of the other sampled
locations of the same image are the negatives (never other images of the batch: for translation,
the paper found negatives from the same image best). The loss is the cross-entropy of picking the
positive among all of them, with similarities divided by a temperature. Keys carry no gradient.

Pure tensor functions, batched, on the device of their inputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from util.errors import OptionError


def sample_locations(features: Sequence[torch.Tensor], count: int, layers: Sequence[int]) -> list[torch.Tensor]:
    """``count`` distinct random locations of each (N, C, H, W) map, as indices (count,) into its H*W grid.

    Drawn on the maps' device; the same locations serve every image of the batch (and the keys and the
    queries). ``layers`` names the maps in the message when one has fewer than ``count`` locations.
    """
    locations = []
    for layer, feature_map in zip(layers, features, strict=True):
        height, width = feature_map.shape[-2:]
        available = height * width
        if count > available:
            raise OptionError(
                f"--num_patches {count} is more than the {height}x{width} = {available} locations of encoder layer "
                f"{layer}'s features for these images; choose --num_patches in 1..{available}, or larger images"
            )
        locations.append(torch.randperm(available, device=feature_map.device)[:count])
    return locations


def gather_patches(features: torch.Tensor, locations: torch.Tensor) -> torch.Tensor:
    """The feature vectors of (N, C, H, W) ``features`` at ``locations`` (P,) of the flattened grid: (N, P, C)."""
    return features.flatten(2)[:, :, locations].transpose(1, 2)


def patch_nce_loss(queries: torch.Tensor, keys: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean PatchNCE loss of unit-vector ``queries`` against ``keys``, both (N, P, D): a scalar >= 0.

    Query ``p`` of image ``n`` scores every key of image ``n`` by cosine similarity / ``temperature``;
    the cross-entropy asks key ``p`` (same location) to win. Lowest when every query equals its own
    key and the keys differ from each other; log(P) when the queries tell the locations apart no
    better than chance. Computed in float32 whatever the autocast: the logits reach 1 / temperature.
    """
    if queries.shape != keys.shape or queries.ndim != 3:
        raise ValueError(f"queries and keys must both be (N, P, D), got {tuple(queries.shape)} and {tuple(keys.shape)}")
    batch, patches, _ = queries.shape
    with torch.autocast(queries.device.type, enabled=False):
        logits = torch.bmm(queries.float(), keys.detach().float().transpose(1, 2)) / temperature  # (N, P, P)
        targets = torch.arange(patches, device=queries.device).repeat(batch)
        return F.cross_entropy(logits.flatten(0, 1), targets)
