"""The ``tfsft`` argument parser: one builder per command."""

from __future__ import annotations

import argparse
from typing import Any

from tfsft.choices import CONFLICT_RULES, LR_DECAYS, PRECISIONS, STRATEGIES
from tfsft.cli.commands import command_context
from tfsft.cli.options import (
    FILE_FORMATS,
    add_read_options,
    add_table_options,
    add_task_options,
    input_flags,
    task_commands,
    text_encoding,
)
from tfsft.tasks.base import DEFAULT_TASK, option_fields, options_class, task_names

DESCRIPTION = """Fine-tune text models, evaluate them, predict with them and export them.

Run `tfsft COMMAND --help` for the options of each command, and
`tfsft train --task TASK --help` for a task's own options.
"""


def build_parser(task: str = DEFAULT_TASK) -> argparse.ArgumentParser:
    """The ``tfsft`` argument parser; ``train`` shows the options of ``task``."""
    parser = argparse.ArgumentParser(prog="tfsft", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_debug_flags(parser, default=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     parser_class=_SubcommandParser)

    _add_train(commands, task)
    _add_cv(commands, task)
    _add_distill(commands)
    _add_prune(commands)
    _add_preprocess(commands, task)
    _add_evaluate(commands, task)
    _add_predict(commands, task)
    _add_task_commands(commands, task)
    _add_export(commands, task)
    _add_data(commands, task)
    return parser


def _add_train(commands: Any, task: str) -> None:
    """``tfsft train``: data, training and run-folder flags, then the task's options."""
    _add_training_arguments(commands.add_parser("train", help="fine-tune a model on labelled "
                                                               "text"), task)


def _add_cv(commands: Any, task: str) -> None:
    """``tfsft cv``: the options of ``train``, and the folds."""
    cv = commands.add_parser(
        "cv", help="k-fold cross-validation: one run per fold, mean ± std of the metrics",
        description="Split the --train file's rows into --folds parts (stratified by label; "
                    "by --group-column where given), train one run per fold on the others "
                    "(OUTPUT_DIR/fold-K) and write cv_summary.json/.txt (each fold's metrics, "
                    "mean ± std) and out_of_fold.jsonl (every row's prediction by the fold that "
                    "did not train on it). Takes every option of tfsft train.")
    cv.add_argument("--folds", type=int, default=5, help="parts of the data (default 5)")
    cv.add_argument("--group-column", help="rows sharing this column's value stay in one fold "
                                           "(e.g. a user or document id)")
    cv.add_argument("--resume", action="store_true",
                    help="finish an interrupted cross-validation: finished folds are skipped, "
                         "an interrupted fold resumes")
    _add_training_arguments(cv, task)


def _add_distill(commands: Any) -> None:
    """``tfsft distill TEACHER_RUN``: a smaller student of a finished run."""
    distill = commands.add_parser(
        "distill", help="train a smaller student on a finished run's outputs (knowledge "
                        "distillation)",
        description="Train a student on the teacher run's data and recipe (its config.yaml), "
                    "learning from the teacher's softened outputs as well as the labels. The "
                    "student is an ordinary run folder (evaluate, predict, export), with "
                    "distillation.json comparing it with the teacher.")
    distill.add_argument("teacher", help="the finished run to learn from")
    distill.add_argument("--output-dir", required=True, help="run folder of the student")
    student = distill.add_mutually_exclusive_group()
    student.add_argument("--student-layers", type=int, metavar="N",
                         help="a copy of the teacher with N of its transformer layers (evenly "
                              "spaced, the last kept), initialised from the teacher")
    student.add_argument("--student", metavar="CHECKPOINT",
                         help="a smaller checkpoint with the teacher's vocabulary")
    _add_student_training(distill)


def _add_prune(commands: Any) -> None:
    """``tfsft prune RUN``: heads and feed-forward neurons removed, then a recovery pass."""
    prune = commands.add_parser(
        "prune", help="remove a finished run's least important attention heads and "
                      "feed-forward neurons (smaller matrices), then train it briefly",
        description="Rank the run's heads and feed-forward neurons by importance on its held-out "
                    "examples (gradient x weight), remove the given shares of the least "
                    "important from its weight matrices, and train the smaller model for "
                    "--recovery-epochs on the run's data, learning from the unpruned run's "
                    "outputs and the labels. The result is an ordinary run folder with "
                    "pruning.json.")
    prune.add_argument("teacher", metavar="run", help="the finished run to prune")
    prune.add_argument("--output-dir", required=True, help="run folder of the pruned model")
    prune.add_argument("--heads", type=float, default=0.0,
                       help="share of all attention heads to remove, 0 to <1 (e.g. 0.3)")
    prune.add_argument("--ffn", type=float, default=0.0,
                       help="share of all feed-forward neurons to remove, 0 to <1 (e.g. 0.3)")
    prune.add_argument("--recovery-epochs", type=int, default=1,
                       help="epochs of training after pruning (default 1)")
    _add_student_training(prune, epochs=False)


def _add_student_training(parser: Any, epochs: bool = True) -> None:
    """The flags ``distill`` and ``prune`` share: the teacher's outputs in the loss, and the
    training options that change the teacher's recipe."""
    parser.add_argument("--unlabelled", metavar="FILE",
                        help="more texts without labels, learnt from the teacher's outputs "
                             "alone: a .txt file (one a line) or a table with the teacher's "
                             "text column(s)")
    parser.add_argument("--temperature", type=float, default=2.0,
                        help="softens the outputs compared (default 2)")
    parser.add_argument("--alpha", type=float, default=0.5,
                        help="weight of the teacher's outputs in the loss; the labels get "
                             "1 - alpha (default 0.5)")
    parser.add_argument("--train", help="training data (default: the teacher's)")
    parser.add_argument("--validation", help="validation data (default: the teacher's)")
    parser.add_argument("--max-train-rows", type=int, help="read only the first N training rows")
    parser.add_argument("--max-validation-rows", type=int)
    flags = (("--epochs", int),) if epochs else ()
    for flag, kind in (*flags, ("--batch-size", int), ("--learning-rate", float),
                       ("--weight-decay", float), ("--warmup-ratio", float), ("--dropout", float),
                       ("--seed", int), ("--early-stopping-patience", int),
                       ("--backup-every-steps", int)):
        parser.add_argument(flag, type=kind, help="default: the teacher's")
    parser.add_argument("--lr-schedule", choices=LR_DECAYS, help="default: the teacher's")
    parser.add_argument("--precision", choices=PRECISIONS, help="default: the teacher's")
    parser.add_argument("--no-early-stopping", action="store_true")
    parser.add_argument("--no-tensorboard", action="store_true")
    parser.add_argument("--overwrite", action="store_true", default=None,
                        help="replace the student's run folder")
    add_read_options(parser)  # the columns of --train / --validation / --unlabelled files


def _add_training_arguments(train: Any, task: str) -> None:
    """The flags of ``tfsft train`` (and ``tfsft cv``)."""
    train.add_argument("--config", help="YAML file of options (flags override it)")
    train.add_argument("--task", choices=task_names(), help=f"what to learn (default {DEFAULT_TASK})")
    train.add_argument("--model", help="checkpoint folder (Hugging Face or keras-hub) or minilm-l6")
    train.add_argument("--train", help="training data: CSV/TSV/JSONL/Parquet file or dataset folder")
    train.add_argument("--validation", help="validation data (default: split off the training data)")
    train.add_argument("--validation-fraction", type=float)
    train.add_argument("--output-dir", help="run folder to write")
    train.add_argument("--format", dest="file_format", choices=FILE_FORMATS,
                       help="file format, when the extension does not tell")
    train.add_argument("--encoding", type=text_encoding, help="text encoding of the files (utf-8)")
    add_table_options(train)
    train.add_argument("--max-train-rows", type=int, help="read only the first N training rows")
    train.add_argument("--augment", type=int, metavar="N",
                       help="add N edited copies of each training example (EDA: synonyms from "
                            "the model's embeddings, insertion, swap, deletion; seeded; never "
                            "the validation data; listed in the run's augmented.jsonl)")
    train.add_argument("--augment-methods", metavar="M,M",
                       help="which edits: synonym, insert, swap, delete (default all)")
    train.add_argument("--augment-alpha", type=float,
                       help="share of a text's words each edit changes (default 0.1)")
    train.add_argument("--max-validation-rows", type=int)
    train.add_argument("--epochs", type=int)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--learning-rate", type=float, help="peak learning rate (default: the "
                       "task's, 5e-5; 1e-4 for token classification, 5e-4 for causal-lm LoRA)")
    train.add_argument("--weight-decay", type=float)
    train.add_argument("--warmup-ratio", type=float)
    train.add_argument("--lr-schedule", choices=LR_DECAYS, help="decay after warm-up (default: "
                       "the task's, linear; cosine for causal-lm LoRA)")
    train.add_argument("--clipnorm", type=float, help="global gradient-norm clip")
    train.add_argument("--gradient-accumulation-steps", type=int,
                       help="batches whose mean gradient makes one optimizer update (default 1)")
    train.add_argument("--max-length", type=int, help="tokens per example, [CLS]/[SEP] included")
    train.add_argument("--dropout", type=float)
    train.add_argument("--seed", type=int)
    train.add_argument("--precision", choices=PRECISIONS,
                       help="compute precision (auto: on GPUs mixed_bfloat16 from compute "
                            "capability 8.0, mixed_float16 on 7.x; on CPUs bfloat16 matmuls "
                            "with AMX/AVX512-BF16; else float32; weights and the saved model "
                            "stay float32)")
    train.add_argument("--strategy", choices=STRATEGIES,
                       help="tf.distribute strategy (auto: multi-worker when TF_CONFIG names a "
                            "cluster, mirrored with several GPUs, else one-device); --batch-size "
                            "is the global batch")
    train.add_argument("--jit-compile", action="store_true", default=None,
                       help="compile the training step with XLA; batches are padded to length "
                            "buckets (16, 32, 64, ... max length) so it compiles a few shapes")
    train.add_argument("--early-stopping-patience", type=int)
    train.add_argument("--no-early-stopping", action="store_true")
    train.add_argument("--reduce-lr-on-plateau", action="store_true", default=None)
    train.add_argument("--monitor", help="validation metric for early stopping and the best "
                                         "checkpoint (default val_loss)")
    train.add_argument("--backup-every-steps", type=int,
                       help="steps between resumable backups (default 200)")
    train.add_argument("--no-tensorboard", action="store_true")
    train.add_argument("--overwrite", action="store_true", default=None,
                       help="replace an existing run folder")
    add_task_options(train, task)


def _add_preprocess(commands: Any, task: str) -> None:
    """``tfsft preprocess``: a training file into sharded TFRecords."""
    preprocess = commands.add_parser(
        "preprocess", help="tokenize training data once into sharded TFRecord files "
                           "(for data larger than memory; train with --train FOLDER)")
    preprocess.add_argument("--task", choices=task_names(),
                            help=f"what the data is for (default {DEFAULT_TASK})")
    preprocess.add_argument("--model", default="minilm-l6",
                            help="checkpoint whose tokenizer to use (default minilm-l6); "
                                 "train the same model on the shards")
    preprocess.add_argument("--train", required=True,
                            help="training data: CSV/TSV/JSONL (also .gz/.bz2/.xz) or Parquet "
                                 "file, read in chunks, never whole")
    preprocess.add_argument("--output", required=True, help="folder to write the shards to")
    preprocess.add_argument("--shards", type=int, default=8,
                            help="TFRecord files to write (default 8; at least the number of "
                                 "workers that will read them)")
    preprocess.add_argument("--max-length", type=int,
                            help="tokens per example, [CLS]/[SEP] included (default: the "
                                 "task's, 128 for most)")
    preprocess.add_argument("--chunk-rows", type=int, default=8192,
                            help="rows read and tokenized at a time (default 8192)")
    preprocess.add_argument("--workers", type=int,
                            help="tokenizing threads (default: the CPU count, at most 4)")
    preprocess.add_argument("--seed", type=int, default=42,
                            help="seed of the calibration sample (default 42)")
    preprocess.add_argument("--format", dest="file_format", choices=FILE_FORMATS,
                            help="file format, when the extension does not tell")
    preprocess.add_argument("--encoding", default="utf-8", type=text_encoding,
                            help="text encoding of the file (utf-8)")
    add_table_options(preprocess)
    preprocess.add_argument("--overwrite", action="store_true",
                            help="replace shards written earlier by tfsft preprocess")
    preprocess.add_argument("--no-progress", dest="progress", action="store_false",
                            help="no progress bars")
    add_task_options(preprocess, task)


def _add_evaluate(commands: Any, task: str) -> None:
    """``tfsft evaluate RUN --data FILE``."""
    evaluate = commands.add_parser("evaluate", help="metrics of a trained run on labelled data")
    evaluate.add_argument("run_dir")
    evaluate.add_argument("--data", required=True)
    evaluate.add_argument("--output-dir", help="also write metrics.json and the report files here")
    evaluate.add_argument("--batch-size", type=int, default=64)
    add_read_options(evaluate)


def _add_predict(commands: Any, task: str) -> None:
    """``tfsft predict RUN TEXT...``, with the tasks' named inputs as flags."""
    predict = commands.add_parser("predict", help="predictions for texts (arguments or a file)")
    predict.add_argument("run_dir")
    predict.add_argument("texts", nargs="*", help="texts (single-text models)")
    predict.set_defaults(trailing_positionals="texts")  # texts may follow options too
    predict.add_argument("--input", help="file of texts (CSV/TSV/JSONL/Parquet, or .txt: one a "
                                         "line; question answering: SQuAD JSON too)")
    for flag, (help_text, owners) in input_flags().items():
        predict.add_argument(f"--{flag.replace('_', '-')}", dest=flag,
                             help=f"{', '.join(owners)}: {help_text}")
    predict.add_argument("--batch-size", type=int, default=64)
    add_read_options(predict)


def _add_task_commands(commands: Any, task: str) -> None:
    """The subcommands the tasks add (causal-lm: ``generate``)."""
    for command in task_commands(set(commands.choices)):
        subcommand = commands.add_parser(command.name, help=command.help)
        command.add_arguments(subcommand, command_context())
        subcommand.set_defaults(task_command=command)


def _add_export(commands: Any, task: str) -> None:
    """``tfsft export RUN``: SavedModel, TFLite, ONNX, Hugging Face, verified."""
    export = commands.add_parser(
        "export", help="export a trained run (SavedModel, TFLite, ONNX, Hugging Face), verified "
                       "on held-out data")
    export.add_argument("run_dir")
    export.add_argument("--format", default="savedmodel",
                        help="comma-separated: savedmodel,tflite,onnx,hf,gguf (default "
                        "savedmodel; hf: a transformers folder; gguf: llama.cpp files of a "
                        "causal-lm run)")
    export.add_argument("--quantize", default="",
                        help="comma-separated quantized variants: fp16, int8-dynamic, int8-static "
                        "(calibrated int8 weights and activations; int8 is its old name); "
                        "causal-lm runs: fp16, int8-dynamic, int4 (ONNX, and GGUF as F16, "
                        "Q8_0, Q4_1). Each is checked "
                        "against the task's gate and left out below it; the int8 variants "
                        "keep their worst layers in float first")
    export.add_argument("--output", required=True, help="model base folder, e.g. saved_models/NAME")
    export.add_argument("--allow-mismatch", action="store_true",
                        help="publish even if an artifact fails its parity check")
    export.add_argument("--data", help="held-out data to verify on (default: the run's own)")
    export.add_argument("--max-examples", type=int, default=1000,
                        help="held-out examples to verify on (default 1000)")
    add_read_options(export, format_flag="--data-format")


def _add_data(commands: Any, task: str) -> None:
    """``tfsft data inspect FILE``: the data check on its own; ``tfsft data drift RUN``."""
    data = commands.add_parser("data", help="check a data set (tfsft data inspect FILE), or "
                                            "served data against a run (tfsft data drift RUN)")
    actions = data.add_subparsers(dest="data_command", required=True, metavar="ACTION",
                                  parser_class=_SubcommandParser)
    inspect = actions.add_parser(
        "inspect", help="rows, labels, token lengths, duplicates, overlap, [UNK] rate",
        description="The data check that tfsft train runs before training, on its own.")
    inspect.add_argument("file", help="training data (as tfsft train --train takes it)")
    inspect.add_argument("--validation", help="validation data: also checks train/validation "
                                              "overlap")
    inspect.add_argument("--task", choices=task_names(),
                         help=f"how to read the data (default {DEFAULT_TASK})")
    inspect.add_argument("--model", default="minilm-l6",
                         help="checkpoint whose tokenizer counts the tokens (default minilm-l6)")
    inspect.add_argument("--max-length", type=int,
                         help="tokens per example the model would keep (default: the task's, "
                              "128; question answering 384)")
    inspect.add_argument("--output-dir", help="also write data_check.json, data_check.txt and "
                                              "token_lengths.png into this (new) folder")
    inspect.add_argument("--format", dest="file_format", choices=FILE_FORMATS)
    inspect.add_argument("--encoding", type=text_encoding,
                         help="text encoding of the files (utf-8)")
    add_table_options(inspect)
    add_task_options(inspect, task)
    drift = actions.add_parser(
        "drift", help="compare served inputs (and predictions) with a run's validation data",
        description="Length, [UNK] share, empty and repeated inputs, and the served label mix "
                    "of live data against the run's validation examples. Exit status 3 when a "
                    "signal passes its threshold (0: none does), for scheduled jobs.")
    drift.add_argument("run_dir")
    drift.add_argument("--input", required=True,
                       help="served inputs: a .txt file (one text a line) or a CSV/TSV/JSONL/"
                            "Parquet file with the run's text column(s)")
    drift.add_argument("--predictions", help="the predictions served for them: JSONL records "
                                             "as tfsft predict writes them")
    drift.add_argument("--output", help="also write the report as JSON to this file")
    drift.add_argument("--overwrite", action="store_true",
                       help="replace the --output file if it exists")
    add_read_options(drift)
    _add_clean(actions, task)


def _add_clean(actions: Any, task: str) -> None:
    """``tfsft data clean FILE --output FILE``."""
    clean = actions.add_parser(
        "clean", help="fix text damage, drop duplicates, conflicting labels and leaked rows",
        description="Clean a table of texts and labels into a new file, counting every change "
                    "in a report (OUTPUT.report.json and .txt). The input is never changed. "
                    "Train with --normalize set to the text steps used, so that predict and "
                    "the SavedModel apply them to new texts too.")
    clean.add_argument("file", help="a CSV/TSV/JSONL/Parquet file (as tfsft train --train takes it)")
    clean.add_argument("--output", required=True, help="the cleaned file to write (its format "
                                                        "from its name)")
    clean.add_argument("--steps", default="default",
                       help="text steps, comma-separated, from mojibake, html, nfkc, urls, "
                            "emails, handles, numbers, whitespace; 'default' (mojibake,html,"
                            "nfkc,whitespace), default plus more ('default,urls'), or 'none'")
    clean.add_argument("--conflicts", choices=CONFLICT_RULES, default="drop",
                       help="rows with the same text and different labels: drop them all "
                            "(default), keep one with the majority label, or keep them")
    clean.add_argument("--keep-duplicates", action="store_true",
                       help="keep rows that repeat an earlier row's text and label")
    clean.add_argument("--against", nargs="+", metavar="FILE",
                       help="drop rows whose text also occurs in these files (clean validation "
                            "or test data against the training file)")
    clean.add_argument("--against-text-column", metavar="COLUMN",
                       help="the --against files' text column, when it differs from the file's")
    clean.add_argument("--against-text-pair-column", metavar="COLUMN",
                       help="the --against files' second-text column, when it differs")
    clean.add_argument("--unlabelled", action="store_true",
                       help="the file has no label column (conflicts are not checked)")
    clean.add_argument("--overwrite", action="store_true",
                       help="replace the --output file and its reports if they exist")
    clean.add_argument("--task", choices=task_names(),
                       help=f"which columns hold the texts and labels (default {DEFAULT_TASK})")
    clean.add_argument("--format", dest="file_format", choices=FILE_FORMATS)
    clean.add_argument("--encoding", type=text_encoding, help="text encoding of the files (utf-8)")
    add_table_options(clean)
    fields = {f.name for f, _ in option_fields(options_class(task))}
    cleanable = "text_column" in fields and bool({"label_column", "target_columns"} & fields)
    add_task_options(clean, task if cleanable else DEFAULT_TASK, columns_only=True)

class _SubcommandParser(argparse.ArgumentParser):
    """Every command also takes --verbose / --debug after its name."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        add_debug_flags(self, default=argparse.SUPPRESS)


def add_debug_flags(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument("--verbose", "-v", action="store_true", default=default,
                        help="debug logging")
    parser.add_argument("--debug", action="store_true", default=default,
                        help="debug logging, and the Python traceback of an error")
