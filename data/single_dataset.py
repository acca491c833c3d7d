"""Images of one domain, for inference with ``test.py``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from data.base_dataset import BaseDataset
from data.image_io import is_image_file
from data.intensity import IntensityNormalization


class SingleDataset(BaseDataset):
    """The source-domain images of ``<dataroot>/<phase>A`` (``<phase>B`` with ``--direction BtoA``).

    If that folder does not exist but ``--dataroot`` itself holds images, those are used, so any
    folder of images can be translated. Items hold ``A`` and ``A_paths`` only.
    """

    layout = "<dataroot>/testA (or any folder of images given as --dataroot)"

    def __init__(self, opt: argparse.Namespace, source_normalization: IntensityNormalization | None = None) -> None:
        super().__init__(opt, source_normalization)
        side = "A" if opt.direction == "AtoB" else "B"
        folder = f"{opt.phase}{side}"
        if not (self.root / folder).is_dir() and any(map(is_image_file, self.root.iterdir())):
            folder = "."
        #: A plain folder of images rather than a dataroot, which ``make_dataset.py --check`` does not apply to.
        self.plain_folder = folder == "."
        self.paths = self.image_folder(folder, "input")

    def __len__(self) -> int:
        return len(self.paths)

    def files_to_cache(self) -> list[tuple[str, Path]]:
        return [("image", path) for path in self.paths]

    def check_hint(self) -> str:
        return "" if self.plain_folder else super().check_hint()

    def load_item(self, index: int, rng: np.random.Generator) -> dict[str, Any]:
        path = self.paths[index]
        image, _ = self.load_source_image(path, rng)
        return {"A": image, "A_paths": str(path)}
