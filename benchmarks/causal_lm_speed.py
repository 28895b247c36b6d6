"""Causal-LM training speed: tfsft against keras-hub's own ``Llama3CausalLM.fit``, same data.

Recipes (one per process; the same SST-2 chat examples, batch size, LoRA rank and float32):

- ``tfsft-lora`` / ``tfsft-full``: ``tfsft.train`` with ``--task causal-lm`` (length-grouped
  batches padded per batch, logits at the response positions only);
- ``keras-hub-lora`` / ``keras-hub-full``: keras-hub's documented recipe: ``Llama3CausalLM``
  with its preprocessor (``sequence_length`` = the longest example, every batch padded to it),
  ``backbone.enable_lora(rank)``, ``compile`` with ``SparseCategoricalCrossentropy`` and
  ``fit`` on the rendered conversations (its loss covers every token).

Tokens/s counts the real (unpadded) tokens of the conversations per second of steady training
(each epoch's first step, which traces the graph, left out), with the same count for both.

    python -m benchmarks.causal_lm_speed tfsft-lora --out benchmarks/results/causal_lm_tfsft-lora.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from benchmarks.common import DATA, machine, peak_rss_mb
from benchmarks.sst2_chat import sst2_chat_rows, write_jsonl

RECIPES = ("tfsft-lora", "keras-hub-lora", "tfsft-full", "keras-hub-full")
MODEL = "smollm2-135m"
EXAMPLES = 256
BATCH_SIZE = 8
LORA_RANK = 8
LEARNING_RATE = {"lora": 5e-4, "full": 5e-5}


class StepTimer:
    """Seconds of each training step (a Keras callback)."""

    def __init__(self):
        import keras

        timer = self

        class Callback(keras.callbacks.Callback):
            def on_train_batch_begin(self, batch, logs=None):
                timer._begin = time.perf_counter()

            def on_train_batch_end(self, batch, logs=None):
                timer.steps.append(time.perf_counter() - timer._begin)

        self.steps: list[float] = []
        self._begin = 0.0
        self.callback = Callback()


def conversation_tokens(rows: list[dict[str, str]]) -> tuple[list[str], list[int]]:
    """The rendered conversations and their token counts (tfsft's tokenizer)."""
    from tfsft.tasks.causal_lm.chat_tokenizer import ChatTokenizer

    tokenizer = ChatTokenizer.from_pretrained(MODEL)
    texts, counts = [], []
    for row in rows:
        messages = [{"role": "user", "content": row["prompt"]},
                    {"role": "assistant", "content": row["response"]}]
        texts.append(tokenizer.render(messages, add_generation_prompt=False))
        counts.append(len(tokenizer.encode_chat(messages)[0]))
    return texts, counts


def run_tfsft(rows, mode: str, work: Path, validation_rows) -> dict:
    from tfsft.config import TrainConfig
    from tfsft.training.trainer import train

    train_file, validation_file = work / "train.jsonl", work / "validation.jsonl"
    write_jsonl(rows, train_file)
    write_jsonl(validation_rows, validation_file)
    timer = StepTimer()
    config = TrainConfig(train=str(train_file), validation=str(validation_file), model=MODEL,
                         output_dir=str(work / "run"), task="causal-lm", epochs=1,
                         batch_size=BATCH_SIZE, learning_rate=LEARNING_RATE[mode],
                         max_length=512, precision="float32", tensorboard=False,
                         backup_every_steps=None, early_stopping_patience=None,
                         task_options={"lora_rank": LORA_RANK if mode == "lora" else 0,
                                       "eval_generations": 0})
    result = train(config, callbacks=[timer.callback])
    return {"steps": timer.steps, "loss": result.history["loss"][-1]}


def run_keras_hub(rows, mode: str, texts: list[str], longest: int) -> dict:
    import keras
    import keras_hub

    from tfsft.models.checkpoints import resolve_checkpoint

    folder = str(resolve_checkpoint(MODEL))
    keras.utils.set_random_seed(42)
    preprocessor = keras_hub.models.Llama3CausalLMPreprocessor.from_preset(
        folder, sequence_length=longest)
    model = keras_hub.models.Llama3CausalLM.from_preset(folder, preprocessor=preprocessor,
                                                        dtype="float32")
    if mode == "lora":
        model.backbone.enable_lora(rank=LORA_RANK)
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  optimizer=keras.optimizers.AdamW(learning_rate=LEARNING_RATE[mode],
                                                   weight_decay=0.01),
                  weighted_metrics=[keras.metrics.SparseCategoricalAccuracy()])
    timer = StepTimer()
    history = model.fit(texts, epochs=1, batch_size=BATCH_SIZE, callbacks=[timer.callback],
                        verbose=2)
    return {"steps": timer.steps, "loss": history.history["loss"][-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", choices=RECIPES)
    parser.add_argument("--examples", type=int, default=EXAMPLES)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    rows = sst2_chat_rows(DATA / "train.tsv", args.examples + 8)
    rows, validation_rows = rows[:args.examples], rows[args.examples:]  # validation: tfsft only
    texts, counts = conversation_tokens(rows)
    framework, mode = args.recipe.rsplit("-", 1)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        if framework == "tfsft":
            measured = run_tfsft(rows, mode, Path(work), validation_rows)
        else:
            measured = run_keras_hub(rows, mode, texts, longest=max(counts) + 2)
    steady = measured["steps"][1:]
    tokens = sum(counts)
    steady_tokens = tokens * len(steady) / max(len(measured["steps"]), 1)
    result = {
        "recipe": args.recipe, "model": MODEL, "machine": machine(), "examples": len(rows),
        "batch_size": BATCH_SIZE, "mode": mode, "lora_rank": LORA_RANK if mode == "lora" else None,
        "real_tokens": tokens, "longest_example_tokens": max(counts),
        "steps": len(measured["steps"]), "first_step_seconds": round(measured["steps"][0], 2),
        "steady_seconds": round(sum(steady), 2),
        "tokens_per_second": round(steady_tokens / sum(steady), 1),
        "final_loss": round(float(measured["loss"]), 4),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "peak_rss_mb": round(peak_rss_mb()),
    }
    print(json.dumps(result))
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()


def summarize(results: Path) -> str:
    """The tokens/s table of the recipes found in ``results`` (ratios against keras-hub), also
    written as ``causal_lm_speed.json``."""
    found = {r: json.loads((results / f"causal_lm_{r}.json").read_text()) for r in RECIPES
             if (results / f"causal_lm_{r}.json").exists()}
    lines = ["| recipe | tokens/s | × keras-hub | first step s | final loss | peak RSS MB |",
             "|---|---|---|---|---|---|"]
    table = {}
    for recipe, row in found.items():
        mode = row["mode"]
        peer = found.get(f"keras-hub-{mode}")
        ratio = round(row["tokens_per_second"] / peer["tokens_per_second"], 2) if peer else None
        table[recipe] = {"tokens_per_second": row["tokens_per_second"], "vs_keras_hub": ratio,
                         "cpu": row["machine"].get("cpu")}
        lines.append(f"| {recipe} | {row['tokens_per_second']} | {ratio} | "
                     f"{row['first_step_seconds']} | {row['final_loss']} | {row['peak_rss_mb']} |")
    (results / "causal_lm_speed.json").write_text(json.dumps(table, indent=2) + "\n")
    return "\n".join(lines)
