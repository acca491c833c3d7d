#!/usr/bin/env bash
# Container entry point: start JupyterLab, never without authentication; or run the command given instead.
#
# The token comes from, first found: the file $JUPYTER_TOKEN_FILE (the secret scripts/docker_run.sh mounts
# read-only), $JUPYTER_TOKEN, or a random one made and printed here. Jupyter reads it from a file through a
# config file made here, so it is on no command line (ps) and in no environment of the server or its kernels.
set -euo pipefail

# Run as a user the image does not know (docker run --user without the HOME that scripts/docker_run.sh sets), the
# container gets HOME=/, which that user cannot write: Jupyter, IPython and pip keep their files under HOME.
if [[ ! -w "${HOME:-/}" ]]; then
    export HOME=/tmp
fi
if [[ $# -gt 0 ]]; then
    exec "$@"
fi
umask 077
private="$(mktemp -d)"  # mode 0700: the config file, and the token file when none was mounted
url="http://localhost:${JUPYTER_PORT:-8888}/lab"
if [[ -n "${JUPYTER_TOKEN_FILE:-}" ]]; then
    if [[ ! -r "${JUPYTER_TOKEN_FILE}" || -z "$(tr -d '[:space:]' < "${JUPYTER_TOKEN_FILE}")" ]]; then
        echo "ERROR JUPYTER_TOKEN_FILE ${JUPYTER_TOKEN_FILE} is missing, unreadable or empty; put your token in it" >&2
        exit 1
    fi
    echo "Open ${url} (the port you published) and enter the token of your token file"
elif [[ -n "${JUPYTER_TOKEN:-}" ]]; then
    JUPYTER_TOKEN_FILE="${private}/token"
    printf '%s\n' "${JUPYTER_TOKEN}" > "${JUPYTER_TOKEN_FILE}"  # printf is a shell builtin: no command line
    echo "Open ${url} (the port you published) and enter your JUPYTER_TOKEN"
else
    JUPYTER_TOKEN_FILE="${private}/token"
    python -c 'import secrets; print(secrets.token_hex(24))' > "${JUPYTER_TOKEN_FILE}"
    token="$(< "${JUPYTER_TOKEN_FILE}")"
    echo "JupyterLab token (set JUPYTER_TOKEN_FILE or JUPYTER_TOKEN to choose your own): ${token}"
    echo "Open ${url}?token=${token} (the port you published)"
fi
cat > "${private}/jupyter_token_config.py" << 'CONFIG'
import os
from pathlib import Path

c.IdentityProvider.token = Path(os.environ["JUPYTER_TOKEN_FILE"]).read_text().strip()  # noqa: F821
CONFIG
export JUPYTER_TOKEN_FILE  # a path, not the token
unset JUPYTER_TOKEN
exec jupyter lab --config="${private}/jupyter_token_config.py" \
    --ip=0.0.0.0 --port="${JUPYTER_INTERNAL_PORT:-8888}" --no-browser --allow-root
