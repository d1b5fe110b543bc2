#!/usr/bin/env bash
# Install dleem with its test dependencies and the napari plugin's into ./.venv (created if
# missing) and run the test suite. Never installs system packages: the browser test is
# skipped, with its reason, where Chromium is absent, and the napari tests where Qt cannot
# start. Where xvfb-run exists the tests run under it, so Qt and OpenGL get a display.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test,napari]"
run=(.venv/bin/python -m pytest "$@")
if [ -z "${DISPLAY:-}" ] && command -v xvfb-run >/dev/null 2>&1; then
  run=(xvfb-run -a -s "-screen 0 1280x1024x24" "${run[@]}")
fi
set +e
"${run[@]}"
code=$?
set -e
# pytest exits 5 when it collected no test: that is not a failure of the code under test.
if [ "$code" -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi
exit "$code"
