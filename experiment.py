"""One experiment's folder, ``<checkpoints_dir>/<name>/``: everything about a run that lives on disk.

The drivers (``train.py``, ``test.py``, ``colorize.py``, ``scripts/export_model.py``) ask this
module, and nothing else, where a run's files are and what they say:

- the saved options (``train_opt.json``/``.txt``, ``test_opt.*`` in the results folder), which
  the option parsers receive as defaults through a callable, so ``options/`` never touches disk;
- the checkpoints: listing and choosing them (``latest``, a number, ``all``, ``best``: the epoch
  the evaluation chose), finishing or discarding an interrupted save, and adopting the stored
  architecture (a flag that contradicts it is an error naming both values);
- the trained generator rebuilt from its stored architecture, and the intensity rule of the
  data it was trained on, for inference;
- what a training run shows its user: the loss log, the loss curves, the page of captioned
  samples and the optional TensorBoard events (:class:`TrainingReport`).

The file format of a checkpoint is :mod:`models.checkpoint`.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from torch import nn

from data.image_io import write_image
from data.intensity import IntensityNormalization, recorded_normalization
from models import checkpoint, networks
from util.atomic import write_text_atomic
from util.disk import require_writable_folder
from util.errors import BusyError, CheckpointError, OptionError, OutputError
from util.html import ColourBar, HTMLPage, PageImage
from util.lock import exclusive_lock, is_locked
from util.loss_log import LossLog, LossReport, loss_weights
from util.plots import plot_loss_curves
from util.tensorboard import FOLDER as TENSORBOARD_FOLDER
from util.tensorboard import TrainingBoard
from util.visdom_display import VisdomDisplay

logger = logging.getLogger(__name__)

#: Stems of the option files: training's in the experiment folder, testing's in its results folder.
TRAIN_OPTIONS = "train_opt"
TEST_OPTIONS = "test_opt"
#: What Stain_Evaluation writes about its choice, in ``<results_dir>/<name>/evaluation/``.
SELECTION_FILE = "selection.json"


def epoch_order(label: str) -> tuple[int, int, str]:
    """Sort key of checkpoint labels: numbered epochs in numeric order (2 before 10), then named ones."""
    return (0, int(label), "") if label.isdigit() else (1, 0, label)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that pick a trained model: ``--name``, ``--checkpoints_dir``, ``--results_dir``, ``--epoch``."""
    parser.add_argument("--name", required=True, help="experiment name: checkpoints/<name>")
    parser.add_argument("--checkpoints_dir", type=Path, default=Path("checkpoints"), help="where experiments are")
    parser.add_argument("--results_dir", type=Path, default=Path("results"), help="where --epoch best is looked up")
    parser.add_argument(
        "--epoch",
        default="latest",
        help="a saved epoch number, 'latest', or 'best' (the epoch Stain_Evaluation.py chose)",
    )


@dataclass(frozen=True)
class Experiment:
    """The folder of one experiment, ``<checkpoints_dir>/<name>``."""

    checkpoints_dir: Path
    name: str

    @classmethod
    def of(cls, opt: argparse.Namespace) -> Experiment:
        """The experiment named by parsed options (``--checkpoints_dir``, ``--name``)."""
        return cls(Path(opt.checkpoints_dir), opt.name)

    @property
    def directory(self) -> Path:
        return self.checkpoints_dir / self.name

    # -- options ---------------------------------------------------------------------------------
    def saved_options(self, stem: str = TRAIN_OPTIONS) -> dict[str, Any]:
        """The options an earlier run saved here (empty if there are none)."""
        return read_options(self.directory / f"{stem}.json")

    def has_checkpoints(self) -> list[str]:
        """The names of the network files already here (a new run must not overwrite them)."""
        return sorted(path.name for path in self.directory.glob("*_net_*.pth"))

    # -- checkpoints -----------------------------------------------------------------------------
    def saved_epochs(self, network: str = "G_A") -> list[int]:
        return checkpoint.saved_epochs(self.directory, network)

    def require_checkpoint(self, label: str, network: str = "G_A") -> Path:
        """The file of ``network`` at ``label``; an error listing the saved epochs otherwise."""
        return checkpoint.require_checkpoint(self.directory, label, network)

    def labels_to_test(self, requested: str) -> list[str]:
        """Checkpoint labels for ``--epoch``: ``all`` means every numbered epoch, ascending (else ``latest``)."""
        if requested != "all":
            self.require_checkpoint(requested)
            return [requested]
        numbered = [str(epoch) for epoch in self.saved_epochs()]
        if numbered:
            return numbered
        self.require_checkpoint("latest")
        return ["latest"]

    def chosen_epoch(self, requested: str, results_dir: Path) -> str:
        """``requested`` as a checkpoint label; ``best`` is the epoch Stain_Evaluation chose for this experiment."""
        if requested != "best":
            return requested
        evaluation = Path(results_dir) / self.name / "evaluation"
        record = evaluation / SELECTION_FILE
        rerun_evaluation = "run evaluation/Stain_Evaluation.py again, or pass an epoch number"
        if not record.is_file():
            older = evaluation / "scores.json"  # an evaluation from before the guarded choice marks "best"
            rows = read_json(older, rerun_evaluation) if older.is_file() else []
            best = [row["label"] for row in rows if isinstance(row, dict) and row.get("best")]
            if best:
                return str(best[0])
            raise OptionError(
                f"--epoch best needs {record}; run python evaluation/Stain_Evaluation.py --results_dir "
                f"{Path(results_dir) / self.name} first, or pass an epoch number"
            )
        selection = read_json(record, rerun_evaluation)
        if not isinstance(selection, dict):
            raise CheckpointError(f"{record} holds no evaluation record; {rerun_evaluation}")
        if not selection.get("chosen"):
            raise OptionError(
                f"{record}: no epoch passed the evaluation's faithfulness guards (closest: epoch "
                f"{selection.get('closest')}); pass an epoch number to use one anyway"
            )
        return str(selection["chosen"])

    def lock(self) -> AbstractContextManager[None]:
        """Hold the experiment for one training run: a second one on the same folder is refused, naming the first.

        The folder is checked writable first, so an unusable ``--checkpoints_dir`` is one line before any work.
        """
        require_writable_folder(self.directory, "--checkpoints_dir")
        return exclusive_lock(self.directory, f"experiment {self.name!r}", "choose another --name")

    def recover_interrupted_save(self) -> None:
        """Finish a committed save that a crash interrupted, or discard an uncommitted one (training start-up,
        under :meth:`lock`)."""
        outcome = checkpoint.recover_interrupted_save(self.directory)
        if outcome is not None:
            logger.warning("a save interrupted by a crash was found in %s and %s", self.directory, outcome)

    def settle_interrupted_save(self, wait_seconds: float = 30.0) -> None:
        """Before reading checkpoints outside training: never read a set of files that a save left half moved.

        A staging folder with its commit list means files are being (or were, before a crash)
        moved into place. A running training finishes that in a moment, so we wait; after a crash
        the move is finished here, as training would. Without the commit list the files in place
        are a consistent set and are read as they are.
        """
        commit_list = self.directory / checkpoint.STAGING_FOLDER / checkpoint.COMMIT_LIST
        deadline = time.monotonic() + wait_seconds
        while commit_list.is_file() and is_locked(self.directory):  # a running training is moving files
            if time.monotonic() >= deadline:
                raise BusyError(f"the training running in {self.directory} is still saving a checkpoint; try again")
            time.sleep(0.1)
        if not commit_list.is_file():
            return
        try:
            with exclusive_lock(self.directory, f"experiment {self.name!r}", "try again once it is done"):
                self.recover_interrupted_save()
        except OutputError as error:
            raise CheckpointError(
                f"a checkpoint save in {self.directory} was interrupted half way by a crash and cannot be finished "
                f"here ({error}); its files in place may be from two epochs. Finish it where the folder is "
                "writable by running test.py or train.py --continue_train once."
            ) from error

    def adopt_architecture(self, opt: argparse.Namespace, explicit: set[str], label: str) -> None:
        """Take the architecture stored with ``label``'s G_A into ``opt``; a contradicting explicit flag is an error."""
        network_file = self.require_checkpoint(label)
        stored = checkpoint.read_architecture(network_file)
        if stored is None:
            return
        conflicts = []
        for key, value in stored.items():
            if key in explicit and getattr(opt, key, value) != value:
                conflicts.append(f"--{key} {getattr(opt, key)} (the checkpoint has {value})")
            elif hasattr(opt, key):
                setattr(opt, key, value)
        if conflicts:
            raise OptionError(
                f"options contradict checkpoint {network_file}: {'; '.join(conflicts)}. "
                "Drop these flags: the checkpoint's architecture is used automatically."
            )

    def prepare_training(self, opt: argparse.Namespace, explicit: set[str]) -> None:
        """Before training: a new run must not overwrite one; a resumed run repairs a crashed save and takes
        its checkpoint's architecture.

        Under torchrun only rank 0 repairs. The other ranks only check G_A's file and read its
        architecture, which the repair's renames never leave incomplete; they load weights after joining
        the process group, which waits for rank 0 and so for the repair.
        """
        if not opt.continue_train:
            existing = self.has_checkpoints()
            if existing:
                raise OptionError(
                    f"experiment {self.name!r} already has checkpoints in {self.directory} ({len(existing)} files); "
                    "resume it with --continue_train, choose another --name, or delete that folder to start over"
                )
            return
        saved_model = self.saved_options().get("model")
        if saved_model is not None and saved_model != opt.model:
            raise OptionError(
                f"--model {opt.model} contradicts experiment {self.name!r}, which was trained as {saved_model}; "
                f"resume it without --model, or train a {opt.model} under another --name"
            )
        if opt.rank == 0:
            self.recover_interrupted_save()
        if not checkpoint.network_path(self.directory, opt.epoch, "G_A").is_file():
            raise CheckpointError(
                f"--continue_train: no checkpoint {checkpoint.network_path(self.directory, opt.epoch, 'G_A')}; "
                f"{checkpoint.describe_available(self.directory, 'G_A')}"
            )
        self.adopt_architecture(opt, explicit, opt.epoch)

    def prepare_testing(self, opt: argparse.Namespace, explicit: set[str]) -> None:
        """Before testing: finish a save a crash left half done, take the architecture of the checkpoint to
        test (the newest for ``all``)."""
        self.settle_interrupted_save()
        if opt.epoch == "all":
            epochs = self.saved_epochs()
            label = str(epochs[-1]) if epochs else "latest"
        else:
            label = opt.epoch
        self.adopt_architecture(opt, explicit, label)

    # -- inference -------------------------------------------------------------------------------
    def load_generator(self, label: str, device: torch.device, network: str = "G_A") -> tuple[nn.Module, dict]:
        """The trained generator ``network`` at ``label``, rebuilt from its stored architecture, in eval mode."""
        self.settle_interrupted_save()
        path = self.require_checkpoint(label, network)
        architecture = checkpoint.read_architecture(path)
        if architecture is None:
            raise CheckpointError(f"{path} holds bare weights without their architecture; a file of train.py is needed")
        generator = networks.build_generator(architecture, reverse=network == "G_B")
        checkpoint.load_network(path, generator, architecture, device)
        return generator.to(device).eval(), architecture

    def training_normalization(self, overrides: dict[str, Any] | None = None) -> IntensityNormalization | None:
        """The intensity rule the training data were prepared with, updated by ``overrides``; None if neither.

        Read from the ``preparation.json`` of the dataroot named in the saved training options;
        ``overrides`` holds flags the user gave (``low_percentile``, ``high_percentile``, ``invert``),
        None values ignored.
        """
        dataroot = self.saved_options().get("dataroot")
        recorded = recorded_normalization(dataroot) if dataroot else None
        given = {key: value for key, value in (overrides or {}).items() if value is not None}
        if recorded is None and not given:
            return None
        return IntensityNormalization.from_dict({**(recorded.to_dict() if recorded else {}), **given})


def read_options(path: Path) -> dict[str, Any]:
    """The options saved at ``path`` (``<stem>.json``); empty if there is no such file."""
    if not path.is_file():
        return {}
    options = read_json(path, "restore it, or delete it and give the run's options on the command line")
    if not isinstance(options, dict):
        raise CheckpointError(f"saved options {path} hold no options (a JSON object is expected)")
    return options


def read_json(path: Path, remedy: str) -> Any:
    """The JSON value in ``path``; a damaged file is one :class:`CheckpointError` line ending in ``remedy``."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"cannot read {path}: {error}; the file is damaged: {remedy}") from error


def save_options(folder: Path, stem: str, options: dict[str, Any], text: str) -> None:
    """``<stem>.txt`` (``text``, for people) and ``<stem>.json`` (the values, for programs) into ``folder``."""
    write_text_atomic(Path(folder) / f"{stem}.txt", text + "\n")
    write_text_atomic(Path(folder) / f"{stem}.json", json.dumps(options, indent=2, sort_keys=True) + "\n")


def saved_defaults_reader(stem: str) -> Callable[[argparse.Namespace], dict[str, Any]]:
    """For the option parsers: the options saved by the experiment that partly parsed options name."""
    return lambda known: Experiment(Path(known.checkpoints_dir), known.name).saved_options(stem)


# -- what a training run shows -------------------------------------------------------------------
_SAMPLE_NAME = re.compile(r"epoch(\d+)_(.+)\.png")

#: What each sample image of the training page is: (title, caption).
VISUAL_CAPTIONS: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "real_A": ("real_A", "the gray input (domain A), nuclei dark"),
        "real_A_GT": ("real_A_GT", "its nucleus mask (white: nucleus), which GT_fake asks fake_B to follow"),
        "fake_B": ("fake_B = G_A(real_A)", "the virtual H&E stain"),
        "nuclei_fake_B": (
            "nuclei_fake_B",
            "where fake_B is hematoxylin-coloured, as the GT loss reads it: sigmoid((nucleus score - threshold) / "
            "--gt_temperature); it should match real_A_GT",
        ),
        "rec_A": ("rec_A = G_B(fake_B)", "the cycle back to gray; should equal real_A"),
        "idt_B": ("idt_B = G_B(real_A as RGB)", "identity: G_B should leave a gray image as it is"),
        "real_B": ("real_B", "a real H&E tile (domain B)"),
        "fake_A": ("fake_A = G_B(real_B)", "the H&E tile turned into a gray, fluorescence-like image"),
        "rec_B": ("rec_B = G_A(fake_A)", "the cycle back to H&E; should equal real_B"),
        "idt_A": ("idt_A = G_A(gray real_B)", "identity: G_A should colour a gray H&E tile as itself"),
    }
)
#: The key of the nucleus map: its gray levels are a membership from 0 to 1 (no unit).
NUCLEUS_MAP_KEY = ColourBar(
    low="0: background", middle="0.5: at the threshold", high="1: nucleus", title="nucleus membership (0 to 1, no unit)"
)


class TrainingReport:
    """Writes ``loss_log.txt/.csv``, ``loss_curves.png``, ``web/index.html`` and, with ``--tensorboard``,
    TensorBoard events into the experiment folder; the page shows the same sample images translated
    after every epoch, each captioned, and the loss curves."""

    def __init__(self, opt: argparse.Namespace, loss_names: list[str], visual_names: list[str]) -> None:
        self.directory = Experiment.of(opt).directory
        self.web_directory = self.directory / "web"
        self.name = opt.name
        self.loss_names = loss_names
        self.visual_names = visual_names
        self.image_width = opt.display_winsize
        self.print_freq = getattr(opt, "print_freq", None)
        self.weights = {name: weight for name, weight in loss_weights(vars(opt)).items() if name in loss_names}
        self.loss_log = LossLog(self.directory, loss_names)
        self.display = VisdomDisplay.connect(opt.display_id, opt.display_server, opt.display_port, opt.display_env)
        self.use_tensorboard = bool(getattr(opt, "tensorboard", False))
        self.board: TrainingBoard | None = None
        self._epoch_losses = _EpochMeans()

    @property
    def page_path(self) -> Path:
        return self.web_directory / "index.html"

    @property
    def plot_path(self) -> Path:
        return self.directory / "loss_curves.png"

    @property
    def tensorboard_path(self) -> Path:
        return self.directory / TENSORBOARD_FOLDER

    def start(self, first_epoch: int, iterations_per_epoch: int = 1) -> None:
        """Open the logs at ``first_epoch`` (a resume drops what unfinished epochs had written)."""
        self.loss_log.start(first_epoch)
        if self.use_tensorboard:
            self.board = TrainingBoard(self.directory, first_epoch, iterations_per_epoch)
            self.board.describe_losses(self.weights)

    def log_losses(self, report: LossReport) -> None:
        logger.debug(self.loss_log.record(report))
        self._epoch_losses.add(report)
        if self.display is not None:
            self.display.plot_losses(report.progress, report.losses)
        if self.board is not None:
            self.board.log_losses(report.epoch, report.iteration, report.losses, report.seconds_per_iteration)

    def end_epoch(
        self,
        epoch: int,
        samples: dict[str, np.ndarray],
        learning_rates: Mapping[str, float] | None = None,
        objective: float | None = None,
    ) -> None:
        """Save this epoch's sample images (uint8) and refresh the page, the loss plot and TensorBoard
        (with the epoch's mean losses, ``objective`` and the ``learning_rates`` it trained with)."""
        for name, image in samples.items():
            write_image(self.web_directory / "images" / f"epoch{epoch:04d}_{name}.png", image)
        title = f"{self.name}: training losses"
        plot_loss_curves(self.loss_log.read(), self.loss_names, self.plot_path, title, self.weights)
        self.write_page()
        if self.display is not None:
            self.display.show_images(samples, epoch)
        if self.board is not None:
            means = self._epoch_losses.means(epoch)
            if objective is not None:
                means["generator_objective"] = objective
            self.board.log_epoch(epoch, means, learning_rates or {}, samples)

    def close(self) -> None:
        """Flush and close the TensorBoard writer (the text and CSV logs need nothing)."""
        if self.board is not None:
            self.board.close()
            self.board = None

    def write_page(self) -> Path:
        """Rebuild the page from the saved images, newest epoch first (so it survives resumes)."""
        by_epoch: dict[int, list[str]] = {}
        for path in sorted((self.web_directory / "images").glob("epoch*.png")):
            match = _SAMPLE_NAME.fullmatch(path.name)
            if match:
                by_epoch.setdefault(int(match.group(1)), []).append(match.group(2))
        page = HTMLPage(f"Training: {self.name}", refresh_seconds=60)
        if self.plot_path.is_file():
            page.add_header("Losses")
            page.add_paragraph(self._losses_note())
            page.add_images([("../loss_curves.png", "loss curves")], width=1100)
        if by_epoch:
            page.add_paragraph(
                "The same training sample after every epoch, newest first, translated in evaluation mode with that "
                "epoch's weights (top row: A to B and back; bottom row: B to A and back). Click an image for its file."
            )
        for epoch in sorted(by_epoch, reverse=True):
            page.add_header(f"Epoch {epoch}")
            names = sorted(by_epoch[epoch], key=self._display_order)
            for side in ([name for name in names if name not in _B_SIDE], [name for name in names if name in _B_SIDE]):
                if side:
                    page.add_images([self._page_image(epoch, name) for name in side], self.image_width)
        return page.save(self.page_path)

    def _losses_note(self) -> str:
        every = f"every {self.print_freq} iterations" if self.print_freq else "regularly"
        note = (
            f"Each point is the mean since the previous report ({every} and at each epoch's end); with many points "
            "a running mean is drawn bold. The values are the terms the generators minimise, weights included"
        )
        if not self.weights:
            return note + "."
        weighted = ", ".join(f"{name} {weight.label()}" for name, weight in self.weights.items())
        return f"{note}: {weighted}. The adversarial terms carry no weight."

    def _page_image(self, epoch: int, name: str) -> PageImage:
        title, caption = VISUAL_CAPTIONS.get(name, (name, ""))
        key = NUCLEUS_MAP_KEY if name == "nuclei_fake_B" else None
        return PageImage(f"images/epoch{epoch:04d}_{name}.png", caption, title, key)

    def _display_order(self, name: str) -> tuple[int, str]:
        """The model's own order of visuals (real, fake, reconstruction, ...), unknown names last."""
        known = self.visual_names
        return (known.index(name) if name in known else len(known), name)


#: Visuals of the B -> A -> B cycle: the page's second row of each epoch.
_B_SIDE = frozenset({"real_B", "fake_A", "rec_B", "idt_A"})


class _EpochMeans:
    """An epoch's mean losses from its loss reports, each weighted by the iterations it covers."""

    def __init__(self) -> None:
        self.epoch = 0
        self.last_iteration = 0
        self.sums: dict[str, float] = {}
        self.iterations: dict[str, int] = {}

    def add(self, report: LossReport) -> None:
        if report.epoch != self.epoch:
            self.epoch, self.last_iteration, self.sums, self.iterations = report.epoch, 0, {}, {}
        covered = max(1, report.iteration - self.last_iteration)
        self.last_iteration = report.iteration
        for name, value in report.losses.items():
            self.sums[name] = self.sums.get(name, 0.0) + value * covered
            self.iterations[name] = self.iterations.get(name, 0) + covered

    def means(self, epoch: int) -> dict[str, float]:
        if epoch != self.epoch:
            return {}
        return {name: total / self.iterations[name] for name, total in self.sums.items()}
