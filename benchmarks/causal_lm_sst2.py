"""SST-2 as generative classification: greedy exact match before and after LoRA tuning.

Zero-shot: the untuned checkpoint answers every dev prompt; tuned: ``tfsft train --task
causal-lm`` on the first ``--train-rows`` training sentences, evaluated on all dev sentences
(its run folder's ``metrics.json``). Writes both numbers and the run's speed to ``--out``.

    python -m benchmarks.causal_lm_sst2 --data ../shared/data/sst2 \\
        --out benchmarks/results/causal_lm_sst2.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine
from benchmarks.sst2_chat import sst2_chat_rows, write_jsonl


def zero_shot(model_name: str, dev_file: Path, max_length: int, batch_size: int) -> dict:
    """Exact match of the untuned model's greedy answers on every dev prompt."""
    from tfsft.models.checkpoints import resolve_checkpoint
    from tfsft.tasks.base import create_task

    task = create_task("causal-lm", {"lora_rank": 0, "eval_generations": 10 ** 9})
    checkpoint = resolve_checkpoint(model_name)
    tokenizer = task.data.load_tokenizer(checkpoint, max_length)
    task.bind(tokenizer, max_length)
    examples = task.data.read(dev_file, role="eval")
    encoded = task.data.encode(tokenizer, examples, max_length)
    model = task.modeling.build(checkpoint, dropout=0.0, dtype="float32")
    started = time.perf_counter()
    outputs = task.evaluation.outputs(model, encoded, batch_size=batch_size, verbose=1)
    metrics = task.evaluation.evaluate(examples, outputs)
    metrics["seconds"] = round(time.perf_counter() - started, 1)
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/sst2")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--train-rows", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--learning-rate", type=float,
                        help="default: the task's (LoRA: 5e-4, cosine decay)")
    parser.add_argument("--lr-schedule", help="default: the task's (LoRA: cosine)")
    parser.add_argument("--lora-rank", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--run-dir", help="run folder to write (default: a temporary one)")
    parser.add_argument("--skip-zero-shot", action="store_true")
    parser.add_argument("--out", default="benchmarks/results/causal_lm_sst2.json")
    args = parser.parse_args()

    from tfsft.config import TrainConfig
    from tfsft.training.trainer import train

    work = Path(tempfile.mkdtemp(prefix="causal-lm-sst2-"))
    train_file, dev_file = work / "train.jsonl", work / "dev.jsonl"
    write_jsonl(sst2_chat_rows(Path(args.data) / "train.tsv", args.train_rows), train_file)
    write_jsonl(sst2_chat_rows(Path(args.data) / "dev.tsv"), dev_file)
    result: dict = {"machine": machine(), "model": args.model,
                    "train_rows": args.train_rows, "dev_rows": 872}
    if not args.skip_zero_shot:
        result["zero_shot"] = zero_shot(args.model, dev_file, args.max_length, 16)
        print("zero-shot exact match", result["zero_shot"]["exact_match"], flush=True)
    run_dir = Path(args.run_dir) if args.run_dir else work / "run"
    config = TrainConfig(train=str(train_file), validation=str(dev_file), model=args.model,
                         output_dir=str(run_dir), task="causal-lm",
                         task_options={"lora_rank": args.lora_rank,
                                       "eval_generations": 10 ** 9},
                         epochs=args.epochs, batch_size=args.batch_size,
                         learning_rate=args.learning_rate, lr_schedule=args.lr_schedule,
                         max_length=args.max_length, overwrite=True)
    trained = train(config)
    result["tuned"] = {k: v for k, v in trained.metrics.items() if k != "samples"}
    result["recipe"] = {k: getattr(config, k) for k in (
        "epochs", "batch_size", "learning_rate", "lr_schedule", "warmup_ratio", "weight_decay",
        "max_length")}
    result["tuned_run"] = {k: trained.summary[k] for k in (
        "fit_seconds", "epochs_run", "train_tokens", "train_examples_per_second",
        "train_examples_per_second_after_first_step", "precision", "wall_seconds")}
    result["run_dir"] = str(run_dir)
    print(json.dumps({"zero_shot_exact_match": result.get("zero_shot", {}).get("exact_match"),
                      "tuned_exact_match": result["tuned"].get("exact_match")}))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
