# Cell CycleGAN with JupyterLab, on NVIDIA's PyTorch container.
#
#   scripts/docker_run.sh        # build this image and start JupyterLab (token printed), GPUs and project mounted
#
# Base: NVIDIA's PyTorch release 26.09, a current release: Python 3.12 and a PyTorch 2.14 build (2.14.0a0) with
# the CUDA, cuDNN and NCCL it was built for, tuned for current GPUs, so torchrun and mixed precision work as shipped.
# Its torch and torchvision are kept: requirements.txt is installed without its torch/torchvision pins. (The test
# suite passes with torch 2.14.1 on Python 3.11 and 3.12; not yet inside the container.) Pass --build-arg
# BASE_IMAGE=... for another release.
ARG BASE_IMAGE=nvcr.io/nvidia/pytorch:26.09-py3
FROM ${BASE_IMAGE}

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /workspace/cell-cyclegan

# Dependencies first (their layer is rebuilt only when the requirement files change).
COPY requirements.txt requirements-dev.txt ./
RUN grep -vE '^torch(vision)?==' requirements.txt > /tmp/requirements-container.txt \
    && grep -vE '^(-r |torch(vision)?==)' requirements-dev.txt > /tmp/requirements-container-dev.txt \
    && python -m pip install -r /tmp/requirements-container.txt -r /tmp/requirements-container-dev.txt

COPY . .
COPY scripts/start_jupyter.sh /usr/local/bin/start-jupyter
EXPOSE 8888
# JupyterLab with a token (the file JUPYTER_TOKEN_FILE, JUPYTER_TOKEN, or a generated one that is printed); any
# other command runs instead.
ENTRYPOINT ["/usr/local/bin/start-jupyter"]
