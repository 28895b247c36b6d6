"""Quantized exports per task: each variant against its task's gate, with per-layer fallback.

    python -m benchmarks.quantization                  # sst2 ner regression qa multi-label
    python -m benchmarks.quantization --only sst2 --work /tmp/quantization

Each task is fine-tuned once from MiniLM-L6 on real data (runs are kept in ``--work`` and
reused), then exported to TFLite and ONNX with ``fp16``, ``int8-dynamic`` and ``int8-static``
(``allow_mismatch``, so failed variants are measured too). One row per task x format x
variant: the gate, agreement with the Keras model, the task metric's change, the layers kept
float by the fallback, size, and the batch-1 / batch-32 speed-up against fp32 of the same
format (ONNX: the optimized graph), all measured in the same process. Results:
``benchmarks/results/quantization.json`` with the CPU model.

Recipes (seed 42): SST-2 (first 4,000 training sentences, 2 epochs, max_length 64, all 872 dev
sentences checked); CoNLL-2003 NER (first 4,000 sentences, 2 epochs, 1,000 valid sentences
checked); VADER tweets regression (80/20 split, 3 epochs); SQuAD sample QA (dev sample ->
train sample, 2 epochs); CoNLL multi-label (the entity types of each sentence; 4,000
sentences, 3 epochs, 1,000 valid sentences checked).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from benchmarks import common
from benchmarks.tasks import CONLL, SQUAD, VADER, _write_scores, conll_sentences, vader_split

OUT = common.RESULTS / "quantization.json"
QUANTIZE = ("fp16", "int8-dynamic", "int8-static")


def sst2(run_dir: Path) -> dict:
    return dict(train=str(common.DATA / "train.tsv"), validation=str(common.DATA / "dev.tsv"),
                text_column="sentence", validation_text_column="content", label_column="label",
                max_train_rows=4000, epochs=2, max_length=64)


def ner(run_dir: Path) -> dict:
    return dict(task="token-classification", train=str(CONLL / "train.txt"),
                validation=str(CONLL / "valid.txt"), max_train_rows=4000, epochs=2,
                max_validation_rows=1000)


def regression(run_dir: Path) -> dict:
    (train_texts, train_scores), (held_texts, held_scores) = vader_split()
    _write_scores(run_dir.parent / "vader_train.jsonl", train_texts, train_scores)
    _write_scores(run_dir.parent / "vader_held_out.jsonl", held_texts, held_scores)
    return dict(task="regression", train=str(run_dir.parent / "vader_train.jsonl"),
                validation=str(run_dir.parent / "vader_held_out.jsonl"),
                task_options={"target_columns": ["score"]}, epochs=3)


def qa(run_dir: Path) -> dict:
    return dict(task="question-answering", train=str(SQUAD / "dev-v1.1-sample.json"),
                validation=str(SQUAD / "train-v1.1-sample.json"), epochs=2, batch_size=16,
                learning_rate=1e-4)


def multi_label(run_dir: Path) -> dict:
    for name in ("train.txt", "valid.txt"):
        tokens, tags = conll_sentences(name)
        with open(run_dir.parent / f"conll_{name}.jsonl", "w", encoding="utf-8") as f:
            for words, sentence_tags in zip(tokens, tags, strict=True):
                types = sorted({t[2:] for t in sentence_tags if t != "O"})
                f.write(json.dumps({"text": " ".join(words), "labels": types}) + "\n")
    return dict(task="multi-label-classification", train=str(run_dir.parent / "conll_train.txt.jsonl"),
                validation=str(run_dir.parent / "conll_valid.txt.jsonl"), max_train_rows=4000,
                max_validation_rows=1000, epochs=3, task_options={"label_column": "labels"})


RECIPES: dict[str, Callable[[Path], dict]] = {
    "sst2": sst2, "ner": ner, "regression": regression, "qa": qa, "multi-label": multi_label}


def trained(name: str, work: Path) -> Path:
    """The run folder of ``name`` in ``work`` (trained now if it is not there)."""
    from tfsft.config import TrainConfig
    from tfsft.run_folder import is_run_folder
    from tfsft.training.trainer import train

    run_dir = work / name / "run"
    if is_run_folder(run_dir) and (run_dir / "model.keras").exists():
        return run_dir
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    options = {"model": "minilm-l6", "output_dir": str(run_dir), "seed": common.SEED,
               "tensorboard": False, "overwrite": True, **RECIPES[name](run_dir)}
    print(f"training {name}", flush=True)
    return train(TrainConfig.from_dict(options)).run_dir


def rows(name: str, report: dict) -> list[dict]:
    artifacts = report["artifacts"]
    keras = next(a for a in artifacts if a["artifact"] == "keras")
    baselines = {"tflite": "fp32", "onnx": "optimized"}
    out = []
    for artifact in artifacts:
        if not artifact["quantized"]:
            continue
        base = next(a for a in artifacts if a["artifact"] == artifact["artifact"]
                    and a["variant"] == baselines[artifact["artifact"]])
        speed = {timing: round(base["latency_ms"][timing] / artifact["latency_ms"][timing], 2)
                 for timing in artifact["latency_ms"] if timing in base["latency_ms"]}
        layers = artifact.get("layer_errors")
        out.append({
            "task": name, "format": artifact["artifact"], "variant": artifact["variant"],
            "gate": artifact["gate"], "passed": artifact["passed"],
            "agreement": artifact["agreement"], "metric": artifact["quality_metric"],
            "metric_delta": None if artifact["quality"] is None or keras["quality"] is None
            else round(artifact["quality"] - keras["quality"], 4),
            "float_layers": None if layers is None
            else f"{len(artifact['float_layers'])} of {len(layers)}",
            "kept_float": artifact.get("float_layers"), "fallback_tries": artifact.get(
                "fallback_tries"), "size_mb": round(artifact["size_bytes"] / 1e6, 1),
            "speedup_b1": speed.get("batch_1"), "speedup_b32": speed.get("batch_32")})
    return out


def markdown(table: list[dict]) -> str:
    lines = ["| task | format | variant | agreement % | metric Δ | float layers | MB | b1 × | "
             "b32 × | gate |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in table:
        agreement = "-" if r["agreement"] is None else f"{100 * r['agreement']:.2f}"
        delta = "-" if r["metric_delta"] is None else f"{r['metric_delta']:+.4f}"
        lines.append(f"| {r['task']} | {r['format']} | {r['variant']} | {agreement} | {delta} | "
                     f"{r['float_layers'] or '-'} | {r['size_mb']} | {r['speedup_b1']} | "
                     f"{r['speedup_b32']} | {'passed' if r['passed'] else 'FAILED'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=tuple(RECIPES))
    parser.add_argument("--work", type=Path, default=Path("/tmp/tfsft-quantization"))
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if not VADER.exists():
        raise SystemExit(f"{VADER} not found; set TFSFT_BENCHMARK_DATA")
    from exporters import export

    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    results.setdefault("tasks", {})
    for name in args.only or RECIPES:
        run_dir = trained(name, args.work)
        report = export(run_dir, args.work / name / "exported", formats=["tflite", "onnx"],
                        quantize=list(QUANTIZE), allow_mismatch=True)
        results["tasks"][name] = rows(name, report)
        results["machine"] = common.machine()
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    table = [row for name in results["tasks"] for row in results["tasks"][name]]
    print(f"CPU: {results['machine'].get('cpu')}")
    print(markdown(table))


if __name__ == "__main__":
    main()
