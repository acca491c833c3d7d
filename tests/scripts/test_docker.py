"""The Docker set-up, as far as it runs without Docker: the run script's command line, the Jupyter entry
point's authentication, the Dockerfile's requirements and build context, and that every pin resolves."""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.docker

RUN_SCRIPT = REPO_ROOT / "scripts" / "docker_run.sh"
ENTRY_POINT = REPO_ROOT / "scripts" / "start_jupyter.sh"
DOCKERFILE = (REPO_ROOT / "Dockerfile").read_text(encoding="utf-8")


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
    ):  # fmt: skip
        assert part in run, part
    assert run.split()[-4:] == ["cell-cyclegan", "python", "train.py", "--help"]
    assert "secret-in-dry-run" not in output


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


def test_dockerfile_keeps_the_containers_torch_and_installs_everything_else() -> None:
    assert re.search(r"^ARG BASE_IMAGE=nvcr\.io/nvidia/pytorch:\d\d\.\d\d-py3$", DOCKERFILE, re.MULTILINE)
    assert "EXPOSE 8888" in DOCKERFILE and "start-jupyter" in DOCKERFILE
    filters = re.findall(r"grep -vE '([^']+)' (requirements(?:-dev)?\.txt)", DOCKERFILE)
    assert [name for _, name in filters] == ["requirements.txt", "requirements-dev.txt"]
    for pattern, name in filters:
        lines = [line for line in (REPO_ROOT / name).read_text().splitlines() if line and not line.startswith("#")]
        kept = [line for line in lines if not re.search(pattern, line)]
        dropped = sorted(set(lines) - set(kept))
        assert all(re.match(r"^(torch|torchvision)==|^-r ", line) for line in dropped), dropped
        assert any(line.startswith("torch-fidelity==") for line in kept) or name != "requirements.txt"
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    assert {"datasets/*", "checkpoints", "results", ".venv", ".git"} <= set(ignored)


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


def test_every_pinned_requirement_resolves_for_the_containers_python(tmp_path: Path) -> None:
    """pip's dry run against the package index, as the Docker build would install them (needs the index)."""
    requirements = tmp_path / "requirements.txt"
    lines = (REPO_ROOT / "requirements.txt").read_text().splitlines()
    lines += [
        line for line in (REPO_ROOT / "requirements-dev.txt").read_text().splitlines() if not line.startswith("-r")
    ]
    requirements.write_text("\n".join(line for line in lines if not re.match(r"^torch(vision)?==", line)) + "\n")
    report = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-deps", "--quiet",
         "--only-binary=:all:", "--python-version", "3.12", "--target", str(tmp_path / "target"), "--report", str(report),
         "-r", str(requirements)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if done.returncode != 0 and re.search(r"connection|resolve host|network|timed out", done.stderr, re.IGNORECASE):
        pytest.skip(f"the package index cannot be reached: {done.stderr.strip().splitlines()[-1]}")
    assert done.returncode == 0, done.stderr[-3000:]
    installed = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    pinned = {
        line.split("==")[0].lower() for line in requirements.read_text().splitlines() if "==" in line and line[0] != "#"
    }
    assert {name.replace("_", "-") for name in pinned} <= {name.replace("_", "-") for name in installed}
