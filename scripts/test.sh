#!/usr/bin/env bash
# The project's test command, exactly as README.md states it; .ci/run calls this file.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && .venv/bin/python -m pytest -q "$@"
