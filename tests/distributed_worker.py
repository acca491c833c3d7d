"""Run by tests/test_train_distributed.py under torchrun: train with the real loop, then dump this rank's weights.

torchrun --standalone --nproc_per_node 2 tests/distributed_worker.py OUTPUT_DIR <train.py arguments>
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import train
from data import create_dataset
from models import create_model
from options.train_options import TrainOptions
from util import distributed
from util.log import setup_logging
from util.runtime import unwrap


def main() -> None:
    output, argv = Path(sys.argv[1]), sys.argv[2:]
    setup_logging()
    opt = TrainOptions().parse(argv)
    dataset, model = create_dataset(opt), create_model(opt)
    model.calibrate(dataset)
    distributed.init_process_group(model.runtime.context, model.device)
    try:
        train.train_model(opt, dataset, model)
        weights = {name: unwrap(network).state_dict() for name, network in model.networks.items()}
        torch.save(weights, output / f"rank{opt.rank}.pt")
    finally:
        distributed.destroy_process_group()


if __name__ == "__main__":
    main()
