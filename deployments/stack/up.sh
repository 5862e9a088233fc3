#!/usr/bin/env bash
# Start the team stack on 127.0.0.1 with its state under DIR, then print `export` lines:
#   eval "$(deployments/stack/up.sh DIR)"
# Python: $PYTHON, else the repository's .venv (make install), else python3 (needs '.[stack]').
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/../../.venv/bin/python"
[[ -x "$venv" ]] || venv=python3
exec "${PYTHON:-$venv}" "$here/stack.py" up "$@"
