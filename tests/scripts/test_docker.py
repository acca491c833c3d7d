"""The Docker set-up, as far as it runs without Docker: the run script's command line (GPUs, the host user), the
Jupyter entry point's authentication, the Dockerfile (NVIDIA's entry point kept, its install step run with a stand-in
python), and that the container requirements resolve within a constraint file shaped like NVIDIA's."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import secrets
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.docker

RUN_SCRIPT = REPO_ROOT / "scripts" / "docker_run.sh"
ENTRY_POINT = REPO_ROOT / "scripts" / "start_jupyter.sh"
DOCKERFILE = (REPO_ROOT / "Dockerfile").read_text(encoding="utf-8")
CONTAINER_REQUIREMENTS = REPO_ROOT / "requirements-container.txt"


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined as Docker joins them."""
    joined = DOCKERFILE.replace("\\\n", "")
    lines = [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(maxsplit=1)[0].upper(), line.split(maxsplit=1)[1]) for line in lines]


def requirement_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def test_run_script_builds_and_runs_with_gpus_shared_memory_limits_and_the_project_mounted() -> None:
    environment = {**os.environ, "DRY_RUN": "1", "JUPYTER_TOKEN": "secret-in-dry-run"}
    output = subprocess.run(
        ["bash", str(RUN_SCRIPT), "python", "train.py", "--help"], env=environment, capture_output=True, text=True,
        check=True,
    ).stdout  # fmt: skip
    lines = output.splitlines()
    assert lines[0].split() == ["docker", "build", "--tag", "cell-cyclegan", str(REPO_ROOT)]
    run = lines[1]
    for part in (
        "--gpus all", "--shm-size 16g", "--ulimit memlock=-1", "--ulimit stack=67108864",
        "--publish 127.0.0.1:8888:8888", "--env JUPYTER_TOKEN_FILE=/run/secrets/jupyter_token",
        f"--volume {REPO_ROOT}:/workspace/cell-cyclegan",
        f"--user {os.getuid()}:{os.getgid()}", "--env HOME=/tmp",
    ):  # fmt: skip
        assert part in run, part
    assert run.split()[-4:] == ["cell-cyclegan", "python", "train.py", "--help"]
    assert "secret-in-dry-run" not in output


def test_the_container_runs_as_the_host_user_with_a_writable_home_and_a_user_name() -> None:
    """Files it writes into the mounted checkout are then the host user's, not root's."""

    def docker_run_arguments(**settings: str) -> list[str]:
        environment = {key: value for key, value in os.environ.items() if key != "CONTAINER_USER"}
        environment.update(DRY_RUN="1", **settings)
        output = subprocess.run(["bash", str(RUN_SCRIPT)], env=environment, capture_output=True, text=True, check=True)
        return shlex.split(output.stdout.splitlines()[1])

    arguments = docker_run_arguments()
    user = arguments[arguments.index("--user") + 1]
    assert user == f"{os.getuid()}:{os.getgid()}"
    environment = [arguments[index + 1] for index, word in enumerate(arguments) if word == "--env"]
    assert "HOME=/tmp" in environment  # writable by any user: Jupyter, pip and torch keep files under HOME
    assert any(re.fullmatch(r"USER=\S+", variable) for variable in environment)  # getpass.getuser() needs a name
    assert arguments.index("--user") < arguments.index("cell-cyclegan")  # a docker option, not part of the command
    # Rootless Docker maps the container's root to the host user: CONTAINER_USER=0:0 is the way to say so.
    rootless = docker_run_arguments(CONTAINER_USER="0:0")
    assert rootless[rootless.index("--user") + 1] == "0:0"


def test_the_entry_point_gives_a_user_without_a_writable_home_one(tmp_path: Path) -> None:
    """docker run --user by hand, without scripts/docker_run.sh's HOME, gets HOME=/ which only root can write."""
    show_home = ["bash", str(ENTRY_POINT), "bash", "-c", 'printf %s "$HOME"']

    def home(value: str) -> str:
        environment = {**os.environ, "HOME": value}
        return subprocess.run(show_home, env=environment, capture_output=True, text=True, check=True).stdout

    assert home(str(tmp_path / "missing")) == "/tmp"
    assert home(str(tmp_path)) == str(tmp_path)  # a writable one is kept


FAKE_DOCKER = r"""#!/usr/bin/env bash
# Records what docker would be given: its arguments, its own environment, every command line on the
# machine while "the container runs" (ps), and the token file mounted into the container.
set -euo pipefail
{ echo "--- call"; printf '%s\n' "$@"; } >> "${RECORD}/arguments"
if [[ "$1" == run ]]; then
    env > "${RECORD}/environment"
    ps -eo args > "${RECORD}/ps"
    for argument in "$@"; do
        if [[ "${argument}" == *:/run/secrets/jupyter_token:ro ]]; then
            file="${argument%:/run/secrets/jupyter_token:ro}"
            echo "${file}" > "${RECORD}/secret_path"
            stat -c '%a' "${file}" "$(dirname "${file}")" > "${RECORD}/modes"
            cat "${file}" > "${RECORD}/secret"
        fi
    done
fi
"""


def run_with_fake_docker(tmp_path: Path, **settings: str) -> Path:
    """Run scripts/docker_run.sh for real with a recording ``docker`` first on PATH; the record's folder."""
    fake = tmp_path / "bin" / "docker"
    fake.parent.mkdir()
    fake.write_text(FAKE_DOCKER)
    fake.chmod(0o755)
    record = tmp_path / "record"
    record.mkdir()
    environment = {key: value for key, value in os.environ.items() if not key.startswith("JUPYTER_")}
    environment.update(PATH=f"{fake.parent}{os.pathsep}{os.environ['PATH']}", RECORD=str(record), **settings)
    subprocess.run(["bash", str(RUN_SCRIPT)], env=environment, check=True, capture_output=True, timeout=60)
    return record


def test_a_chosen_token_reaches_the_container_as_a_private_file_never_on_a_command_line(tmp_path: Path) -> None:
    token = f"token-{secrets.token_hex(12)}"
    record = run_with_fake_docker(tmp_path, JUPYTER_TOKEN=token)
    arguments = (record / "arguments").read_text()
    assert "--env\nJUPYTER_TOKEN_FILE=/run/secrets/jupyter_token\n" in arguments
    # Not in docker's arguments (what docker inspect shows as the container's environment), not on any command
    # line while the container ran (ps), not in the environment of the docker client.
    for seen in ("arguments", "ps", "environment"):
        assert token not in (record / seen).read_text(), seen
    assert (record / "secret").read_text() == f"{token}\n"
    assert (record / "modes").read_text().split() == ["600", "700"]  # the file and its folder: the user's only
    assert not Path((record / "secret_path").read_text().strip()).exists()  # removed when the container stopped


def test_a_token_file_is_mounted_read_only_as_it_is(tmp_path: Path) -> None:
    token_file = tmp_path / "my_token"
    token_file.write_text("from-my-file\n")
    token_file.chmod(0o600)
    record = run_with_fake_docker(tmp_path, JUPYTER_TOKEN_FILE=str(token_file))
    assert (record / "secret_path").read_text().strip() == str(token_file)
    assert "from-my-file" not in (record / "arguments").read_text() and token_file.exists()


def test_without_a_token_none_is_passed_and_the_container_makes_one(tmp_path: Path) -> None:
    arguments = (run_with_fake_docker(tmp_path) / "arguments").read_text()
    assert "JUPYTER_TOKEN" not in arguments.replace("--env\nJUPYTER_PORT", "") and "/run/secrets" not in arguments


# Import names of the requirements whose module is not their own name (openslide-bin is a C library).
MODULES = {
    "pillow": "PIL", "scikit-image": "skimage", "opencv-python-headless": "cv2", "openslide-python": "openslide",
    "openslide-bin": None, "torch-fidelity": "torch_fidelity", "pytest-xdist": "xdist",
}  # fmt: skip


def test_dockerfile_keeps_nvidias_entry_point_and_starts_jupyter_by_default() -> None:
    instructions = dockerfile_instructions()
    # NVIDIA's image runs everything through /opt/nvidia/nvidia_entrypoint.sh (banner, driver checks, then the
    # command); an ENTRYPOINT here would replace it. The default command is JupyterLab.
    assert [keyword for keyword, _ in instructions if keyword == "ENTRYPOINT"] == []
    commands = [json.loads(arguments) for keyword, arguments in instructions if keyword == "CMD"]
    assert commands == [["start-jupyter"]]  # exec form: no shell between NVIDIA's entry point and the script
    assert ("COPY", "scripts/start_jupyter.sh /usr/local/bin/start-jupyter") in instructions
    assert ("EXPOSE", "8888") in instructions
    assert re.search(r"^ARG BASE_IMAGE=nvcr\.io/nvidia/pytorch:\d\d\.\d\d-py3$", DOCKERFILE, re.MULTILINE)


def dependency_step() -> str:
    """The shell command of the Dockerfile's RUN that installs requirements-container.txt."""
    runs = [arguments for keyword, arguments in dockerfile_instructions() if keyword == "RUN"]
    steps = [command for command in runs if "requirements-container.txt" in command]
    assert len(steps) == 1, runs
    return steps[0]


def test_dockerfile_installs_the_container_requirements_with_the_containers_constraints_honoured() -> None:
    step = dependency_step()
    assert ("COPY", "requirements-container.txt ./") in dockerfile_instructions()
    assert "ARG CONTAINER_CONSTRAINT=/etc/pip/constraint.txt" in DOCKERFILE
    # Nothing that would let pip step over NVIDIA's pins: no emptied or edited constraint file, no PIP_CONSTRAINT
    # cleared, no --isolated (which ignores PIP_* variables), no installing without dependencies or upgrading.
    for forbidden in ("PIP_CONSTRAINT=", "--isolated", "--no-deps", "--upgrade", "-U ", "--force-reinstall", "sed "):
        assert forbidden not in step, forbidden
    assert not re.search(r"(>|rm |truncate ).*constraint\.txt", DOCKERFILE)
    assert "requirements.txt" not in step.replace("${work}/requirements.txt", "")  # not the exact pins


def test_container_requirements_pin_nothing_and_name_every_package_the_project_needs() -> None:
    requirements = [Requirement(line) for line in requirement_lines(CONTAINER_REQUIREMENTS)]
    assert all(not any(s.operator in ("==", "===", "<", "<=", "~=") for s in r.specifier) for r in requirements)
    names = {canonicalize_name(r.name) for r in requirements}
    assert len(names) == len(requirements)
    project = {
        canonicalize_name(Requirement(line).name)
        for name in ("requirements.txt", "requirements-dev.txt")
        for line in requirement_lines(REPO_ROOT / name) if not line.startswith("-r")
    }  # fmt: skip
    assert names == project - {"ruff"}  # the linter is not needed in the image
    # The packages NVIDIA's container ships carry no version at all: its constraint file picks it.
    shipped = {canonicalize_name(r.name) for r in requirements if not r.specifier}
    assert shipped == set(CONTAINER_SHIPS)
    # The install step checks that every one of them imports.
    checks = re.findall(r"python -c 'import ([^']+)'", dependency_step())  # the OpenCV probe, then the check
    imported = max(checks, key=len)
    expected = {MODULES.get(name, name.replace("-", "_")) for name in names} - {None}
    assert {module.strip() for module in imported.split(",")} == expected
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    assert {"datasets/*", "checkpoints", "results", ".venv", ".git"} <= set(ignored)


FAKE_PYTHON = r"""#!/usr/bin/env bash
# The container's python, for the Dockerfile's install step: "pip install" is recorded (it would need the
# container), an OpenCV-less base is played when NO_CV2=1, and everything else runs in the real interpreter.
set -euo pipefail
if [[ "$*" == "-m pip install "* ]]; then
    printf '%s\n' "${@:4}" > "${RECORD}/arguments"
    previous=""
    for argument in "${@:4}"; do
        case "${previous}" in
            --constraint) cat "${argument}" >> "${RECORD}/constraints" ;;
            --requirement) cp "${argument}" "${RECORD}/requirements" ;;
        esac
        previous="${argument}"
    done
    exit 0
fi
if [[ "$*" == "-c import cv2" && "${NO_CV2:-0}" == 1 ]]; then
    exit 1
fi
exec "${REAL_PYTHON}" "$@"
"""


@pytest.mark.parametrize("base", ["with OpenCV and a constraint file", "without either"])
def test_the_install_step_runs_with_the_constraints_and_keeps_the_containers_opencv(base: str, tmp_path: Path) -> None:
    """The Dockerfile's RUN, as Docker runs it (sh -c), with a stand-in python: it passes NVIDIA's constraint file
    and the installed torch/torchvision to pip, leaves out the OpenCV wheel where the base has cv2, and its import
    check passes with the project's real packages."""
    full = base.startswith("with ")
    for folder in ("bin", "record", "workdir", "tmp"):
        (tmp_path / folder).mkdir()
    fake = tmp_path / "bin" / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    (tmp_path / "workdir" / "requirements-container.txt").write_text(CONTAINER_REQUIREMENTS.read_text())
    nvidia = tmp_path / "constraint.txt"
    if full:
        nvidia.write_text("numpy==2.3.5\n")
    environment = {
        **os.environ, "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}", "REAL_PYTHON": sys.executable,
        "RECORD": str(tmp_path / "record"), "TMPDIR": str(tmp_path / "tmp"), "CONTAINER_CONSTRAINT": str(nvidia),
        "NO_CV2": "0" if full else "1",
    }  # fmt: skip
    done = subprocess.run(
        ["sh", "-c", dependency_step()], cwd=tmp_path / "workdir", env=environment, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    record = tmp_path / "record"
    arguments = (record / "arguments").read_text().splitlines()
    assert arguments.count("--constraint") == (2 if full else 1) and arguments[-2] == "--requirement"
    kept = f"torch=={importlib.metadata.version('torch')}\ntorchvision=={importlib.metadata.version('torchvision')}\n"
    assert (record / "constraints").read_text() == kept + ("numpy==2.3.5\n" if full else "")
    wanted = CONTAINER_REQUIREMENTS.read_text().splitlines()
    installed = (record / "requirements").read_text().splitlines()
    if full:  # only the OpenCV wheel is left out
        assert [line for line in wanted if line not in installed] == [
            line for line in wanted if line.startswith("opencv-python-headless")
        ]
    else:
        assert installed == wanted
    assert list((tmp_path / "tmp").glob("tmp.*")) == []  # its scratch folder (mktemp -d) is removed


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.parametrize("given", ["generated", "environment", "file"])
def test_jupyter_never_starts_without_a_token(given: str, tmp_path: Path) -> None:
    port = free_port()
    given_token = "" if given == "generated" else f"my-own-token-{secrets.token_hex(8)}"
    environment = {
        **os.environ, "JUPYTER_TOKEN": given_token, "JUPYTER_INTERNAL_PORT": str(port), "JUPYTER_PORT": str(port),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "HOME": str(tmp_path),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
    }  # fmt: skip
    if given == "file":  # as scripts/docker_run.sh mounts it
        (tmp_path / "secret").write_text(f"{given_token}\n")
        environment.update(JUPYTER_TOKEN="", JUPYTER_TOKEN_FILE=str(tmp_path / "secret"))
    log = tmp_path / "jupyter.log"
    with open(log, "w") as output:
        server = subprocess.Popen(
            ["bash", str(ENTRY_POINT)], cwd=tmp_path, env=environment, stdout=output, stderr=output
        )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if status(f"http://127.0.0.1:{port}/api") == 200:
                    break
            except OSError:
                time.sleep(0.3)
        else:
            pytest.fail(f"JupyterLab did not start:\n{log.read_text()[-2000:]}")
        token = given_token or re.search(r"JupyterLab token .*: ([0-9a-f]{48})", log.read_text()).group(1)
        assert status(f"http://127.0.0.1:{port}/api/contents") == 403  # no token: refused
        assert status(f"http://127.0.0.1:{port}/api/contents?token=wrong") == 403
        assert status(f"http://127.0.0.1:{port}/api/contents?token={token}") == 200
        # The server (bash exec'd into it) holds the token in neither its command line nor its environment.
        for seen in ("cmdline", "environ"):
            assert token.encode() not in Path(f"/proc/{server.pid}/{seen}").read_bytes(), seen
        if given != "generated":
            assert token not in log.read_text()  # a token of one's own is not printed
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_entry_point_runs_a_given_command_instead(tmp_path: Path) -> None:
    done = subprocess.run(["bash", str(ENTRY_POINT), "echo", "ran"], capture_output=True, text=True, check=True)
    assert done.stdout == "ran\n"


# A stand-in for NVIDIA's container: the packages it ships (those requirements-container.txt names without a
# version), at versions that differ from the project's exact pins, as an older or newer release would have them.
CONTAINER_SHIPS = {
    "torch": "2.13.0", "torchvision": "0.28.0", "numpy": "2.3.5", "pillow": "12.1.0", "scipy": "1.16.3",
    "matplotlib": "3.10.8", "tqdm": "4.67.1", "tensorboard": "2.20.0", "onnx": "1.20.1", "onnxscript": "0.5.6",
    "pytest": "8.4.2", "pytest-xdist": "3.7.0", "hypothesis": "6.150.0", "jupyterlab": "4.5.0",
    "ipykernel": "6.31.0", "nbclient": "0.10.2", "nbformat": "5.10.4",
}  # fmt: skip


def dry_run(folder: Path, constraint: Path, *requirements: str) -> tuple[subprocess.CompletedProcess, dict[str, str]]:
    """pip's dry run for the container's Python (3.12, wheels only) with ``constraint`` as PIP_CONSTRAINT, as
    NVIDIA's image sets it (it also replaces any constraint of this machine's pip configuration). Skips the test
    when the package index cannot be reached. Returns pip's result and {name: version} of what it would install."""
    folder.mkdir(parents=True, exist_ok=True)
    report = folder / "report.json"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--only-binary=:all:",
         "--python-version", "3.12", "--target", str(folder / "target"), "--report", str(report), *requirements],
        env={**os.environ, "PIP_CONSTRAINT": str(constraint)}, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if done.returncode != 0 and re.search(r"connection|resolve host|\bnetwork\b|timed out", done.stderr, re.I):
        pytest.skip(f"the package index cannot be reached: {done.stderr.strip().splitlines()[-1]}")
    installed = {}
    if done.returncode == 0:
        for item in json.loads(report.read_text())["install"]:
            installed[canonicalize_name(item["metadata"]["name"])] = item["metadata"]["version"]
    return done, installed


@pytest.fixture(scope="module")
def container_constraint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A constraint file shaped like the container's /etc/pip/constraint.txt: an exact pin of every Python package
    in the stand-in container, what it ships and everything that needs (made by resolving what it ships)."""
    folder = tmp_path_factory.mktemp("container")
    (folder / "none.txt").write_text("")
    done, installed = dry_run(folder, folder / "none.txt", *(f"{name}=={v}" for name, v in CONTAINER_SHIPS.items()))
    assert done.returncode == 0, done.stderr[-3000:]
    constraint = folder / "constraint.txt"
    constraint.write_text("".join(f"{name}=={version}\n" for name, version in sorted(installed.items())))
    return constraint


def old_exact_pins(folder: Path) -> Path:
    """What the image used to install: requirements.txt and requirements-dev.txt without torch/torchvision."""
    lines = [
        line for name in ("requirements.txt", "requirements-dev.txt") for line in requirement_lines(REPO_ROOT / name)
        if not re.match(r"^(-r |torch(vision)?==)", line)
    ]  # fmt: skip
    path = folder / "old-requirements.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_stand_in_container_differs_from_the_projects_pins() -> None:
    """The premise of the resolution tests: every package the stand-in ships is at another version than ours."""
    pins = dict(
        line.split("==") for name in ("requirements.txt", "requirements-dev.txt")
        for line in requirement_lines(REPO_ROOT / name) if "==" in line
    )  # fmt: skip
    assert all(pins[name] != version for name, version in CONTAINER_SHIPS.items())


def test_container_requirements_resolve_within_the_containers_constraints(
    container_constraint: Path, tmp_path: Path
) -> None:
    done, installed = dry_run(tmp_path, container_constraint, "-r", str(CONTAINER_REQUIREMENTS))
    assert done.returncode == 0, done.stderr[-3000:]
    pinned = dict(line.split("==") for line in container_constraint.read_text().splitlines())
    # Nothing the container has would change version (pip applied the constraint file) ...
    assert {name: v for name, v in installed.items() if name in pinned and pinned[name] != v} == {}
    assert {name: installed[name] for name in CONTAINER_SHIPS} == CONTAINER_SHIPS
    # ... and everything the project needs is there, the rest as new packages.
    names = {canonicalize_name(Requirement(line).name) for line in requirement_lines(CONTAINER_REQUIREMENTS)}
    assert names <= set(installed)
    assert {"scikit-image", "opencv-python-headless", "torch-fidelity", "onnxruntime"} <= set(installed) - set(pinned)


def test_the_old_exact_pins_conflict_with_the_containers_constraints(
    container_constraint: Path, tmp_path: Path
) -> None:
    """Why the container requirements exist: the same resolution fails for requirements.txt's exact pins, because
    of the container's constraints (without them, each pin has its wheel for Python 3.12)."""
    old = old_exact_pins(tmp_path)
    (tmp_path / "none.txt").write_text("")
    alone, _ = dry_run(tmp_path / "alone", tmp_path / "none.txt", "--no-deps", "-r", str(old))  # quick
    assert alone.returncode == 0, alone.stderr[-3000:]
    done, _ = dry_run(tmp_path / "container", container_constraint, "-r", str(old))
    assert done.returncode != 0 and "ResolutionImpossible" in done.stderr, done.stderr[-3000:]
    # pip names the culprit: one of our exact pins against the container's pin of the same package.
    culprits = re.findall(r"The user requested \(constraint\) (\S+)==(\S+)", done.stdout + done.stderr)
    assert culprits and all(CONTAINER_SHIPS.get(canonicalize_name(name)) == v for name, v in culprits), done.stdout
