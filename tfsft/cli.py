"""The ``tfsft`` command line: train, evaluate, predict, export.

Run ``tfsft COMMAND --help`` for the options of each command, and
``tfsft train --task TASK --help`` for a task's own options.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tfsft.choices import LR_DECAYS, PRECISIONS, STRATEGIES  # noqa: E402
from tfsft.errors import ConfigError, TfsftError  # noqa: E402
from tfsft.tasks.base import (  # noqa: E402
    DEFAULT_TASK,
    option_fields,
    options_class,
    task_class,
    task_names,
)
from tfsft.tasks.commands import CommandContext, TaskCommand  # noqa: E402

logger = logging.getLogger("tfsft")
FILE_FORMATS = ["csv", "tsv", "jsonl", "parquet"]


def _scalar(value: str) -> Any:
    """A flag value for an option that takes several types: JSON mapping, int, float or text."""
    if value.startswith("{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise argparse.ArgumentTypeError(f"not valid JSON ({exc})") from exc
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def _add_option(group: argparse._ArgumentGroup, field: Any, hint: Any, suffix: str = "") -> None:
    """A ``--flag`` for a task option field (from its type hint and metadata)."""
    import types
    import typing

    flag = "--" + field.name.replace("_", "-")
    default = field.default if field.default is not dataclasses.MISSING else (
        field.default_factory() if field.default_factory is not dataclasses.MISSING else None)
    help_text = (field.metadata.get("help") or "") + suffix
    if default not in (None, [], {}, ""):
        help_text += f" (default: {default})"
    kwargs: dict[str, Any] = {"dest": field.name, "default": None, "help": help_text}
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    origin = typing.get_origin(hint)
    if hint is bool and default is True:  # on by default: the flag turns it off
        flag = "--no-" + field.name.replace("_", "-")
        kwargs.update(action="store_false", help=(field.metadata.get("help") or "") + suffix
                      + " (on by default; this flag turns it off)")
    elif hint is bool:
        kwargs["action"] = "store_true"
    elif origin is list:
        kwargs.update(nargs="+", metavar=field.name.split("_")[-1].upper().rstrip("S") or "X")
    elif origin in (typing.Union, types.UnionType) and len(args) == 1:
        kwargs["type"] = args[0] if args[0] in (int, float, str) else str
    elif origin in (typing.Union, types.UnionType):
        kwargs["type"] = _scalar
    elif hint in (int, float, str):
        kwargs["type"] = hint
    if field.metadata.get("choices"):
        kwargs["choices"] = list(field.metadata["choices"])
    group.add_argument(flag, **kwargs)


def _task_options(parser: argparse.ArgumentParser, task: str) -> None:
    group = parser.add_argument_group(
        f"options of task {task} (other tasks: tfsft train --task NAME --help)")
    for field, hint in option_fields(options_class(task)):
        _add_option(group, field, hint)


def _read_options(parser: argparse.ArgumentParser, format_flag: str = "--format") -> None:
    """Column options of every task (for reading data with a trained run's task)."""
    group = parser.add_argument_group("columns (default: those the run was trained with)")
    seen: dict[str, list[str]] = {}
    fields = {}
    for task in task_names():
        for field, hint in option_fields(options_class(task)):
            if field.metadata.get("read"):
                seen.setdefault(field.name, []).append(task)
                fields.setdefault(field.name, (field, hint))
    for name, (field, hint) in fields.items():
        tasks = seen[name]
        suffix = "" if len(tasks) == len(task_names()) else f" [{', '.join(tasks)}]"
        _add_option(group, field, hint, suffix)
    group.add_argument(format_flag, dest="file_format", choices=FILE_FORMATS,
                       help="file format, when the extension does not tell")
    group.add_argument("--encoding", default=None, help="text encoding of the file (utf-8)")
    _add_table_options(group)


def _add_table_options(parser: Any) -> None:
    parser.add_argument("--delimiter", help="CSV/TSV field delimiter, e.g. ';' or '\\t' "
                                            "(default: , for .csv, tab for .tsv)")
    parser.add_argument("--no-quoting", dest="quoting", action="store_false", default=None,
                        help="CSV/TSV: read double quotes as plain text (default: a quoted "
                             "field may hold delimiters, newlines and \"\" as pandas writes it)")


def build_parser(task: str = DEFAULT_TASK) -> argparse.ArgumentParser:
    """The ``tfsft`` argument parser; ``train`` shows the options of ``task``."""
    parser = argparse.ArgumentParser(prog="tfsft", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_debug_flags(parser, default=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     parser_class=_SubcommandParser)

    train = commands.add_parser("train", help="fine-tune a model on labelled text")
    train.add_argument("--config", help="YAML file of options (flags override it)")
    train.add_argument("--task", choices=task_names(), help=f"what to learn (default {DEFAULT_TASK})")
    train.add_argument("--model", help="checkpoint folder (Hugging Face or keras-hub) or minilm-l6")
    train.add_argument("--train", help="training data: CSV/TSV/JSONL/Parquet file or dataset folder")
    train.add_argument("--validation", help="validation data (default: split off the training data)")
    train.add_argument("--validation-fraction", type=float)
    train.add_argument("--output-dir", help="run folder to write")
    train.add_argument("--format", dest="file_format", choices=FILE_FORMATS,
                       help="file format, when the extension does not tell")
    train.add_argument("--encoding", help="text encoding of the files (utf-8)")
    _add_table_options(train)
    train.add_argument("--max-train-rows", type=int, help="read only the first N training rows")
    train.add_argument("--max-validation-rows", type=int)
    train.add_argument("--epochs", type=int)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--learning-rate", type=float)
    train.add_argument("--weight-decay", type=float)
    train.add_argument("--warmup-ratio", type=float)
    train.add_argument("--lr-schedule", choices=LR_DECAYS)
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
    _task_options(train, task)

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
    preprocess.add_argument("--encoding", default="utf-8",
                            help="text encoding of the file (utf-8)")
    _add_table_options(preprocess)
    preprocess.add_argument("--overwrite", action="store_true",
                            help="replace shards written earlier by tfsft preprocess")
    preprocess.add_argument("--no-progress", dest="progress", action="store_false",
                            help="no progress bars")
    _task_options(preprocess, task)

    evaluate = commands.add_parser("evaluate", help="metrics of a trained run on labelled data")
    evaluate.add_argument("run_dir")
    evaluate.add_argument("--data", required=True)
    evaluate.add_argument("--output-dir", help="also write metrics.json and the report files here")
    evaluate.add_argument("--batch-size", type=int, default=64)
    _read_options(evaluate)

    predict = commands.add_parser("predict", help="predictions for texts (arguments or a file)")
    predict.add_argument("run_dir")
    predict.add_argument("texts", nargs="*", help="texts (single-text models)")
    predict.add_argument("--input", help="file of texts (CSV/TSV/JSONL/Parquet, or .txt: one a "
                                         "line; question answering: SQuAD JSON too)")
    for flag, (help_text, owners) in _input_flags().items():
        predict.add_argument(f"--{flag.replace('_', '-')}", dest=flag,
                             help=f"{', '.join(owners)}: {help_text}")
    predict.add_argument("--batch-size", type=int, default=64)
    _read_options(predict)

    for command in _task_commands(set(commands.choices)):
        subcommand = commands.add_parser(command.name, help=command.help)
        command.add_arguments(subcommand, _command_context())
        subcommand.set_defaults(task_command=command)

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
    _read_options(export, format_flag="--data-format")

    data = commands.add_parser("data", help="check a data set (tfsft data inspect FILE)")
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
    inspect.add_argument("--encoding", help="text encoding of the files (utf-8)")
    _add_table_options(inspect)
    _task_options(inspect, task)
    return parser


class _SubcommandParser(argparse.ArgumentParser):
    """Every command also takes --verbose / --debug after its name."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        _add_debug_flags(self, default=argparse.SUPPRESS)


def _add_debug_flags(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument("--verbose", "-v", action="store_true", default=default,
                        help="debug logging")
    parser.add_argument("--debug", action="store_true", default=default,
                        help="debug logging, and the Python traceback of an error")


def _task_of(argv: Sequence[str]) -> str:
    """The task named by ``--task`` or by the ``--config`` file (read before parsing)."""
    argv = list(argv)
    for i, arg in enumerate(argv):
        if arg == "--task" and i + 1 < len(argv) and argv[i + 1] in task_names():
            return argv[i + 1]
        if arg.startswith("--task=") and arg.split("=", 1)[1] in task_names():
            return arg.split("=", 1)[1]
    for i, arg in enumerate(argv):
        path = argv[i + 1] if arg == "--config" and i + 1 < len(argv) else (
            arg.split("=", 1)[1] if arg.startswith("--config=") else None)
        if path:
            from tfsft.config import load_yaml_options

            try:
                task = load_yaml_options(path).get("task")
            except TfsftError:
                return DEFAULT_TASK  # reported when the config is loaded
            return task if task in task_names() else DEFAULT_TASK
    if next((a for a in argv if not a.startswith("-")), None) == "train":  # shards: their task
        from tfsft.data.shards.manifest import shard_defaults

        for i, arg in enumerate(argv):
            path = argv[i + 1] if arg == "--train" and i + 1 < len(argv) else (
                arg.split("=", 1)[1] if arg.startswith("--train=") else None)
            task = shard_defaults(path).get("task") if path else None
            if task in task_names():
                return task
    return DEFAULT_TASK


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(_task_of(argv)).parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose or args.debug else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    task_command = getattr(args, "task_command", None)
    if task_command is not None:
        context = _command_context()
        command = lambda args: task_command.run(args, context)  # noqa: E731
    else:
        command = {"train": _train, "preprocess": _preprocess, "evaluate": _evaluate,
                   "predict": _predict, "export": _export, "data": _data}[args.command]
    try:
        return command(args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"tfsft {args.command}: interrupted", file=sys.stderr)
        return 130
    except (TfsftError, FileExistsError) as exc:
        if args.debug:
            raise
        print(f"tfsft {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # permission denied, disk full, ... on a path tfsft was given
        if args.debug:
            raise
        print(f"tfsft {args.command}: error: {describe_os_error(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:  # a defect of tfsft: one line, the traceback with --debug
        if args.debug:
            raise
        print(f"tfsft {args.command}: internal error: {type(exc).__name__}: {exc}. This is a "
              "bug in tfsft; run the command again with --debug and report the traceback.",
              file=sys.stderr)
        return 1


def run() -> None:
    """The ``tfsft`` command: :func:`main`, then exit with its status. Once TensorFlow is
    loaded, without Python's teardown of the interpreter (about 1.5 s of freeing TensorFlow's
    objects one by one after everything is written): outputs are flushed first, and every file
    tfsft writes is already closed and renamed into place. A multi-worker process (``TF_CONFIG``)
    exits normally, leaving its collective runtime to shut down in order."""
    status = main()
    if "tensorflow" not in sys.modules or os.environ.get("TF_CONFIG"):
        sys.exit(status)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def describe_os_error(exc: OSError) -> str:
    """One line for an operating-system error, naming the path and what to do.

    >>> describe_os_error(PermissionError(13, "Permission denied", "/srv/runs/a"))
    '/srv/runs/a: permission denied. Check that you may read and write it, or choose another path.'
    """
    import errno

    where = exc.filename or "a file"
    fixes = {
        errno.EACCES: "check that you may read and write it, or choose another path",
        errno.EPERM: "check that you may read and write it, or choose another path",
        errno.ENOSPC: "free some disk space, or write to another disk",
        errno.EROFS: "the file system is read-only; choose another path",
        errno.ENOTDIR: "a part of the path is a file, not a folder; choose another path",
        errno.EISDIR: "it is a folder; name a file",
        errno.ENOENT: "check the path",
    }
    problem = (exc.strerror or str(exc)).lower()
    fix = fixes.get(exc.errno or 0, "check the path and the disk")
    return f"{where}: {problem}. {fix[0].upper()}{fix[1:]}."


def _train(args: argparse.Namespace) -> int:
    from tfsft.config import TrainConfig
    from tfsft.data.shards.manifest import shard_defaults
    from tfsft.training.trainer import seconds_since_process_start, train

    task = args.task or (_task_of(["--config", args.config]) if args.config else
                         shard_defaults(args.train).get("task", DEFAULT_TASK))
    task_fields = [f.name for f, _ in option_fields(options_class(task))]
    overrides: dict[str, Any] = {
        name: getattr(args, name) for name in TrainConfig.field_names() + task_fields
        if hasattr(args, name)
    }
    overrides["task"] = args.task
    if args.config:
        config = TrainConfig.from_yaml(args.config, overrides)
    else:
        config = TrainConfig.from_dict({k: v for k, v in overrides.items() if v is not None})
    if args.no_early_stopping:
        config.early_stopping_patience = None
    if args.no_tensorboard:
        config.tensorboard = False
    result = train(config, startup_seconds=seconds_since_process_start())
    if result.summary.get("chief") is False:  # a multi-worker run's other workers
        print(json.dumps({"run_dir": str(result.run_dir), "task": config.task,
                          "worker": result.summary["distribution"]["worker_index"],
                          "written_by": "the chief"}))
        return 0
    print(json.dumps({"run_dir": str(result.run_dir), "task": config.task,
                      "validation": result.summary["validation"],
                      "train_examples_per_second": result.summary["train_examples_per_second"],
                      "wall_seconds": result.summary["wall_seconds"]}))
    return 0


def _preprocess(args: argparse.Namespace) -> int:
    from tfsft.config import parse_delimiter
    from tfsft.data.shards import write_shards
    from tfsft.tasks.base import create_task

    name = args.task or DEFAULT_TASK
    options = {f.name: getattr(args, f.name) for f, _ in option_fields(options_class(name))
               if getattr(args, f.name, None) is not None}
    manifest = write_shards(
        create_task(name, options), args.train, args.output, model=args.model, max_length=args.max_length,
        shards=args.shards, chunk_rows=args.chunk_rows, workers=args.workers, seed=args.seed,
        overwrite=args.overwrite, file_format=args.file_format, encoding=args.encoding,
        delimiter=parse_delimiter(args.delimiter) if args.delimiter else None,
        quoting=args.quoting is not False, progress=args.progress)
    print(json.dumps({"output": str(manifest.folder), "task": manifest.task,
                      "rows": manifest.rows, "tokens": manifest.tokens,
                      "shards": len(manifest.shards), "skipped": manifest.skipped,
                      "max_length": manifest.max_length,
                      "seconds": manifest.extra["seconds"]["total"]}))
    return 0


def _task_commands(taken: set[str]) -> list[TaskCommand]:
    """The subcommands the tasks add (see :meth:`tfsft.tasks.base.Task.commands`)."""
    found: dict[str, TaskCommand] = {}
    for name in task_names():
        for command in task_class(name).commands():
            if command.name in taken or command.name in found:
                raise ConfigError(f"task {name!r} adds the command {command.name!r}, which "
                                  "another command already has")
            found[command.name] = command
    return list(found.values())


def _input_flags() -> dict[str, tuple[str, list[str]]]:
    """``tfsft predict`` flags of the tasks' named inputs: flag -> (help, tasks)."""
    flags: dict[str, tuple[str, list[str]]] = {}
    for name in task_names():
        for flag, help_text in task_class(name).input_flags.items():
            flags.setdefault(flag, (help_text, []))[1].append(name)
    return flags


def _command_context() -> CommandContext:
    """What a task's subcommand gets from the command line."""
    return CommandContext(add_read_options=_read_options, read_options=_read_keywords,
                          is_run=_is_run_folder, load_run=_load_run)


def _is_run_folder(path: str) -> bool:
    from tfsft.runs import MODEL_FILE

    return (Path(path) / MODEL_FILE).exists()


def _load_run(path: str):
    from tfsft.runs import TrainedRun

    return TrainedRun(path)


def _read_keywords(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of ``Task.read`` / ``TrainedRun.read`` from the reading flags."""
    from tfsft.config import parse_delimiter

    return {"file_format": args.file_format, "encoding": args.encoding or "utf-8",
            "delimiter": parse_delimiter(args.delimiter) if args.delimiter else None,
            "quoting": args.quoting is not False, **_column_overrides(args)}


def _column_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Column options given on the command line (for ``TrainedRun.read``)."""
    names = {f.name for task in task_names() for f, _ in option_fields(options_class(task))
             if f.metadata.get("read")}
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def _read(run, path: str, args: argparse.Namespace, labelled: bool = True):
    return run.read(path, labelled=labelled, **_read_keywords(args))


def _evaluate(args: argparse.Namespace) -> int:
    from tfsft.runs import TrainedRun

    run = TrainedRun(args.run_dir)
    data = _read(run, args.data, args)
    metrics = run.evaluate(data, output_dir=args.output_dir, batch_size=args.batch_size, verbose=0)
    print(json.dumps(metrics))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from tfsft.data.readers import read_text_lines, visible
    from tfsft.runs import TrainedRun

    run = TrainedRun(args.run_dir)
    names = run.task.text_inputs()
    inputs: dict[str, list[str]] = {name: [] for name in names}
    flags = tuple(run.task.input_flags)
    given = {flag: getattr(args, flag, None) for flag in _input_flags()}
    if flags:
        shown = " and ".join(f"--{flag.replace('_', '-')}" for flag in flags)
        if args.texts:
            raise ConfigError(f"this model takes {shown}, or --input FILE, not bare texts")
        if any(given[flag] is not None for flag in flags):
            if any(given[flag] is None for flag in flags):
                raise ConfigError(f"pass {'both ' if len(flags) == 2 else ''}{shown}")
            for flag in flags:
                if not visible(given[flag]):
                    raise ConfigError(f"--{flag.replace('_', '-')} is empty or only whitespace")
                inputs[flag].append(given[flag])
    elif any(value is not None for value in given.values()):
        flag = next(flag for flag, value in given.items() if value is not None)
        owner = _input_flags()[flag][1][0]
        shown = " and ".join(f"--{name.replace('_', '-')}"
                             for name in task_class(owner).input_flags)
        raise ConfigError(f"{shown} are for {owner} runs; this run is {run.task.name!r}: "
                          "pass texts")
    elif len(names) > 1 and (args.texts or (args.input or "").endswith(".txt")):
        raise ConfigError("this model takes text pairs: give them in a CSV/TSV/JSONL/Parquet "
                          "--input file (columns --text-column and --text-pair-column), not as "
                          "arguments or a .txt file")
    else:
        for number, text in enumerate(args.texts, 1):
            if not visible(text):
                raise ConfigError(f"text argument {number} ({text!r}) is empty or only "
                                  "whitespace")
        inputs["text"] += args.texts
    if args.input:
        if args.input.endswith((".txt", ".txt.gz", ".txt.bz2", ".txt.xz")) and len(names) == 1:
            lines, blank = read_text_lines(args.input, args.encoding or "utf-8")
            if blank:
                logger.info("%s: %d blank lines skipped", args.input, blank)
            inputs[names[0]] += lines
        else:
            for name, values in run.task.texts(_read(run, args.input, args,
                                                     labelled=False)).items():
                inputs[name] += values
    if not inputs[names[0]]:
        raise ConfigError("nothing to predict: pass " + (" and ".join(
            f"--{flag.replace('_', '-')}" for flag in flags) if flags else
            "texts as arguments") + ", or --input FILE")
    for record in run.predict_inputs(inputs, batch_size=args.batch_size):
        print(json.dumps(record, ensure_ascii=False))
    return 0


def _data(args: argparse.Namespace) -> int:
    from tfsft.config import parse_delimiter
    from tfsft.data.checks import check_data, plot_lengths, without_blank_texts
    from tfsft.data.readers import read_table
    from tfsft.io_utils import atomic_directory, atomic_write_json
    from tfsft.models.checkpoints import resolve_checkpoint
    from tfsft.tasks.base import create_task
    from tfsft.tasks.token_classification.examples import is_conll_file

    name = args.task or DEFAULT_TASK
    options = {f.name: getattr(args, f.name) for f, _ in option_fields(options_class(name))
               if getattr(args, f.name, None) is not None}
    task = create_task(name, options)
    args.max_length = args.max_length or task.default_max_length
    if not 8 <= args.max_length <= task.max_length_limit:
        raise ConfigError(f"--max-length must be between 8 and {task.max_length_limit}, got "
                          f"{args.max_length}")
    read = dict(file_format=args.file_format, encoding=args.encoding or "utf-8",
                delimiter=parse_delimiter(args.delimiter) if args.delimiter else None,
                quoting=args.quoting is not False)
    blank = {}
    sources = {"train": args.file, "validation": args.validation}
    for role, source in list(sources.items()):
        if source and hasattr(task, "columns") and not is_conll_file(source, args.file_format):
            sources[role], blank[role] = without_blank_texts(
                read_table(source, **read), [c for c in task.columns(role) if c],
                _excluded_rows(task, role))
    train = task.read(sources["train"], role="train", **read)
    validation = (task.read(sources["validation"], role="validation", **read)
                  if args.validation else None)
    tokenizer = task.load_tokenizer(resolve_checkpoint(args.model), args.max_length)
    check, lengths = check_data(task, train, validation, tokenizer, args.max_length)
    for role, where in blank.items():
        if where:
            check.report[role]["blank_texts"] = {"count": len(where), "where": where[:5]}
            check.warnings.append(f"{sources[role].source}: {len(where)} rows have an empty or "
                                  f"whitespace-only text (first: {where[0]}); tfsft train stops "
                                  "on them")
    summary = check.summary()
    print(summary)
    if args.output_dir:
        with atomic_directory(args.output_dir) as folder:
            atomic_write_json(folder / "data_check.json",
                              {**check.report, "warnings": check.warnings})
            (folder / "data_check.txt").write_text(summary + "\n", encoding="utf-8")
            plot_lengths(lengths, args.max_length, folder / "token_lengths.png")
        print(f"written to {args.output_dir}")
    return 0


def _excluded_rows(task: Any, role: str):
    """A predicate: the row carries a label of ``--exclude-labels`` (skipped by the reader)."""
    from tfsft.data.examples import normalize_label

    excluded = {str(x) for x in getattr(task.options, "exclude_labels", None) or ()}
    if not excluded or not hasattr(task, "target_columns"):
        return None
    column = task.target_columns(role)[0]
    return lambda row: normalize_label(row.get(column)) in excluded


def _export(args: argparse.Namespace) -> int:
    from exporters import export
    from tfsft.runs import TrainedRun

    def listed(value: str) -> list[str]:
        return [item.strip() for item in value.split(",") if item.strip()]

    run = TrainedRun(args.run_dir)
    data = _read(run, args.data, args) if args.data else None
    result = export(run, args.output, formats=listed(args.format), quantize=listed(args.quantize),
                    allow_mismatch=args.allow_mismatch, data=data, max_examples=args.max_examples)
    print(json.dumps({"published": result["published"], "passed": result["passed"],
                      "report": str(Path(args.output) / "export_report.json")}))
    return 0


if __name__ == "__main__":
    run()
