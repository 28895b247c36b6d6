"""The ``tfsft`` command line: train, evaluate, predict, export.

Run ``tfsft COMMAND --help`` for the options of each command.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tfsft.errors import TfsftError  # noqa: E402
from tfsft.training.precision import PRECISIONS  # noqa: E402

logger = logging.getLogger("tfsft")


def _column_options(parser: argparse.ArgumentParser, label_default: str | None = None,
                    format_flag: str = "--format") -> None:
    group = parser.add_argument_group("columns")
    group.add_argument("--text-column", help="column holding the text (default: text)")
    group.add_argument("--text-pair-column", help="column holding the second text, for pairs")
    group.add_argument("--label-column", default=label_default,
                       help="column holding the label (default: label)")
    group.add_argument(format_flag, dest="file_format", choices=["csv", "tsv", "jsonl", "parquet"],
                       help="file format, when the extension does not tell")
    group.add_argument("--encoding", default=None, help="text encoding of the file (utf-8)")
    group.add_argument("--exclude-labels", nargs="+", metavar="LABEL",
                       help="skip rows with these labels (the count is reported)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tfsft", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="fine-tune a model on labelled text")
    train.add_argument("--config", help="YAML file of options (flags override it)")
    train.add_argument("--task", choices=["text-classification"])
    train.add_argument("--model", help="checkpoint folder (Hugging Face or keras-hub) or minilm-l6")
    train.add_argument("--train", help="training data: CSV/TSV/JSONL/Parquet file or dataset folder")
    train.add_argument("--validation", help="validation data (default: split off the training data)")
    train.add_argument("--validation-fraction", type=float)
    train.add_argument("--output-dir", help="run folder to write")
    _column_options(train)
    train.add_argument("--validation-text-column", help="text column of the validation file, "
                       "when it differs from --text-column")
    train.add_argument("--validation-text-pair-column")
    train.add_argument("--validation-label-column")
    train.add_argument("--max-train-rows", type=int, help="read only the first N training rows")
    train.add_argument("--max-validation-rows", type=int)
    train.add_argument("--epochs", type=int)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--learning-rate", type=float)
    train.add_argument("--weight-decay", type=float)
    train.add_argument("--warmup-ratio", type=float)
    train.add_argument("--lr-schedule", choices=["linear", "cosine", "exponential", "constant"])
    train.add_argument("--clipnorm", type=float, help="global gradient-norm clip")
    train.add_argument("--max-length", type=int, help="tokens per example, [CLS]/[SEP] included")
    train.add_argument("--pooling", choices=["mean", "cls", "pooled"])
    train.add_argument("--dropout", type=float)
    train.add_argument("--seed", type=int)
    train.add_argument("--precision", choices=PRECISIONS,
                       help="compute precision (auto: bfloat16 matmuls on CPUs with AMX/AVX512-BF16, "
                            "else float32; weights and the saved model stay float32)")
    train.add_argument("--class-weight", help="'balanced' or JSON like '{\"pos\": 2.0}'")
    train.add_argument("--early-stopping-patience", type=int)
    train.add_argument("--no-early-stopping", action="store_true")
    train.add_argument("--reduce-lr-on-plateau", action="store_true", default=None)
    train.add_argument("--monitor", help="metric for early stopping/checkpoints (val_loss)")
    train.add_argument("--backup-every-steps", type=int,
                       help="steps between resumable backups (default 200)")
    train.add_argument("--no-tensorboard", action="store_true")
    train.add_argument("--overwrite", action="store_true", default=None,
                       help="replace an existing run folder")

    evaluate = commands.add_parser("evaluate", help="metrics of a trained run on labelled data")
    evaluate.add_argument("run_dir")
    evaluate.add_argument("--data", required=True)
    evaluate.add_argument("--output-dir", help="also write metrics.json, report and PNG here")
    evaluate.add_argument("--batch-size", type=int, default=64)
    _column_options(evaluate, label_default="label")

    predict = commands.add_parser("predict", help="labels for texts (arguments or a file)")
    predict.add_argument("run_dir")
    predict.add_argument("texts", nargs="*", help="texts to classify")
    predict.add_argument("--input", help="file of texts (CSV/TSV/JSONL/Parquet, or .txt: one a line)")
    predict.add_argument("--batch-size", type=int, default=64)
    _column_options(predict, label_default=None)

    export = commands.add_parser(
        "export", help="export a trained run (SavedModel, TFLite, ONNX), verified on held-out data")
    export.add_argument("run_dir")
    export.add_argument("--format", default="savedmodel",
                        help="comma-separated: savedmodel,tflite,onnx (default savedmodel)")
    export.add_argument("--quantize", default="",
                        help="comma-separated extra variants: fp16,int8-dynamic,int8")
    export.add_argument("--output", required=True, help="model base folder, e.g. saved_models/NAME")
    export.add_argument("--allow-mismatch", action="store_true",
                        help="publish even if an artifact fails its parity check")
    export.add_argument("--data", help="held-out data to verify on (default: the run's own)")
    export.add_argument("--max-examples", type=int, default=1000,
                        help="held-out examples to verify on (default 1000)")
    _column_options(export, label_default="label", format_flag="--data-format")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return {"train": _train, "evaluate": _evaluate, "predict": _predict,
                "export": _export}[args.command](args)
    except TfsftError as exc:
        print(f"tfsft {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except FileExistsError as exc:
        print(f"tfsft {args.command}: error: {exc}", file=sys.stderr)
        return 2


def _train(args: argparse.Namespace) -> int:
    from tfsft.config import TrainConfig
    from tfsft.training.trainer import train

    overrides: dict[str, Any] = {
        name: getattr(args, name) for name in TrainConfig.field_names() if hasattr(args, name)
    }
    if args.class_weight and args.class_weight != "balanced":
        try:
            overrides["class_weight"] = json.loads(args.class_weight)
        except json.JSONDecodeError as exc:
            from tfsft.errors import ConfigError

            raise ConfigError(f"--class-weight is neither 'balanced' nor JSON ({exc})") from exc
    if args.config:
        config = TrainConfig.from_yaml(args.config, overrides)
    else:
        config = TrainConfig.from_dict({k: v for k, v in overrides.items() if v is not None})
    if args.no_early_stopping:
        config.early_stopping_patience = None
    if args.no_tensorboard:
        config.tensorboard = False
    result = train(config)
    print(json.dumps({"run_dir": str(result.run_dir), "validation": _headline(result.metrics),
                      "train_examples_per_second": result.summary["train_examples_per_second"],
                      "wall_seconds": result.summary["wall_seconds"]}))
    return 0


def _headline(metrics: dict[str, Any]) -> dict[str, Any]:
    keys = ("examples", "accuracy", "f1_macro", "precision_macro", "recall_macro", "roc_auc")
    return {k: metrics[k] for k in keys}


def _data_options(args: argparse.Namespace) -> dict[str, Any]:
    options = {"text_column": args.text_column or "text", "label_column": args.label_column,
               "text_pair_column": args.text_pair_column, "file_format": args.file_format,
               "exclude_labels": args.exclude_labels or ()}
    if args.encoding:
        options["encoding"] = args.encoding
    return options


def _evaluate(args: argparse.Namespace) -> int:
    from tfsft.runs import TrainedRun

    run = TrainedRun(args.run_dir)
    data = run.read(args.data, **_data_options(args))
    metrics = run.evaluate(data, output_dir=args.output_dir, batch_size=args.batch_size, verbose=0)
    print(json.dumps(metrics))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from tfsft.errors import ConfigError
    from tfsft.runs import TrainedRun

    run = TrainedRun(args.run_dir)
    texts, pairs = list(args.texts), None
    if args.input:
        if args.input.endswith(".txt"):
            with open(args.input, encoding=args.encoding or "utf-8") as handle:
                texts += [line.rstrip("\n") for line in handle if line.strip()]
        else:
            data = run.read(args.input, **_data_options(args))
            texts += data.texts
            pairs = data.text_pairs
    if not texts:
        raise ConfigError("nothing to predict: pass texts as arguments or --input FILE")
    for record in run.predict(texts, pairs, batch_size=args.batch_size):
        print(json.dumps(record, ensure_ascii=False))
    return 0


def _export(args: argparse.Namespace) -> int:
    from exporters import export
    from tfsft.runs import TrainedRun

    def listed(value: str) -> list[str]:
        return [item.strip() for item in value.split(",") if item.strip()]

    run = TrainedRun(args.run_dir)
    data = run.read(args.data, **_data_options(args)) if args.data else None
    result = export(run, args.output, formats=listed(args.format), quantize=listed(args.quantize),
                    allow_mismatch=args.allow_mismatch, data=data, max_examples=args.max_examples)
    print(json.dumps({"published": result["published"], "passed": result["passed"],
                      "report": str(Path(args.output) / "export_report.json")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
