"""Smaller models against their teacher (distilled, pruned): quality, size and latency, side by side.

    python -m benchmarks.compression                       # SST-2, work in /tmp/compression
    python -m benchmarks.compression --work DIR --skip-unlabelled
    python -m benchmarks.compression --ner                 # CoNLL-2003: teacher and student F1

Recipe (seed 42, every other option tfsft's default): the teacher fine-tunes MiniLM-L6 on the
first 20,000 SST-2 training sentences (max_length 64, validated on the 872 dev sentences).
Rows:

- ``teacher``: that run;
- ``student L3``: ``tfsft distill --student-layers 3`` (layers 2, 4 and 6 of the teacher, its
  data and recipe, T 2, alpha 0.5);
- ``student L3 + unlabelled``: the same with the next 40,000 training sentences given without
  their labels (``--unlabelled``), learnt from the teacher's outputs alone;
- ``labels only L3``: the same 3-layer copy trained on the labels alone (``--alpha 0``), to
  show what the teacher's outputs add;
- ``pruned 30 %``: ``tfsft prune --heads 0.3 --ffn 0.3`` of the teacher (its 1-epoch recovery
  pass at the defaults);
- each with its ONNX and TFLite int8-dynamic exports.

Columns: dev accuracy (Keras model; int8 rows: the exported model's, from the export report),
parameters, file size, and median latency at batch 1 and 32 (SST-2 dev sentences at their own
lengths) for each format, timed in alternating blocks in this process (see
:func:`benchmarks.inference.measure`), with the speed-up against the teacher in the same
format. Runs and exports are kept in ``--work`` and reused. Results:
``benchmarks/results/compression.json`` (with the CPU model) and ``compression.png`` (quality
against batch-32 latency).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from benchmarks import common

OUT = common.RESULTS / "compression.json"
PLOT = common.RESULTS / "compression.png"
NER_OUT = common.RESULTS / "compression_ner.json"
TEACHER_ROWS = 20_000
UNLABELLED_ROWS = 40_000
FORMATS = {"onnx": "model.onnx", "onnx int8": "model_int8_dynamic.onnx",
           "tflite": "model.tflite", "tflite int8": "model_int8_dynamic.tflite"}


def teacher(work: Path) -> Path:
    from tfsft.config import TrainConfig
    from tfsft.training.trainer import train

    run_dir = work / "teacher"
    if (run_dir / "model.keras").exists():
        return run_dir
    print("training the teacher", flush=True)
    options = dict(model="minilm-l6", train=str(common.DATA / "train.tsv"),
                   validation=str(common.DATA / "dev.tsv"), text_column="sentence",
                   validation_text_column="content", label_column="label",
                   max_train_rows=TEACHER_ROWS, max_length=64, seed=common.SEED,
                   tensorboard=False, output_dir=str(run_dir), overwrite=True)
    return train(TrainConfig.from_dict(options)).run_dir


def conll_unlabelled(work: Path) -> Path:
    """The CoNLL-2003 training sentences after the teacher's 4,000 (their tag columns are
    left in the file; ``--unlabelled`` reads the tokens only)."""
    from benchmarks.tasks import CONLL

    path = work / "conll_unlabelled.txt"
    if not path.exists():
        text = (CONLL / "train.txt").read_text(encoding="utf-8")
        blocks = [b for b in text.split("\n\n")
                  if b.strip() and not b.startswith("-DOCSTART-")]
        path.write_text("\n\n".join(blocks[4000:]) + "\n", encoding="utf-8")
    return path


def ner_rows(work: Path) -> list[dict]:
    """CoNLL-2003 NER (first 4,000 training sentences, 2 epochs, scored on all of valid.txt):
    entity F1 of the teacher and of its 3-layer students: at the defaults (the teacher's 2
    epochs), with more epochs, on the labels alone, and with the other 10,041 training
    sentences as unlabelled text."""
    from benchmarks.tasks import CONLL
    from tfsft.config import TrainConfig
    from tfsft.runs import TrainedRun
    from tfsft.training.trainer import train

    teacher_dir = work / "ner-teacher"
    if not (teacher_dir / "model.keras").exists():
        print("training the NER teacher", flush=True)
        train(TrainConfig.from_dict(dict(
            task="token-classification", model="minilm-l6", train=str(CONLL / "train.txt"),
            validation=str(CONLL / "valid.txt"), max_train_rows=4000, epochs=2,
            seed=common.SEED, tensorboard=False, output_dir=str(teacher_dir), overwrite=True)))
    unlabelled = str(conll_unlabelled(work))
    runs = {
        "teacher": teacher_dir,
        "student L3 (defaults)": student(work, "ner-student-l3", teacher_dir),
        "student L3, 4 epochs": student(work, "ner-student-l3-e4", teacher_dir, epochs=4),
        "student L3, 8 epochs": student(work, "ner-student-e8", teacher_dir, epochs=8),
        "labels only L3 (alpha 0)": student(work, "ner-labels-only", teacher_dir, alpha=0.0),
        "student L3 + unlabelled": student(work, "ner-student-unlabelled", teacher_dir,
                                           unlabelled=unlabelled),
        "student L3 + unlabelled, 4 epochs": student(work, "ner-student-unlabelled-e4",
                                                     teacher_dir, epochs=4,
                                                     unlabelled=unlabelled),
    }
    rows = []
    for name, run_dir in runs.items():
        metrics = json.loads((run_dir / "metrics.json").read_text())
        model = TrainedRun(run_dir).model
        rows.append({"model": name, "layers": int(model.backbone.num_layers),
                     "parameters_m": round(model.count_params() / 1e6, 2),
                     "entity_f1": round(float(metrics["f1"]), 4)})
    return rows


def unlabelled_file(work: Path) -> Path:
    """The training sentences after the teacher's, one a line, without labels."""
    path = work / "unlabelled.txt"
    if not path.exists():
        texts, _ = common.read_tsv(common.DATA / "train.tsv", "sentence")
        lines = texts[TEACHER_ROWS:TEACHER_ROWS + UNLABELLED_ROWS]
        path.write_text("\n".join(line.replace("\n", " ") for line in lines) + "\n",
                        encoding="utf-8")
    return path


def student(work: Path, name: str, teacher_dir: Path, epochs: int | None = None,
            **settings: Any) -> Path:
    """``tfsft distill --student-layers 3`` of the teacher (``epochs``: the teacher's)."""
    from tfsft.training.distillation import DistillationSettings, distill

    run_dir = work / name
    if (run_dir / "distillation.json").exists():
        return run_dir
    print(f"distilling {name}", flush=True)
    distill(DistillationSettings(teacher_dir, student_layers=3, **settings),
            {"output_dir": str(run_dir), "overwrite": True, "tensorboard": False,
             "epochs": epochs})
    return run_dir


def pruned(work: Path, teacher_dir: Path, share: float = 0.3) -> Path:
    """``tfsft prune`` of the teacher: ``share`` of its heads and of its feed-forward neurons
    removed, then the default recovery pass (1 epoch)."""
    from tfsft.training.pruning import PRUNING_FILE, prune

    run_dir = work / f"pruned-{round(share * 100)}"
    if (run_dir / PRUNING_FILE).exists():
        return run_dir
    print(f"pruning {run_dir.name}", flush=True)
    prune(teacher_dir, heads=share, ffn=share,
          overrides={"output_dir": str(run_dir), "overwrite": True, "tensorboard": False})
    return run_dir


def exported(run_dir: Path) -> Path:
    from exporters import export

    target = run_dir.parent / f"{run_dir.name}-export"
    if not (target / "export_report.json").exists():
        print(f"exporting {run_dir.name}", flush=True)
        export(run_dir, target, formats=["onnx", "tflite"], quantize=["int8-dynamic"],
               allow_mismatch=True)
    return target


def artifacts(export_dir: Path) -> dict[str, Path]:
    found = {}
    for name, file_name in FORMATS.items():
        folder = "onnx" if name.startswith("onnx") else "tflite"
        paths = list(export_dir.glob(f"*/{folder}/{file_name}")) + list(
            export_dir.glob(f"{folder}/{file_name}"))
        if paths:
            found[name] = paths[0]
    return found


def runner(name: str, path: Path) -> Any:
    from exporters import onnx_model, tflite

    return (onnx_model.session_runner(path) if name.startswith("onnx")
            else tflite.token_ids_runner(path))


def exported_accuracy(export_dir: Path, name: str) -> float | None:
    """The dev accuracy of an int8 artifact, from its export report."""
    report = json.loads((export_dir / "export_report.json").read_text())
    fmt, variant = name.split(" ") if " " in name else (name, "fp32")
    variant = "int8-dynamic" if variant == "int8" else variant
    for row in report.get("artifacts", []):
        if row.get("artifact") == fmt and row.get("variant") == variant:
            return row.get("quality")
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/compression"))
    parser.add_argument("--skip-unlabelled", action="store_true")
    parser.add_argument("--skip-labels-only", action="store_true")
    parser.add_argument("--skip-pruned", action="store_true")
    parser.add_argument("--ner", action="store_true",
                        help="only the CoNLL-2003 NER teacher and student (quality)")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    if args.ner:
        from tfsft.io_utils import atomic_write_json

        rows = ner_rows(args.work)
        print(json.dumps(rows, indent=1))
        atomic_write_json(NER_OUT, {"machine": common.machine(), "recipe": {
            "data": "CoNLL-2003 train.txt (first 4,000 sentences) -> valid.txt", "epochs": 2,
            "seed": common.SEED}, "rows": rows})
        return
    from benchmarks.inference import measure, scenarios
    from tfsft.io_utils import atomic_write_json
    from tfsft.runs import TrainedRun

    teacher_dir = teacher(args.work)
    runs = {"teacher": teacher_dir, "student L3": student(args.work, "student-l3", teacher_dir)}
    if not args.skip_unlabelled:
        runs["student L3 + unlabelled"] = student(args.work, "student-l3-unlabelled",
                                                  teacher_dir,
                                                  unlabelled=str(unlabelled_file(args.work)))
    if not args.skip_labels_only:
        runs["labels only L3"] = student(args.work, "labels-only-l3", teacher_dir, alpha=0.0)
    if not args.skip_pruned:
        runs["pruned 30 %"] = pruned(args.work, teacher_dir)
    exports = {name: exported(run_dir) for name, run_dir in runs.items()}
    found = {f"{name} | {fmt}": runner(fmt, path) for name, export_dir in exports.items()
             for fmt, path in artifacts(export_dir).items()}
    inputs = {k: v for k, v in scenarios(teacher_dir).items() if k in ("b1_real", "b32_real")}
    latency = measure(found, inputs)
    rows = []
    for name, run_dir in runs.items():
        model = TrainedRun(run_dir).model
        metrics = json.loads((run_dir / "metrics.json").read_text())
        for fmt, path in artifacts(exports[name]).items():
            times = latency[f"{name} | {fmt}"]
            base = latency.get(f"teacher | {fmt}", {})
            accuracy = (metrics["accuracy"] if " " not in fmt
                        else exported_accuracy(exports[name], fmt))
            rows.append({
                "model": name, "format": fmt, "layers": int(model.backbone.num_layers),
                "heads": int(sum(getattr(model.backbone, "layer_heads", None)
                                 or [model.backbone.num_heads] * model.backbone.num_layers)),
                "parameters_m": round(model.count_params() / 1e6, 2),
                "accuracy": None if accuracy is None else round(float(accuracy), 4),
                "size_mb": round(path.stat().st_size / 1e6, 1),
                "b1_ms": times["b1_real"], "b32_ms": times["b32_real"],
                "speedup_b1": round(base["b1_real"] / times["b1_real"], 2) if base else None,
                "speedup_b32": round(base["b32_real"] / times["b32_real"], 2) if base else None,
            })
    table = markdown(rows)
    print(table)
    atomic_write_json(OUT, {"machine": common.machine(), "recipe": {
        "teacher_rows": TEACHER_ROWS, "unlabelled_rows": UNLABELLED_ROWS, "max_length": 64,
        "seed": common.SEED}, "rows": rows, "table": table})
    plot(rows, PLOT)


def markdown(rows: list[dict]) -> str:
    header = ("| model | format | layers | heads | params (M) | dev accuracy | size (MB) | b1 ms | "
              "b32 ms | speed-up b1 | speed-up b32 |")
    lines = [header, "|" + "---|" * 11]
    for r in rows:
        lines.append(f"| {r['model']} | {r['format']} | {r['layers']} | {r['heads']} | "
                     f"{r['parameters_m']} | "
                     f"{r['accuracy']} | {r['size_mb']} | {r['b1_ms']} | {r['b32_ms']} | "
                     f"{r['speedup_b1']} | {r['speedup_b32']} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    """Dev accuracy against batch-32 latency, one marker per model and format."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for fmt, marker in zip(FORMATS, "os^v", strict=True):
        chosen = [r for r in rows if r["format"] == fmt and r["accuracy"] is not None]
        axes.scatter([r["b32_ms"] for r in chosen], [r["accuracy"] for r in chosen],
                     marker=marker, label=fmt)
        for r in chosen:
            axes.annotate(r["model"], (r["b32_ms"], r["accuracy"]), fontsize=7,
                          xytext=(3, 3), textcoords="offset points")
    axes.set_xlabel("batch-32 latency (ms, median)")
    axes.set_ylabel("SST-2 dev accuracy")
    axes.set_title("Teacher, distilled students and pruned model (MiniLM-L6, SST-2 20k)")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


if __name__ == "__main__":
    main()
