#!/usr/bin/env bash
# Install dleem with its test dependencies into ./.venv (created if missing) and run the test suite.
# Never installs system packages: the browser test is skipped, with its reason, where Chromium is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test]"
set +e
.venv/bin/python -m pytest "$@"
code=$?
set -e
# pytest exits 5 when it collected no test: that is not a failure of the code under test.
if [ "$code" -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi
exit "$code"
