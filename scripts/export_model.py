"""Export a trained generator as one self-contained file: TorchScript or ONNX, with its preprocessing.

    python scripts/export_model.py --name demo --epoch best --format onnx
    python scripts/export_model.py --name demo --epoch 20 --format torchscript --output g_a.pt

The file holds ``G_A`` (or ``--network G_B``) of ``checkpoints/<name>`` and, as metadata, what a
program needs to feed it without this project: the input and output layout and value range,
the conversion to and from 8-bit, and the percentile stretch and inversion the training frames
were prepared with. Every size of image is accepted (the network pads internally).

* TorchScript: ``torch.jit.load(path, _extra_files={"metadata.json": ""})`` fills the dict with
  the metadata. PyTorch deprecated TorchScript; prefer ONNX for anything meant to last.
* ONNX: one input ``image`` and one output ``stained``, batch/height/width dynamic; the metadata
  is the model's ``metadata_props["cell_cyclegan"]``. Runs in onnxruntime.

Before the file is written, its outputs on a training-sized crop and an odd-sized batch are compared with PyTorch's; an
export that differs by more than ``TOLERANCE`` is refused.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project's packages, from any working folder

from experiment import Experiment, add_model_arguments
from util.atomic import atomic_path
from util.cli import HelpFormatter, run_script
from util.errors import CellCycleGANError, OptionError
from util.log import setup_logging

logger = logging.getLogger("export_model")

FORMATS = {"torchscript": ".pt", "onnx": ".onnx"}
METADATA_KEY = "cell_cyclegan"  # ONNX metadata_props key; TorchScript's extra file is metadata.json
TOLERANCE = 1e-4  # largest accepted difference from PyTorch, on outputs in [-1, 1]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter, allow_abbrev=False)
    add_model_arguments(parser)
    parser.add_argument("--network", choices=("G_A", "G_B"), default="G_A", help="G_A stains; G_B goes back")
    parser.add_argument("--format", choices=tuple(FORMATS), required=True)
    parser.add_argument(
        "--output", type=Path, default=None, help="file to write (default checkpoints/<name>/export/<network>_<epoch>)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing file")
    return parser


def export_metadata(experiment: Experiment, label: str, network_name: str, architecture: dict[str, Any]) -> dict:
    """Everything a program outside this project needs to feed the network and read its output."""
    normalization = experiment.training_normalization()
    return {
        "project": "Cell CycleGAN",
        "experiment": experiment.name,
        "epoch": label,
        "network": network_name,
        "architecture": architecture,
        "input": {
            "layout": "NCHW float32",
            "channels": architecture["input_nc" if network_name == "G_A" else "output_nc"],
            "range": [-1.0, 1.0],
            "from_uint8": "x = pixel / 127.5 - 1",
            "size": "any height and width",
        },
        "output": {
            "layout": "NCHW float32",
            "channels": architecture["output_nc" if network_name == "G_A" else "input_nc"],
            "range": [-1.0, 1.0],
            "to_uint8": "pixel = round((clamp(y, -1, 1) + 1) * 127.5)",
        },
        # The key keeps its first spelling: programs that read exported files look it up.
        "intensity_normalisation": {
            "applies_to": "raw gray frames (e.g. 16-bit, or 8-bit camera frames), before from_uint8",
            "rule": "stretch linearly so the low/high percentiles map to 0/255, clip, then invert if set",
            **(normalization.to_dict() if normalization is not None else {"none": True}),
        },
        "tiling": "for large images run overlapping tiles; see colorize.py and models/tiling.py",
    }


def check_inputs(channels: int, size_multiple: int) -> list[torch.Tensor]:
    """Inputs the export is traced with and checked on: a training-sized crop, an odd size that needs padding,
    and an image smaller than the network's smallest working size (padded by replication)."""
    generator = torch.Generator().manual_seed(0)
    side = max(128, 2 * size_multiple)
    return [
        torch.rand(1, channels, side, side, generator=generator) * 2 - 1,
        torch.rand(2, channels, side + size_multiple // 2 + 1, side + 3, generator=generator) * 2 - 1,
        torch.rand(1, channels, 3, 5, generator=generator) * 2 - 1,
    ]


@contextlib.contextmanager
def torchscript_quietly() -> Iterator[None]:
    """TorchScript works but warns on every call that it is deprecated; the module docstring says so once."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.* is deprecated", category=FutureWarning)
        yield


def write_torchscript(generator: nn.Module, metadata: dict, path: Path) -> None:
    with torchscript_quietly():
        torch.jit.save(torch.jit.script(generator), str(path), _extra_files={"metadata.json": json.dumps(metadata)})


def write_onnx(generator: nn.Module, metadata: dict, path: Path, example: torch.Tensor) -> None:
    try:
        import onnxscript  # noqa: F401  (the exporter needs it; fail here with a clear message)
    except ImportError as error:
        raise OptionError(
            "--format onnx needs the onnx and onnxscript packages: pip install -r requirements.txt"
        ) from error
    dims = {0: torch.export.Dim("batch"), 2: torch.export.Dim("height"), 3: torch.export.Dim("width")}
    program = torch.onnx.export(
        generator,
        (example,),
        dynamo=True,
        input_names=["image"],
        output_names=["stained"],
        dynamic_shapes={"images": dims},
        verbose=False,
    )
    program.model.metadata_props[METADATA_KEY] = json.dumps(metadata)
    program.save(str(path), external_data=False)


def run_exported(path: Path, export_format: str, images: torch.Tensor) -> np.ndarray:
    """The exported file's output for ``images``, run the way a user would run it."""
    if export_format == "torchscript":
        with torch.no_grad(), torchscript_quietly():
            return torch.jit.load(str(path), map_location="cpu")(images).numpy()
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"image": images.numpy()})[0]


def read_metadata(path: Path, export_format: str) -> dict:
    """The metadata stored in an exported file."""
    if export_format == "torchscript":
        extra = {"metadata.json": ""}
        with torchscript_quietly():
            torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        return json.loads(extra["metadata.json"])
    import onnx

    properties = {entry.key: entry.value for entry in onnx.load(str(path)).metadata_props}
    return json.loads(properties[METADATA_KEY])


def export(args: argparse.Namespace) -> Path:
    """Write the exported file, verified against PyTorch; return its path."""
    experiment = Experiment(args.checkpoints_dir, args.name)
    directory = experiment.directory
    label = experiment.chosen_epoch(args.epoch, args.results_dir)
    generator, architecture = experiment.load_generator(label, torch.device("cpu"), args.network)
    output = args.output or directory / "export" / f"{args.network}_{label}{FORMATS[args.format]}"
    if output.exists() and not args.overwrite:
        raise OptionError(f"{output} exists already; choose another --output or pass --overwrite")
    metadata = export_metadata(experiment, label, args.network, architecture)
    examples = check_inputs(metadata["input"]["channels"], generator.size_multiple)
    with atomic_path(output) as temporary:  # written in full and checked, or not at all
        if args.format == "torchscript":
            write_torchscript(generator, metadata, temporary)
        else:
            write_onnx(generator, metadata, temporary, examples[0])
        with torch.no_grad():
            difference = max(
                float(np.abs(run_exported(temporary, args.format, images) - generator(images).numpy()).max())
                for images in examples
            )
        if difference > TOLERANCE:
            raise CellCycleGANError(
                f"the exported model differs from PyTorch by {difference:.2e} (more than {TOLERANCE:g}); "
                "nothing was written. Try the other --format."
            )
    logger.info(
        "%s of %s, epoch %s -> %s (%.1f MB); largest difference from PyTorch %.1e",
        args.network, args.name, label, output, output.stat().st_size / 1e6, difference,
    )  # fmt: skip
    return output


def main(argv: Sequence[str] | None = None) -> int:
    setup_logging()
    args = build_parser().parse_args(argv)
    return run_script(lambda: export(args))


if __name__ == "__main__":
    sys.exit(main())
