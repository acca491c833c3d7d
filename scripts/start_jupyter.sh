#!/usr/bin/env bash
# Container entry point: start JupyterLab, never without authentication; or run the command given instead.
#
# The token is $JUPYTER_TOKEN when it is set and not empty; otherwise a random one is made and printed.
set -euo pipefail

if [[ $# -gt 0 ]]; then
    exec "$@"
fi
if [[ -z "${JUPYTER_TOKEN:-}" ]]; then
    JUPYTER_TOKEN="$(python -c 'import secrets; print(secrets.token_hex(24))')"
    echo "JupyterLab token (set JUPYTER_TOKEN to choose your own): ${JUPYTER_TOKEN}"
fi
echo "Open http://localhost:${JUPYTER_PORT:-8888}/lab?token=${JUPYTER_TOKEN} (the port you published)"
export JUPYTER_TOKEN  # Jupyter Server takes its token from this variable
exec jupyter lab --ip=0.0.0.0 --port="${JUPYTER_INTERNAL_PORT:-8888}" --no-browser --allow-root
