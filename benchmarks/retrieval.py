"""Question -> paragraph retrieval on the SQuAD samples: tuned vs untuned embeddings vs BM25.

    python -m benchmarks.retrieval --out benchmarks/results/retrieval.json

``tfsft train --task sentence-embedding`` (all its defaults: in-batch negatives, max_length 256,
all-MiniLM-L6-v2) on the train sample's (question, paragraph) pairs, validated on the dev
sample: every dev question searches every dev paragraph. Beside it, on the same dev split: the
untuned all-MiniLM-L6-v2 (the checkpoint's own mean-pooled, normalised vectors) and BM25
(``bm25s``, Lucene scoring, k1 1.5, b 0.75, English stop words). Each row: recall@1/5/10,
MRR@10, nDCG@10; the tuned run's training speed and wall time. With ``--seeds 42 1 2`` the
tuned model is trained once per seed and the table adds the mean and standard deviation over
seeds. ``--export`` also exports the first seed's run to every format and quantized variant
(SavedModel with raw strings, TFLite token ids and raw text, ONNX; fp16, int8-dynamic,
int8-static) and records each artifact's parity and recall@1 beside the Keras model's. Writes JSON
(``--out``) and prints tables.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import REPO, machine

SQUAD = REPO.parent / "shared" / "data" / "squad-sample"


def squad_pairs(path: Path) -> list[dict[str, str]]:
    """One (question, its paragraph) pair per SQuAD question."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return [{"anchor": qa["question"], "positive": paragraph["context"]}
            for article in data["data"] for paragraph in article["paragraphs"]
            for qa in paragraph["qas"]]


def write_jsonl(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def bm25(dev: list[dict[str, str]]) -> dict:
    """Retrieval metrics of BM25 over the distinct dev paragraphs."""
    import bm25s

    from tfsft.tasks.sentence_embedding.metrics import retrieval_metrics

    corpus = list(dict.fromkeys(row["positive"] for row in dev))
    index = {text: i for i, text in enumerate(corpus)}
    retriever = bm25s.BM25(k1=1.5, b=0.75)
    retriever.index(bm25s.tokenize(corpus, stopwords="en", show_progress=False),
                    show_progress=False)
    documents, _ = retriever.retrieve(bm25s.tokenize([r["anchor"] for r in dev], stopwords="en",
                                                     show_progress=False),
                                      k=len(corpus), show_progress=False)
    ranks = np.array([1 + list(row).index(index[r["positive"]])
                      for row, r in zip(documents, dev, strict=True)])
    return retrieval_metrics(ranks)


def untuned(dev_file: Path, model: str) -> dict:
    """Retrieval metrics of the checkpoint as it was pretrained."""
    from tfsft.tasks.base import create_task

    task = create_task("sentence-embedding")
    max_length = task.data.default_max_length
    tokenizer = task.data.load_tokenizer(_checkpoint(model), max_length)
    examples = task.data.read(dev_file, role="eval")
    encoder = task.modeling.build(_checkpoint(model), dropout=0.0, dtype="float32")
    outputs = task.evaluation.outputs(encoder, task.data.encode(tokenizer, examples, max_length))
    return task.evaluation.evaluate(examples, outputs)


def _checkpoint(model: str) -> Path:
    from tfsft.models.checkpoints import resolve_checkpoint

    return resolve_checkpoint(model)


def exported(run_dir: Path, folder: Path) -> list[dict]:
    """Every artifact of the run, checked on its held-out pairs (published even where a
    check fails, so that the whole table is seen)."""
    from exporters import export

    summary = export(run_dir, folder / "export", formats=("savedmodel", "tflite", "onnx"),
                     quantize=("fp16", "int8-dynamic", "int8-static"), allow_mismatch=True)
    keys = ("artifact", "variant", "size_bytes", "max_abs_diff", "quality", "reference_quality",
            "quality_loss", "quality_rule", "latency_ms", "passed")
    return [{**{k: a.get(k) for k in keys},
             "correlation": a["outputs"]["embedding"]["correlation"]}
            for a in summary["artifacts"]]


def tuned(train_file: Path, dev_file: Path, model: str, folder: Path, seed: int,
          export: bool = False) -> dict:
    from tfsft.config import TrainConfig
    from tfsft.training.trainer import train

    started = time.perf_counter()
    result = train(TrainConfig(train=str(train_file), validation=str(dev_file), model=model,
                               output_dir=str(folder / f"run-{seed}"), seed=seed,
                               task="sentence-embedding", tensorboard=False))
    summary = json.loads((result.run_dir / "run.json").read_text())
    wall = round(time.perf_counter() - started, 1)
    return {**result.metrics, "wall_seconds": wall,
            **({"export": exported(result.run_dir, folder)} if export else {}),
            "train_examples_per_second": summary.get("train_examples_per_second"),
            "epochs": summary.get("epochs_run"), "seed": seed}


def over_seeds(runs: list[dict], keys: tuple[str, ...]) -> dict:
    """Mean and standard deviation (ddof 1) of each metric over the seeds' runs."""
    values = {k: np.array([run[k] for run in runs], np.float64) for k in keys}
    return {"mean": {k: round(float(v.mean()), 6) for k, v in values.items()},
            "std": {k: round(float(v.std(ddof=1)) if len(v) > 1 else 0.0, 6)
                    for k, v in values.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SQUAD)
    parser.add_argument("--model", default="minilm-l6")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    parser.add_argument("--export", action="store_true", help="export the first seed's run "
                        "to every format and variant, with their parity checks")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    keys = ("recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10")
    train_rows = squad_pairs(args.data / "train-v1.1-sample.json")
    dev_rows = squad_pairs(args.data / "dev-v1.1-sample.json")
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        train_file = write_jsonl(folder / "train.jsonl", train_rows)
        dev_file = write_jsonl(folder / "dev.jsonl", dev_rows)
        results = {"bm25": bm25(dev_rows), "untuned": untuned(dev_file, args.model)}
        runs = [tuned(train_file, dev_file, args.model, folder, seed, args.export and i == 0)
                for i, seed in enumerate(args.seeds)]
    seeds = over_seeds(runs, keys)
    rows = {**results, **{f"tuned (seed {run['seed']})": run for run in runs},
            f"tuned (mean of {len(runs)})": seeds["mean"]}
    report = {"machine": machine(), "train_pairs": len(train_rows), "dev_questions": len(dev_rows),
              "dev_paragraphs": len({r["positive"] for r in dev_rows}), **results,
              "tuned": runs, "tuned_over_seeds": seeds,
              "gain_recall@1_points": round(100 * (seeds["mean"]["recall@1"]
                                                   - results["untuned"]["recall@1"]), 2)}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"CPU: {report['machine'].get('cpu')}; {len(train_rows)} train pairs, "
          f"{report['dev_questions']} dev questions over {report['dev_paragraphs']} paragraphs")
    print("| retriever | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for name, metrics in rows.items():
        print(f"| {name} | " + " | ".join(f"{metrics[k]:.4f}" for k in keys) + " |")
    print("| std over seeds | " + " | ".join(f"{seeds['std'][k]:.4f}" for k in keys) + " |")
    if args.export:
        print("\n| artifact | variant | MB | max |Δ| | correlation | recall@1 | vs keras | ok |")
        print("|---|---|---|---|---|---|---|---|")
        for a in runs[0]["export"]:
            loss = "-" if a["quality_loss"] is None else f"{-a['quality_loss']:+.4f}"
            print(f"| {a['artifact']} | {a['variant']} | {a['size_bytes'] / 1e6:.1f} | "
                  f"{a['max_abs_diff']:.2e} | {a['correlation'] or 1.0:.5f} | "
                  f"{a['quality']:.4f} | {loss} | {'yes' if a['passed'] else 'NO'} |")


if __name__ == "__main__":
    main()
