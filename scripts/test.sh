#!/usr/bin/env bash
# The project's test command, exactly as README.md states it; .ci/run calls this file.
# It runs the suite twice: with the compiled hot paths that `pip install -e .` builds
# (RESEAU_PATCH_EXPECT_COMPILED=1: a test fails if they are silently not in use), then with
# the pure-Python modules (RESEAU_PATCH_PURE_PYTHON=1), which must behave the same.
# RESEAU_PATCH_EXPECT_COMPILED=0 runs it on a machine without a C compiler.
set -euo pipefail
cd "$(dirname "$0")/.."
export RESEAU_PATCH_EXPECT_COMPILED=${RESEAU_PATCH_EXPECT_COMPILED:-1}
rc=0
echo "== tests, compiled hot paths"
python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && .venv/bin/python -m pytest -q "$@" \
    || rc=$?
echo "== tests, pure Python (RESEAU_PATCH_PURE_PYTHON=1)"
RESEAU_PATCH_PURE_PYTHON=1 RESEAU_PATCH_EXPECT_COMPILED=0 .venv/bin/python -m pytest -q "$@" \
    || rc=$?
exit "$rc"
