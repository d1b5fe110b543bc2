#!/usr/bin/env bash
# Install dleem into ./.venv (created if missing) and run the whole workflow on the built-in synthetic sandstone.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e .
exec .venv/bin/dleem demo "$@"
