#!/usr/bin/env bash
# Set up (with the peers: transformers + tf-keras) and run every benchmark on this machine.
# Needs SST-2 in ../shared/data/sst2 (or TFSFT_BENCHMARK_DATA=FOLDER holding sst2/).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test,peers
export TF_CPP_MIN_LOG_LEVEL=3 CUDA_VISIBLE_DEVICES=""
exec .venv/bin/python -m benchmarks "$@"
