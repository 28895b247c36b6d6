#!/usr/bin/env bash
# Command 2: set up and run the default test suite (tests marked slow are left out; run them
# with `.venv/bin/python -m pytest -m slow`). Two pytest workers, each taking whole test files
# (a file's trained runs are shared by its tests); TFSFT_TEST_WORKERS=0 runs in one process.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test,peers
export TF_CPP_MIN_LOG_LEVEL=3 CUDA_VISIBLE_DEVICES=""
exec .venv/bin/python -m pytest -m "not slow" -n "${TFSFT_TEST_WORKERS:-2}" --dist loadfile "$@"
