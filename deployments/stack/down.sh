#!/usr/bin/env bash
# Stop the team stack that up.sh started under DIR (PostgreSQL last; its data stays).
# Python: $PYTHON, else the repository's .venv (make install), else python3 (needs '.[stack]').
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/../../.venv/bin/python"
[[ -x "$venv" ]] || venv=python3
exec "${PYTHON:-$venv}" "$here/stack.py" down "$@"
