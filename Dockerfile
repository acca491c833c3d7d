# Cell CycleGAN with JupyterLab, on NVIDIA's PyTorch container.
#
#   scripts/docker_run.sh        # build this image and start JupyterLab (token printed), GPUs and project mounted
#
# Base: NVIDIA's PyTorch release 26.09: Python 3.12 and a PyTorch 2.14 build (2.14.0a0) with the CUDA, cuDNN and
# NCCL it was built for, tuned for current GPUs, so torchrun and mixed precision work as shipped. Pass
# --build-arg BASE_IMAGE=... for another release. This image has never been built where the project is
# developed (no Docker there); see the README for what the tests check instead.
ARG BASE_IMAGE=nvcr.io/nvidia/pytorch:26.09-py3
FROM ${BASE_IMAGE}
# NVIDIA's pip constraint file (release 25.03 on): one exact pin for every Python package the container ships.
# The base image also names it in PIP_CONSTRAINT, which pip reads; it is passed explicitly as well so that a
# release that stops setting the variable still keeps its packages. (A build argument only so that the tests can
# run the install step below against a constraint file of theirs.)
ARG CONTAINER_CONSTRAINT=/etc/pip/constraint.txt

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /workspace/cell-cyclegan

# Dependencies first (their layer is rebuilt only when the file changes): requirements-container.txt names what
# the project needs and pins nothing the container ships, so pip resolves it within the container's constraints.
# - torch and torchvision are also pinned to the versions installed here: they are NVIDIA's CUDA builds, and a
#   release whose constraint file is empty or lacks them must not get PyPI's builds in their place.
# - NGC images have carried an OpenCV built from source (the cv2 module, unknown to pip); the opencv-python-headless
#   wheel installed over it breaks `import cv2` (cv2.dnn has no DictValue), so the wheel is left out wherever the
#   container can already import cv2.
# - Then every module the project imports must import, so a broken environment fails the build, not a training run.
COPY requirements-container.txt ./
RUN set -eu; \
    work="$(mktemp -d)"; \
    python -m pip list --format=freeze | grep -iE '^torch(vision)?==' > "${work}/keep.txt" || true; \
    set -- --constraint "${work}/keep.txt"; \
    if [ -f "${CONTAINER_CONSTRAINT}" ]; then set -- "$@" --constraint "${CONTAINER_CONSTRAINT}"; fi; \
    if python -c 'import cv2' 2>/dev/null; then \
        grep -v '^opencv-python-headless' requirements-container.txt > "${work}/requirements.txt"; \
    else \
        cp requirements-container.txt "${work}/requirements.txt"; \
    fi; \
    python -m pip install "$@" --requirement "${work}/requirements.txt"; \
    python -c 'import cv2, dominate, hypothesis, imagecodecs, ipykernel, ipywidgets, jupyterlab, matplotlib, \
        nbclient, nbformat, numpy, onnx, onnxruntime, onnxscript, openslide, PIL, pytest, scipy, skimage, \
        tensorboard, tifffile, torch, torch_fidelity, torchvision, tqdm, xdist'; \
    rm -rf "${work}"

COPY . .
COPY scripts/start_jupyter.sh /usr/local/bin/start-jupyter
EXPOSE 8888
# NVIDIA's entry point (/opt/nvidia/nvidia_entrypoint.sh: its banner, driver and shared-memory checks, then the
# command) is kept: this file sets no ENTRYPOINT, only the default command. JupyterLab with a token (the file
# JUPYTER_TOKEN_FILE, JUPYTER_TOKEN, or a generated one that is printed); a command given to docker run
# replaces it and runs through NVIDIA's entry point the same way.
CMD ["start-jupyter"]
