"""test.py end to end: every epoch, no repeated flags, clear errors, original sizes."""

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

import test as test_driver
from models import checkpoint
from models.networks import define_generator
from tests.helpers import run_on_small_disk


def run(checkpoints: Path, name: str, results: Path, *extra: str) -> int:
    return test_driver.main(
        ["--name", name, "--checkpoints_dir", str(checkpoints), "--results_dir", str(results), *extra]
    )


def test_epoch_all_writes_every_saved_epoch_of_the_val_and_test_splits(
    trained_experiment: tuple[Path, str], small_root: Path, tmp_path: Path
) -> None:
    checkpoints, name = trained_experiment
    assert run(checkpoints, name, tmp_path, "--epoch", "all") == 0  # no architecture flags needed
    for split in ("val", "test"):  # the dataset has a valA: Stain_Evaluation chooses the epoch on it
        stems = sorted(path.stem for path in (small_root / f"{split}A").iterdir())
        for epoch in ("1", "2"):
            folder = tmp_path / name / f"{split}_{epoch}"
            expected = {f"{stem}_{visual}.png" for stem in stems for visual in ("real_A", "fake_B", "rec_A")}
            assert {path.name for path in (folder / "images").iterdir()} == expected
            page = (folder / "index.html").read_text()
            assert all(f"images/{file}" in page for file in expected) and f"epoch {epoch} ({split})" in page
    stems = sorted(path.stem for path in (small_root / "testA").iterdir())
    for epoch in ("1", "2"):
        folder = tmp_path / name / f"test_{epoch}"
        with Image.open(folder / "images" / f"{stems[0]}_fake_B.png") as fake:
            assert fake.mode == "RGB" and fake.size == (128, 128)
        with Image.open(folder / "images" / f"{stems[0]}_rec_A.png") as reconstruction:
            assert reconstruction.mode == "L"
    index = (tmp_path / name / "index.html").read_text()
    assert index.index("test_1/index.html") < index.index("test_2/index.html")
    assert "val_1/index.html" in index
    fake_1 = np.asarray(Image.open(tmp_path / name / "test_1" / "images" / f"{stems[0]}_fake_B.png"))
    fake_2 = np.asarray(Image.open(tmp_path / name / "test_2" / "images" / f"{stems[0]}_fake_B.png"))
    assert not np.array_equal(fake_1, fake_2)  # each epoch's own weights were used
    assert (tmp_path / name / "test_opt.json").is_file()


def test_num_test_and_test_model(trained_experiment: tuple[Path, str], tmp_path: Path) -> None:
    checkpoints, name = trained_experiment
    assert run(checkpoints, name, tmp_path, "--model", "test", "--num_test", "2", "--eval") == 0
    files = sorted(path.name for path in (tmp_path / name / "test_latest" / "images").iterdir())
    assert len(files) == 4 and all(file.endswith(("_real_A.png", "_fake_B.png")) for file in files)


def test_an_explicit_phase_translates_that_split_only(trained_experiment: tuple[Path, str], tmp_path: Path) -> None:
    checkpoints, name = trained_experiment
    assert run(checkpoints, name, tmp_path, "--phase", "val") == 0
    assert [path.name for path in (tmp_path / name).glob("*_latest")] == ["val_latest"]


def test_contradicting_flag_names_both_values(
    trained_experiment: tuple[Path, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    checkpoints, name = trained_experiment
    assert run(checkpoints, name, tmp_path, "--ngf", "64", "--netG", "resnet_6blocks") == 1
    assert "--ngf 64 (the checkpoint has 4)" in caplog.text and "--netG" not in caplog.text.split("contradict")[1]


def test_missing_epoch_lists_the_saved_ones(
    trained_experiment: tuple[Path, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    checkpoints, name = trained_experiment
    assert run(checkpoints, name, tmp_path, "--epoch", "7") == 1
    assert "no checkpoint for epoch '7'" in caplog.text and "available epochs in" in caplog.text
    assert caplog.text.rstrip().endswith("1, 2, latest")


def test_checkpoint_from_another_architecture_is_explained(
    trained_experiment: tuple[Path, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    checkpoints, name = trained_experiment
    shutil.copytree(checkpoints / name, tmp_path / "ckpt" / name)
    foreign = define_generator("resnet_6blocks", 3, 1, ngf=16).state_dict()  # a bare file of another model
    torch.save(foreign, checkpoint.network_path(tmp_path / "ckpt" / name, "1", "G_B"))
    assert run(tmp_path / "ckpt", name, tmp_path / "results", "--epoch", "1") == 1
    assert "does not fit this network" in caplog.text and "Traceback" not in caplog.text


def test_original_size_and_16bit_input_are_kept(trained_experiment: tuple[Path, str], tmp_path: Path) -> None:
    checkpoints, name = trained_experiment
    images = tmp_path / "images"
    images.mkdir()
    source = Path(__file__).resolve().parents[1] / "datasets" / "sources" / "fluo_nuclei_dsb2018" / "image.tif"
    tifffile.imwrite(images / "odd.tif", tifffile.imread(source)[:389, :501])  # 16-bit, odd size
    assert run(checkpoints, name, tmp_path / "results", "--dataroot", str(images)) == 0
    with Image.open(tmp_path / "results" / name / "test_latest" / "images" / "odd_fake_B.png") as fake:
        assert fake.size == (501, 389)
    real = np.asarray(Image.open(tmp_path / "results" / name / "test_latest" / "images" / "odd_real_A.png"))
    assert real.min() == 0 and real.max() == 255  # the 16-bit range was stretched, not clipped


def half_moved_save(source: Path, experiment: Path) -> None:
    """``experiment`` as a crash leaves it while moving epoch 2's ``latest`` files into place: G_A moved,
    the others still staged, the files in place from epoch 1."""
    shutil.copytree(source, experiment)
    staging = experiment / checkpoint.STAGING_FOLDER
    staging.mkdir()
    names = [f"latest_net_{network}.pth" for network in ("G_A", "G_B", "D_A", "D_B")] + ["latest_training_state.pth"]
    for name in names:
        shutil.copy(experiment / name.replace("latest", "2"), staging / name)
        shutil.copy(experiment / name.replace("latest", "1"), experiment / name)
    (staging / checkpoint.COMMIT_LIST).write_text("\n".join(names) + "\n")
    shutil.move(staging / names[0], experiment / names[0])


def test_a_save_a_crash_left_half_moved_is_finished_before_testing(
    trained_experiment: tuple[Path, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    checkpoints, name = trained_experiment
    half_moved_save(checkpoints / name, tmp_path / "ckpt" / name)
    assert run(tmp_path / "ckpt", name, tmp_path / "results") == 0
    assert "a save interrupted by a crash was found" in caplog.text and "completed" in caplog.text
    assert not (tmp_path / "ckpt" / name / checkpoint.STAGING_FOLDER).exists()
    for network in ("G_A", "G_B", "D_A", "D_B"):
        path = checkpoint.network_path(tmp_path / "ckpt" / name, "latest", network)
        assert torch.load(path, weights_only=True)["epoch"] == 2


def test_network_files_of_different_epochs_are_refused(
    trained_experiment: tuple[Path, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    checkpoints, name = trained_experiment
    shutil.copytree(checkpoints / name, tmp_path / "ckpt" / name)
    shutil.copy(tmp_path / "ckpt" / name / "1_net_G_B.pth", tmp_path / "ckpt" / name / "latest_net_G_B.pth")
    assert run(tmp_path / "ckpt", name, tmp_path / "results") == 1
    [error] = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert "the files of checkpoint 'latest'" in error and "come from different epochs (G_A 2, G_B 1);" in error


def test_a_results_dir_under_a_file_is_refused_before_any_work(
    trained_experiment: tuple[Path, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    checkpoints, name = trained_experiment
    (tmp_path / "a_file").write_text("not a folder")
    assert run(checkpoints, name, tmp_path / "a_file") == 1
    [error] = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert error == (
        f"--results_dir {tmp_path / 'a_file' / name}: cannot write there: a part of the path is a file, not a folder; "
        "choose another --results_dir"
    )


@pytest.mark.small_disk
def test_a_half_moved_save_on_a_read_only_folder_is_refused_not_read(
    trained_experiment: tuple[Path, str], tmp_path: Path
) -> None:
    checkpoints, name = trained_experiment
    half_moved_save(checkpoints / name, tmp_path / "prepared" / name)
    disk = tmp_path / "read_only"
    test_command = (
        f"{sys.executable} test.py --name {name} --checkpoints_dir '{disk}' --results_dir '{tmp_path / 'results'}'"
    )
    script = f"cp -a '{tmp_path / 'prepared'}/.' '{disk}' && mount -o remount,ro '{disk}' && {test_command}"
    finished = run_on_small_disk(disk, script, size="20m")
    assert finished.returncode == 1 and "Traceback" not in finished.stderr
    [error] = [line for line in finished.stderr.splitlines() if line.startswith("ERROR")]
    assert f"a checkpoint save in {disk / name} was interrupted half way by a crash and cannot be finished" in error
    assert "the file system is read-only" in error


def test_images_of_one_and_a_few_pixels_are_translated_at_their_size(
    trained_experiment: tuple[Path, str], small_root: Path, tmp_path: Path
) -> None:
    checkpoints, name = trained_experiment
    data = tmp_path / "data"
    for folder in ("testA", "testB"):
        shutil.copytree(small_root / folder, data / folder)
    Image.fromarray(np.full((1, 1), 90, np.uint8)).save(data / "testA" / "one_pixel.png")
    Image.fromarray(np.full((3, 2), 90, np.uint8)).save(data / "testA" / "three_by_two.png")
    assert run(checkpoints, name, tmp_path / "results", "--dataroot", str(data)) == 0
    images = tmp_path / "results" / name / "test_latest" / "images"
    for stem, size in (("one_pixel", (1, 1)), ("three_by_two", (2, 3))):
        for visual in ("real_A", "fake_B", "rec_A"):
            with Image.open(images / f"{stem}_{visual}.png") as image:
                assert image.size == size
    assert len(list(images.glob("*_fake_B.png"))) == len(list((data / "testA").iterdir()))
