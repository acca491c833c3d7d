#!/usr/bin/env bash
# Build the Cell CycleGAN image and run it with every GPU, this project folder mounted, and JupyterLab.
#
#   scripts/docker_run.sh                                  # JupyterLab on http://localhost:8888 (token printed)
#   scripts/docker_run.sh python train.py --dataroot ...   # run a command in the container instead
#
# Settings (environment): IMAGE (cell-cyclegan), PORT (8888), BIND (127.0.0.1: only this machine can connect;
# 0.0.0.0 to allow others, the token still required), SHM_SIZE (16g: shared memory for the data-loader workers),
# DRY_RUN=1 (print the docker commands only), and your own JupyterLab token, if you choose one:
#   JUPYTER_TOKEN_FILE  a file holding it (the safest way: the token is in no environment variable at all), or
#   JUPYTER_TOKEN       the token itself.
# Either way it reaches the container as a read-only file mount, never as a docker argument or a container
# environment variable (which ps and docker inspect would show): JUPYTER_TOKEN is written to a private file
# (mode 0600, removed when the container stops). Without either, the container makes a token and prints it.
#
# The container runs as you (your user and group ids), not as root, so what it writes into this folder
# (checkpoints, results, notebooks) is yours on the host. CONTAINER_USER (uid:gid) sets another: 0:0 under
# rootless Docker or Podman, whose root in the container already is you on the host.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
IMAGE="${IMAGE:-cell-cyclegan}"
PORT="${PORT:-8888}"
BIND="${BIND:-127.0.0.1}"
SECRET=/run/secrets/jupyter_token

run() {
    if [[ "${DRY_RUN:-0}" == "1" ]]; then
        printf '%q ' "$@"
        echo
    else
        "$@"
    fi
}

private=""
remove_private() {
    if [[ -n "${private}" ]]; then
        rm -rf -- "${private}"
    fi
}
trap remove_private EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

token_file=""
if [[ -n "${JUPYTER_TOKEN_FILE:-}" ]]; then
    if [[ ! -s "${JUPYTER_TOKEN_FILE}" ]]; then
        echo "ERROR JUPYTER_TOKEN_FILE ${JUPYTER_TOKEN_FILE} is missing or empty; put your token in it" >&2
        exit 1
    fi
    token_file="$(cd "$(dirname "${JUPYTER_TOKEN_FILE}")" && pwd)/$(basename "${JUPYTER_TOKEN_FILE}")"
elif [[ -n "${JUPYTER_TOKEN:-}" ]]; then
    private="$(mktemp -d)"  # mode 0700
    token_file="${private}/jupyter_token"
    (umask 077 && printf '%s\n' "${JUPYTER_TOKEN}" > "${token_file}")  # mode 0600; printf is a builtin: no ps entry
fi
unset JUPYTER_TOKEN  # not handed on to docker's own environment either
token=()
if [[ -n "${token_file}" ]]; then
    token=(--volume "${token_file}:${SECRET}:ro" --env "JUPYTER_TOKEN_FILE=${SECRET}")
fi

terminal=()
if [[ -t 0 && -t 1 ]]; then
    terminal=(--interactive --tty)
fi

# Your ids most likely have no entry in the image's /etc/passwd: Docker would then give the container HOME=/, which
# is not writable (Jupyter, pip --user, matplotlib and torch keep their files under HOME), and no user name (Python's
# getpass.getuser(), which torch.compile's cache directory needs, would fail). HOME=/tmp is writable by anyone.
user=(--user "${CONTAINER_USER:-$(id -u):$(id -g)}" --env HOME=/tmp --env "USER=$(id -un 2>/dev/null || id -u)")

run docker build --tag "${IMAGE}" "${ROOT}"
# Not exec: the private token file is removed when the container stops.
run docker run --rm "${terminal[@]}" \
    --gpus all \
    --shm-size "${SHM_SIZE:-16g}" \
    --ulimit memlock=-1 --ulimit stack=67108864 \
    --publish "${BIND}:${PORT}:8888" \
    "${user[@]}" \
    "${token[@]}" --env JUPYTER_PORT="${PORT}" \
    --volume "${ROOT}:/workspace/cell-cyclegan" \
    --workdir /workspace/cell-cyclegan \
    "${IMAGE}" "$@"
