#!/usr/bin/env bash
# Build the Cell CycleGAN image and run it with every GPU, this project folder mounted, and JupyterLab.
#
#   scripts/docker_run.sh                                  # JupyterLab on http://localhost:8888 (token printed)
#   scripts/docker_run.sh python train.py --dataroot ...   # run a command in the container instead
#
# Settings (environment): IMAGE (cell-cyclegan), PORT (8888), BIND (127.0.0.1: only this machine can connect;
# 0.0.0.0 to allow others, the token still required), JUPYTER_TOKEN (default: generated and printed),
# SHM_SIZE (16g: shared memory for the data-loader workers), DRY_RUN=1 (print the docker commands only).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
IMAGE="${IMAGE:-cell-cyclegan}"
PORT="${PORT:-8888}"
BIND="${BIND:-127.0.0.1}"

run() {
    if [[ "${DRY_RUN:-0}" == "1" ]]; then
        printf '%q ' "$@"
        echo
    else
        "$@"
    fi
}

terminal=()
if [[ -t 0 && -t 1 ]]; then
    terminal=(--interactive --tty)
fi

run docker build --tag "${IMAGE}" "${ROOT}"
run docker run --rm "${terminal[@]}" \
    --gpus all \
    --shm-size "${SHM_SIZE:-16g}" \
    --ulimit memlock=-1 --ulimit stack=67108864 \
    --publish "${BIND}:${PORT}:8888" \
    --env JUPYTER_TOKEN="${JUPYTER_TOKEN:-}" --env JUPYTER_PORT="${PORT}" \
    --volume "${ROOT}:/workspace/cell-cyclegan" \
    --workdir /workspace/cell-cyclegan \
    "${IMAGE}" "$@"
