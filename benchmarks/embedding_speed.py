"""Embedding training speed: ``tfsft train --task sentence-embedding`` against a Hugging Face
TF recipe, ``python -m benchmarks.embedding_speed --out F``.

Both train all-MiniLM-L6-v2 on the same 1,079 (question, paragraph) pairs of the SQuAD samples
(train and dev together), one epoch, batch 32, max_length 256, in-batch negatives with scale 20,
AdamW lr 5e-5 (weight decay 0.01, 10 % warm-up, linear decay, clipping at 1.0):

- ``tfsft``: ``tfsft.train`` with the task's defaults (``--precision auto``: bfloat16 matmuls on
  a CPU with AMX or AVX512-BF16, float32 elsewhere);
- ``tfsft-fp32``: the same in float32, the peer's precision;
- ``hf``: transformers ``TFBertModel`` with mean pooling and the in-batch loss written in a
  tf-keras ``train_step``, each batch padded to its longest text (``padding=True``), as the
  sentence-transformers recipe does in PyTorch.

Each recipe runs in a process of its own, ``--pairs`` times, alternating which goes first; the
table gives the median steady training examples/s (every step but the first, which traces)
and the ratio to the peer. The CPU model heads the output.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import common
from benchmarks.retrieval import SQUAD, squad_pairs, write_jsonl

RECIPES = ("tfsft", "tfsft-fp32", "hf")
MAX_LENGTH = 256
SCALE = 20.0


def all_pairs() -> list[dict[str, str]]:
    return (squad_pairs(SQUAD / "train-v1.1-sample.json")
            + squad_pairs(SQUAD / "dev-v1.1-sample.json"))


def run_tfsft(pairs: list[dict[str, str]], precision: str) -> dict:
    from tfsft.config import TrainConfig
    from tfsft.training.trainer import train

    with tempfile.TemporaryDirectory() as folder:
        train_file = write_jsonl(Path(folder) / "pairs.jsonl", pairs)
        result = train(TrainConfig(
            train=str(train_file), model="minilm-l6", output_dir=str(Path(folder) / "run"),
            task="sentence-embedding", epochs=1, batch_size=common.BATCH_SIZE,
            max_length=MAX_LENGTH, learning_rate=common.LEARNING_RATE,
            weight_decay=common.WEIGHT_DECAY, warmup_ratio=common.WARMUP_RATIO,
            clipnorm=common.CLIPNORM, validation_fraction=0.05, precision=precision,
            seed=common.SEED, tensorboard=False))
        summary = json.loads((result.run_dir / "run.json").read_text())
    steps = summary["steps_per_epoch"] * summary["epochs_run"]
    steady = summary["train_examples"] * (steps - 1) / steps  # all steps but the first
    return {"examples_per_second": round(steady / summary["seconds"]["steady_steps"], 2),
            "precision": summary["precision"], "steps": steps,
            "recall@1": result.metrics.get("recall@1")}


def run_hf(pairs: list[dict[str, str]]) -> dict:
    import numpy as np
    import tensorflow as tf
    import tf_keras
    from transformers import create_optimizer

    from benchmarks.training import hf_model_and_tokenizer

    encoder, tokenizer = hf_model_and_tokenizer(head="TFBertModel")
    rng = np.random.default_rng(common.SEED)
    train_pairs = [pairs[i] for i in rng.permutation(len(pairs))][:math.floor(len(pairs) * 0.95)]

    def batches():
        for begin in range(0, len(train_pairs), common.BATCH_SIZE):
            rows = train_pairs[begin:begin + common.BATCH_SIZE]
            yield tuple(dict(tokenizer([r[key] for r in rows], padding=True, truncation=True,
                                       max_length=MAX_LENGTH, return_tensors="np"))
                        for key in ("anchor", "positive"))

    spec = {name: tf.TensorSpec([None, None], tf.int32)
            for name in ("input_ids", "token_type_ids", "attention_mask")}
    dataset = tf.data.Dataset.from_generator(batches, output_signature=(spec, spec))

    class InBatch(tf_keras.Model):
        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def embed(self, inputs, training):
            hidden = self.bert(inputs, training=training).last_hidden_state
            mask = tf.cast(inputs["attention_mask"], hidden.dtype)[:, :, None]
            pooled = tf.reduce_sum(hidden * mask, 1) / tf.maximum(tf.reduce_sum(mask, 1), 1.0)
            return tf.math.l2_normalize(pooled, axis=-1)

        def train_step(self, data):
            anchors, positives = data
            with tf.GradientTape() as tape:
                scores = SCALE * tf.matmul(self.embed(anchors, True), self.embed(positives, True),
                                           transpose_b=True)
                labels = tf.range(tf.shape(scores)[0])
                loss = tf.reduce_mean(tf_keras.losses.sparse_categorical_crossentropy(
                    labels, scores, from_logits=True))
            self.optimizer.minimize(loss, self.trainable_variables, tape=tape)
            return {"loss": loss}

    steps = math.ceil(len(train_pairs) / common.BATCH_SIZE)
    optimizer, _ = create_optimizer(init_lr=common.LEARNING_RATE, num_train_steps=steps,
                                    num_warmup_steps=int(steps * common.WARMUP_RATIO),
                                    weight_decay_rate=common.WEIGHT_DECAY,
                                    adam_global_clipnorm=common.CLIPNORM)
    model = InBatch(encoder)
    model.compile(optimizer=optimizer)
    timer = common.step_timer(tf_keras.callbacks.Callback)
    model.fit(dataset, epochs=1, callbacks=[timer], verbose=2)
    steady = timer.steady(len(train_pairs), warmup=0)  # all steps but the first, as tfsft
    return {"examples_per_second": steady["examples_per_second"], "precision": "float32",
            "steps": steady["steps"]}


def run_recipe(recipe: str) -> dict:
    pairs = all_pairs()
    if recipe == "hf":
        return run_hf(pairs)
    return run_tfsft(pairs, "auto" if recipe == "tfsft" else "float32")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", choices=RECIPES, help="run one recipe (in this process)")
    parser.add_argument("--pairs", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.recipe:
        args.out.write_text(json.dumps(run_recipe(args.recipe)) + "\n")
        return
    runs: dict[str, list[dict]] = {recipe: [] for recipe in RECIPES}
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    for pair in range(args.pairs):
        order = RECIPES if pair % 2 == 0 else tuple(reversed(RECIPES))
        for recipe in order:
            with tempfile.NamedTemporaryFile(suffix=".json") as out:
                started = time.perf_counter()
                subprocess.run([sys.executable, "-m", "benchmarks.embedding_speed", "--recipe",
                                recipe, "--out", out.name], check=True, env=env,
                               stdout=subprocess.DEVNULL)
                result = json.loads(Path(out.name).read_text())
            result["wall_seconds"] = round(time.perf_counter() - started, 1)
            runs[recipe].append(result)
            print(recipe, result, flush=True)
    medians = {recipe: statistics.median(r["examples_per_second"] for r in results)
               for recipe, results in runs.items()}
    report = {"machine": common.machine(), "pairs": len(all_pairs()), "max_length": MAX_LENGTH,
              "batch_size": common.BATCH_SIZE, "runs": runs, "median_examples_per_second":
              medians, "ratio_tfsft_to_hf": round(medians["tfsft"] / medians["hf"], 2),
              "ratio_tfsft_fp32_to_hf": round(medians["tfsft-fp32"] / medians["hf"], 2)}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"CPU: {report['machine'].get('cpu')}, flags {report['machine'].get('cpu_flags')}")
    print("| recipe | precision | training examples/s (median) | vs hf |")
    print("|---|---|---|---|")
    for recipe in RECIPES:
        print(f"| {recipe} | {runs[recipe][0]['precision']} | {medians[recipe]:.1f} | "
              f"{medians[recipe] / medians['hf']:.2f}x |")


if __name__ == "__main__":
    main()
