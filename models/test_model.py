"""Inference with one generator: only ``<epoch>_net_G_A.pth`` is needed."""

from __future__ import annotations

import argparse

from models import checkpoint, networks
from models.base_model import BaseModel
from util.errors import OptionError
from util.runtime import Runtime


class TestModel(BaseModel):
    """Applies G_A to source images: ``real_A -> fake_B``. For sharing or deploying one generator."""

    @staticmethod
    def modify_commandline_options(parser: argparse.ArgumentParser, is_train: bool) -> argparse.ArgumentParser:
        if is_train:
            raise OptionError("--model test is for inference only; train with --model cycle_gan")
        parser.set_defaults(dataset_mode="single")
        return parser

    def __init__(self, opt: argparse.Namespace, runtime: Runtime | None = None) -> None:
        super().__init__(opt, runtime)
        self.visual_names = ["real_A", "fake_B"]
        self.networks["G_A"] = networks.build_generator(
            checkpoint.architecture_of(opt), False, opt.init_type, opt.init_gain
        )

    def forward(self) -> None:
        self.visuals["fake_B"] = self.networks["G_A"](self.visuals["real_A"])
