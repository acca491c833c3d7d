"""The stain model of real H&E: which colours are hematoxylin, which eosin, and what counts as a nucleus.

H&E colours obey the Beer-Lambert law: each stain adds its own optical density (OD) vector,
``OD = -log10((I + 1) / 256)`` per RGB channel (I in 0..255, so white is 0 and black 2.41), and a
pixel's OD is ``c_H * h + c_E * e`` for the stain amounts ``c``. Colour deconvolution (Ruifrok and
Johnston 2001) inverts that: given the unit vectors ``h`` and ``e`` (and a third, residual one
orthogonal to both) the amounts are ``c = OD @ inverse``. The amounts are in OD units (log10
absorbance): ``c_H = 1`` is a pixel as dark as one hematoxylin absorbance unit along ``h``.

The vectors differ from lab to lab and scanner to scanner, so they are estimated from the target
domain's own tiles by the method of Macenko et al. 2009 ("A method for normalizing histology slides
for quantitative analysis", ISBI 2009): the OD of stained pixels lies close to the plane of the two
stain vectors; the plane is the top two principal directions, and the stains are the two extreme
angles (robust percentiles) of the pixels within it.

A pixel's *nucleus score* is its hematoxylin amount minus :data:`RESIDUAL_PENALTY` times the
absolute amount of the residual, the OD that no mixture of the two stains explains. Real H&E
pixels lie on the stain plane (residual below 0.05 OD for 99% of the demo tiles' pixels), a dark
green pixel far off it (0.8), so "nucleus" means hematoxylin-coloured, not merely dark: dark pink
scores below 0 (eosin), dark green below 0 (off the plane), black less than hematoxylin purple.
A pixel is *nuclear* when its score exceeds a threshold calibrated on the same tiles: Otsu's
threshold of their pooled scores.

The model is estimated once (training start-up, or an evaluation) and stored as a small dict
(:meth:`StainModel.to_dict`) with checkpoints and evaluation results. Both the evaluation
(NumPy, here) and the training losses (torch, :mod:`models.improved_losses`) use its numbers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from skimage.filters import threshold_otsu

#: Pixels whose OD is below this in any channel are background or glass, not stain (Macenko's beta).
TRANSPARENT_OD = 0.15
#: Percentile of the angle distribution taken as each stain's extreme direction (Macenko's alpha).
ANGLE_PERCENTILE = 1.0
#: Fewest stained pixels from which the vectors are estimated.
MIN_STAINED_PIXELS = 500
#: Smallest ratio of the second to the first principal variance of stained OD: below it the tiles
#: hold one colour (gray, or a single stain) and no second stain vector can be found.
MIN_SECOND_VARIANCE = 0.01
#: Smallest angle (degrees) between the two estimated stain vectors.
MIN_STAIN_ANGLE = 5.0
#: How much the residual amount counts against hematoxylin in the nucleus score (see the module docstring).
RESIDUAL_PENALTY = 3.0
#: Most pixels the estimate reads (drawn evenly from every image); more change the vectors by < 0.1 degree.
MAX_FIT_PIXELS = 500_000
#: The textbook vectors (Ruifrok and Johnston 2001, as scikit-image's ``hed_from_rgb`` uses them).
RUIFROK_HEMATOXYLIN = (0.65, 0.70, 0.29)
RUIFROK_EOSIN = (0.07, 0.99, 0.11)

# OD of every 8-bit level: the one conversion every caller shares.
OPTICAL_DENSITY_OF_LEVEL = -np.log10((np.arange(256) + 1.0) / 256.0)


class StainEstimationError(ValueError):
    """The tiles do not show two stains (blank, gray or single-coloured)."""


def optical_density(rgb: np.ndarray) -> np.ndarray:
    """OD of uint8 RGB pixels (..., 3) -> float64 (..., 3), ``-log10((I + 1) / 256)``, in [0, 2.41]."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.shape[-1:] != (3,):
        raise ValueError(f"expected uint8 RGB pixels (..., 3), got {rgb.dtype} {rgb.shape}")
    return OPTICAL_DENSITY_OF_LEVEL[rgb]


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def stain_matrix(hematoxylin: Sequence[float], eosin: Sequence[float]) -> np.ndarray:
    """Rows: unit OD vectors of hematoxylin, eosin and the residual (their cross product): (3, 3)."""
    first, second = _unit(np.asarray(hematoxylin, float)), _unit(np.asarray(eosin, float))
    residual = np.cross(first, second)
    residual = residual if residual.sum() >= 0 else -residual
    return np.stack([first, second, _unit(residual)])


@dataclass(frozen=True, eq=False)
class StainModel:
    """Stain vectors of one H&E domain and its nucleus threshold.

    ``vectors`` (3, 3): rows are the unit OD vectors of hematoxylin, eosin and the residual.
    ``nucleus_threshold``: nucleus score (OD units) above which a pixel is nuclear.
    ``source``: where the numbers were estimated (for reports and checkpoints).
    """

    vectors: np.ndarray
    nucleus_threshold: float
    source: str = ""

    @property
    def inverse(self) -> np.ndarray:
        """(3, 3): ``amounts = OD @ inverse`` (columns: hematoxylin, eosin, residual)."""
        return np.linalg.inv(self.vectors)

    def hematoxylin(self, rgb: np.ndarray) -> np.ndarray:
        """Hematoxylin amount (...) float32 of uint8 RGB pixels (..., 3), through a per-level table (no float copy)."""
        return self._channel_amount(rgb, 0)

    def eosin(self, rgb: np.ndarray) -> np.ndarray:
        """Eosin amount (...) float32 of uint8 RGB pixels (..., 3)."""
        return self._channel_amount(rgb, 1)

    def _channel_amount(self, rgb: np.ndarray, stain: int) -> np.ndarray:
        rgb = np.asarray(rgb)
        if rgb.dtype != np.uint8 or rgb.shape[-1:] != (3,):
            raise ValueError(f"expected uint8 RGB pixels (..., 3), got {rgb.dtype} {rgb.shape}")
        table = (OPTICAL_DENSITY_OF_LEVEL[:, None] * self.inverse[:, stain]).astype(np.float32)  # (256, 3)
        amount = np.take(table[:, 0], rgb[..., 0])
        amount += np.take(table[:, 1], rgb[..., 1])
        amount += np.take(table[:, 2], rgb[..., 2])
        return amount

    def nucleus_score(self, rgb: np.ndarray) -> np.ndarray:
        """Hematoxylin amount minus :data:`RESIDUAL_PENALTY` x |residual amount|: (...) float32 OD units."""
        return self._channel_amount(rgb, 0) - RESIDUAL_PENALTY * np.abs(self._channel_amount(rgb, 2))

    def nuclear(self, rgb: np.ndarray) -> np.ndarray:
        """Bool (...): pixels of uint8 RGB (..., 3) whose nucleus score exceeds the threshold."""
        return self.nucleus_score(rgb) > self.nucleus_threshold

    def to_dict(self) -> dict[str, object]:
        """Plain numbers at full precision, for JSON files and checkpoints (a round trip is exact)."""
        rows = [[float(value) for value in row] for row in self.vectors]
        return {
            "hematoxylin": rows[0],
            "eosin": rows[1],
            "residual": rows[2],
            "nucleus_threshold": float(self.nucleus_threshold),
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, values: dict[str, object]) -> StainModel:
        """The model :meth:`to_dict` described (or one given by its hematoxylin and eosin vectors alone)."""
        if "residual" in values:
            vectors = np.array([values["hematoxylin"], values["eosin"], values["residual"]], dtype=np.float64)
        else:
            vectors = stain_matrix(values["hematoxylin"], values["eosin"])  # type: ignore[arg-type]
        return cls(vectors, float(values["nucleus_threshold"]), str(values.get("source", "")))  # type: ignore[arg-type]


def estimate_stain_model(images: Sequence[np.ndarray], source: str = "the H&E tiles") -> StainModel:
    """Macenko stain vectors and the Otsu nucleus-score threshold of (H, W, 3) uint8 H&E images.

    At most :data:`MAX_FIT_PIXELS` pixels are read, the same positions of each image whatever the
    order the images come in. A :class:`StainEstimationError` naming ``source`` when the images
    are blank, gray or hold a single colour.
    """
    pixels = sample_pixels(images, MAX_FIT_PIXELS)
    vectors = macenko_vectors(optical_density(pixels), source)
    scores = StainModel(vectors, 0.0).nucleus_score(pixels)
    return StainModel(vectors, float(threshold_otsu(scores)), f"{source} ({len(pixels)} pixels)")


def macenko_vectors(od: np.ndarray, source: str = "the H&E tiles") -> np.ndarray:
    """The (3, 3) stain matrix (hematoxylin, eosin, residual rows) of (P, 3) OD pixels by Macenko's method."""
    stained = od[(od >= TRANSPARENT_OD).all(axis=1)]
    advice = "domain B must hold real H&E-stained tiles (purple nuclei, pink tissue)"
    if len(stained) < MIN_STAINED_PIXELS:
        raise StainEstimationError(
            f"cannot estimate stain vectors from {source}: only {len(stained)} stained pixels (OD >= "
            f"{TRANSPARENT_OD} in every channel), at least {MIN_STAINED_PIXELS} needed; the tiles look blank; {advice}"
        )
    variances, directions = np.linalg.eigh(np.cov(stained, rowvar=False))
    if variances[1] < MIN_SECOND_VARIANCE * variances[2]:
        raise StainEstimationError(
            f"cannot estimate stain vectors from {source}: its stained pixels vary along one colour direction only "
            f"(second/first variance {variances[1] / max(variances[2], 1e-12):.4f} < {MIN_SECOND_VARIANCE}); the "
            f"tiles look gray or single-stained; {advice}"
        )
    plane = directions[:, [2, 1]]  # the two largest principal directions, as columns
    plane = plane * np.where(plane.sum(axis=0) < 0, -1.0, 1.0)  # pointing into positive OD
    coordinates = stained @ plane
    angles = np.arctan2(coordinates[:, 1], coordinates[:, 0])
    low, high = np.percentile(angles, [ANGLE_PERCENTILE, 100.0 - ANGLE_PERCENTILE])
    first = plane @ np.array([np.cos(low), np.sin(low)])
    second = plane @ np.array([np.cos(high), np.sin(high)])
    if np.degrees(np.arccos(np.clip(_unit(first) @ _unit(second), -1, 1))) < MIN_STAIN_ANGLE:
        raise StainEstimationError(
            f"cannot estimate stain vectors from {source}: the two stain directions lie within {MIN_STAIN_ANGLE} "
            f"degrees of each other; {advice}"
        )
    # Hematoxylin absorbs more red than eosin does (Ruifrok: 0.65 against 0.07).
    hematoxylin, eosin = (first, second) if first[0] / first.sum() > second[0] / second.sum() else (second, first)
    return stain_matrix(np.abs(hematoxylin), np.abs(eosin))


def sample_pixels(images: Sequence[np.ndarray], max_pixels: int, seed: int = 0) -> np.ndarray:
    """At most about ``max_pixels`` pixels (P, C) of a list of (H, W, C) images, drawn evenly from each.

    Each image's positions come from a generator seeded by ``seed`` and the image's own size and
    content digest, so the sample does not depend on the order of the images.
    """
    if not len(images):
        raise ValueError("no images to sample pixels from")
    quota = max(1, -(-max_pixels // len(images)))
    parts = []
    for image in images:
        flat = np.asarray(image).reshape(-1, np.asarray(image).shape[-1])
        if len(flat) <= quota:
            parts.append(flat)
        else:
            rng = np.random.default_rng([seed, *content_key(image)])
            parts.append(flat[np.sort(rng.choice(len(flat), quota, replace=False))])
    return np.concatenate(parts)


def content_key(image: np.ndarray) -> tuple[int, ...]:
    """Four 32-bit integers from an image's bytes: a seed that follows the image, not its position in a list."""
    digest = hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=16).digest()
    return tuple(int.from_bytes(digest[index : index + 4], "little") for index in range(0, 16, 4))
