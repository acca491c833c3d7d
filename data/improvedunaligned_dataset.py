"""``--dataset_mode improvedunaligned``: unpaired data with a nucleus mask for every source image.

Defined beside the plain mode in :mod:`data.unaligned_dataset`, since it is that data plus the
masks; the dataset factory finds a mode by its file name, so this file names the class.
"""

from data.unaligned_dataset import ImprovedUnalignedDataset

__all__ = ["ImprovedUnalignedDataset"]
