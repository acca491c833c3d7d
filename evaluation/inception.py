"""FID and KID against the real H&E, for users who supply the Inception weights.

Both compare the Inception-v3 pool features (2048 numbers per image) of the colorizations with
those of the real H&E. The network is the one FID was defined with (the TensorFlow graph of
2015-12-05), as torch-fidelity ports it; its weights cannot be downloaded at run time here, so
the user passes the file ``weights-inception-2015-12-05-6726825d.pth`` (from torch-fidelity's
releases) with ``--inception_weights``.

The distances are computed from the features with the reference's half of the work done once:

- FID = |mu_1 - mu_2|^2 + tr S_1 + tr S_2 - 2 tr sqrt(S_1 S_2). The last trace is the sum of the
  singular values of F_1^T F_2 for any factors S = F F^T (the eigenvalues of S_1 S_2 are the
  squared singular values of that product), so it costs one SVD of at most n_1 x n_2 instead of
  the eigenvalues of a non-symmetric 2048 x 2048 matrix per epoch.
- KID is torch-fidelity's estimate, the mean unbiased MMD^2 with the cubic polynomial kernel over
  random subsets, with the kernel matrices computed once for all subsets.

Tests check both equal torch-fidelity's own functions on the same features.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from util.device import select_device
from util.errors import EvaluationError
from util.progress import progress_bar

WEIGHTS_NAME = "weights-inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{WEIGHTS_NAME}"
#: Fewest images on each side for FID/KID to be reported. With 2048 features FID is biased for small
#: sets (its covariance needs far more images than features) and KID's variance is large; below 50
#: neither separates a good from a bad colorization, so they are left out with the reason.
MIN_IMAGES = 50
#: Parameters the file must hold, checked before the network is built.
_REQUIRED_KEYS = ("Conv2d_1a_3x3.conv.weight", "Mixed_7c.branch_pool.conv.weight", "fc.weight")
#: KID as torch-fidelity defines it: subsets, their largest size, the kernel, and the seed.
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
KID_DEGREE, KID_COEF0 = 3, 1.0
KID_SEED = 2020


class InceptionFeatures:
    """Inception-v3 pool features (N, 2048) float64 of uint8 RGB images, in batches on one device.

    The weights file is read once, as plain tensors (:func:`load_weights`), and handed to
    torch-fidelity's network (:func:`build_network`), which never opens it.
    """

    def __init__(self, weights: Path, gpu_ids: str = "auto", batch_size: int = 32) -> None:
        network = build_network(load_weights(weights), weights)
        self.device = select_device(gpu_ids)
        self.network = network.to(self.device)
        self.batch_size = batch_size

    def __call__(self, images: list[np.ndarray], description: str = "Inception features") -> np.ndarray:
        """Features of (H, W, 3) uint8 images (sizes may differ: each is resized to 299 x 299)."""
        features = np.empty((len(images), 2048))
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for index, image in enumerate(images):
            by_shape.setdefault(image.shape, []).append(index)
        batches = [
            indices[start : start + self.batch_size]
            for indices in by_shape.values()
            for start in range(0, len(indices), self.batch_size)
        ]
        for batch in progress_bar(batches, desc=description, unit="batch", leave=False):
            pixels = torch.from_numpy(np.stack([images[index] for index in batch])).permute(0, 3, 1, 2)
            with torch.no_grad():
                (pooled,) = self.network(pixels.to(self.device))
            features[batch] = pooled.double().cpu().numpy()
        return features


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of the FID Inception network in ``path``, read once with ``weights_only=True``.

    Only tensors and containers are unpickled, so a file that would run code is refused unread;
    a clear error for a missing or corrupt file, or one of another network.
    """
    path = Path(path)
    if not path.is_file():
        raise EvaluationError(f"Inception weights {path} not found; {_advice()}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a corrupt file, or one holding more than tensors
        raise EvaluationError(f"cannot read Inception weights {path} as plain tensors ({error}); {_advice()}") from None
    if not isinstance(state, dict) or any(key not in state for key in _REQUIRED_KEYS):
        raise EvaluationError(f"{path} is not the FID Inception-v3 state dict; {_advice()}")
    return state


def build_network(state: dict[str, torch.Tensor], source: Path) -> torch.nn.Module:
    """torch-fidelity's FID Inception-v3 (on the CPU, in eval mode) with the weights ``state`` read from ``source``.

    Its constructor loads weights itself: from a path with ``torch.load(weights_only=False)``,
    which would read the file a second time and let it run code, or, given no path, from its
    download function. That function is pointed at ``state`` while the network is built, so
    nothing is read or downloaded. torch-fidelity is imported here, not with the module: it loads
    torchvision (about 1.5 s), which an evaluation without FID/KID does not need.
    """
    import torch_fidelity
    from torch_fidelity import feature_extractor_inceptionv3 as module

    handed: list[str] = []

    def hand_over(url: str, *args: object, **kwargs: object) -> dict[str, torch.Tensor]:
        handed.append(url)
        return state

    download = module.load_state_dict_from_url
    module.load_state_dict_from_url = hand_over
    try:
        network = module.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    except RuntimeError as error:
        if not str(error).startswith("Error(s) in loading state_dict"):
            raise
        first = [line.strip() for line in str(error).splitlines()[1:2]]  # load_state_dict lists every tensor
        raise EvaluationError(f"{source} does not fit the FID Inception-v3 ({', '.join(first)}); {_advice()}") from None
    finally:
        module.load_state_dict_from_url = download
    if not handed:  # a torch-fidelity that loads its weights some other way would have ignored them
        raise EvaluationError(
            f"torch-fidelity {torch_fidelity.__version__} did not take the weights of {source}; install the version "
            "requirements.txt names"
        )
    return network


def _advice() -> str:
    return f"download {WEIGHTS_NAME} from {WEIGHTS_URL} and pass its path with --inception_weights"


@dataclass(frozen=True)
class FeatureSummary:
    """What FID and KID need of one set of features, computed once (for the reference)."""

    features: np.ndarray  # (N, D)
    mean: np.ndarray  # (D,)
    factor: np.ndarray  # (D, K) with covariance = factor @ factor.T
    trace: float  # trace of the covariance

    @classmethod
    def of(cls, features: np.ndarray) -> FeatureSummary:
        features = np.asarray(features, dtype=np.float64)
        count, dimension = features.shape
        if count < 2:
            raise EvaluationError(f"FID/KID need at least 2 images on each side, got {count}")
        mean = features.mean(axis=0)
        centred = features - mean
        if count <= dimension:
            factor = centred.T / np.sqrt(count - 1)
        else:  # the symmetric square root of the covariance: D x D, whatever the image count
            eigenvalues, eigenvectors = np.linalg.eigh(centred.T @ centred / (count - 1))
            factor = eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))
        return cls(features, mean, factor, float(np.sum(factor * factor)))


def inception_distances(images: FeatureSummary, reference: FeatureSummary) -> dict[str, float]:
    """``fid`` and ``kid`` (mean over subsets) between two feature summaries; both about 0 for one distribution."""
    difference = images.mean - reference.mean
    cross_trace = np.linalg.svd(images.factor.T @ reference.factor, compute_uv=False).sum()
    fid = float(difference @ difference + images.trace + reference.trace - 2.0 * cross_trace)
    return {"fid": fid, "kid": kernel_inception_distance(images.features, reference.features)}


def kernel_inception_distance(first: np.ndarray, second: np.ndarray) -> float:
    """torch-fidelity's KID: mean unbiased MMD^2 (cubic kernel) over :data:`KID_SUBSETS` random subsets.

    Subsets hold ``min(KID_SUBSET_SIZE, n_1, n_2)`` images, drawn as torch-fidelity draws them
    (same seed, same order). The kernels are computed once; each subset reads its block. When the
    subsets are the whole sets, every subset gives the same value, computed once.
    """
    size = min(KID_SUBSET_SIZE, len(first), len(second))
    if size < 2:
        raise EvaluationError("KID needs at least 2 images on each side")
    gamma = 1.0 / first.shape[1]

    def kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return (x @ y.T * gamma + KID_COEF0) ** KID_DEGREE

    within_first, within_second, across = kernel(first, first), kernel(second, second), kernel(first, second)

    def unbiased_mmd2(rows: np.ndarray, columns: np.ndarray) -> float:
        block_first = within_first[np.ix_(rows, rows)]
        block_second = within_second[np.ix_(columns, columns)]
        off_diagonal = block_first.sum() - np.trace(block_first) + block_second.sum() - np.trace(block_second)
        return off_diagonal / (size * (size - 1)) - 2.0 * across[np.ix_(rows, columns)].mean()

    if size == len(first) == len(second):  # every subset is a reordering of both whole sets: one value
        return float(unbiased_mmd2(np.arange(size), np.arange(size)))
    rng = np.random.RandomState(KID_SEED)
    estimates = [
        unbiased_mmd2(rng.choice(len(first), size, replace=False), rng.choice(len(second), size, replace=False))
        for _ in range(KID_SUBSETS)
    ]
    return float(np.mean(estimates))
