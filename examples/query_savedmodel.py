"""Load an exported SavedModel the way TensorFlow Serving does and classify raw strings.

    python examples/query_savedmodel.py saved_models/NAME "some text" ["more text" ...]
"""

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402
import tensorflow_text  # noqa: E402,F401  (registers the tokenizer ops the graph uses)

base, texts = Path(sys.argv[1]), sys.argv[2:]
version = max((p for p in base.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
serve = tf.saved_model.load(str(version)).signatures["serving_default"]
outputs = serve(text=tf.constant(texts))
for i, text in enumerate(texts):
    print(json.dumps({"text": text, "label": outputs["label"][i].numpy().decode(),
                      "score": float(tf.reduce_max(outputs["probabilities"][i]))}))
print(f"(served by {version})")
