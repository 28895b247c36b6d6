"""What each ``tfsft`` command does once its flags are parsed."""

from __future__ import annotations

import argparse
import json
import logging
import re
from pathlib import Path
from typing import Any

from tfsft.cli.options import (
    add_read_options,
    column_overrides,
    input_flags,
    read_keywords,
    task_of,
)
from tfsft.errors import ConfigError, DataError
from tfsft.tasks.base import DEFAULT_TASK, option_fields, options_class, task_class
from tfsft.tasks.commands import CommandContext

logger = logging.getLogger("tfsft")


def command_context() -> CommandContext:
    """What a task's subcommand gets from the command line."""
    return CommandContext(add_read_options=add_read_options, read_options=read_keywords,
                          is_run=_is_run_folder, load_run=_load_run)


def _is_run_folder(path: str) -> bool:
    from tfsft.runs import MODEL_FILE

    return (Path(path) / MODEL_FILE).exists()


def _load_run(path: str):
    from tfsft.runs import TrainedRun

    return TrainedRun(path)


def _read(run, path: str, args: argparse.Namespace, labelled: bool = True):
    return run.read(path, labelled=labelled, **read_keywords(args))


def run_train(args: argparse.Namespace) -> int:
    from tfsft.training.trainer import seconds_since_process_start, train

    config = _train_config(args)
    with progress_to_stderr():  # standard output holds the JSON summary alone
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


def run_cv(args: argparse.Namespace) -> int:
    from tfsft.training.cross_validation import cross_validate

    config = _train_config(args)
    with progress_to_stderr():
        summary = cross_validate(config, args.folds, args.group_column, args.resume)
    print(summary.pop("table"), end="")
    print(json.dumps({"output_dir": config.output_dir, "mean": summary["mean"],
                      "std": summary["std"]}))
    return 0


#: ``tfsft distill`` flags that change the teacher's training options.
DISTILL_OVERRIDES = ("output_dir", "train", "validation", "max_train_rows", "max_validation_rows",
                     "epochs", "batch_size", "learning_rate", "weight_decay", "warmup_ratio",
                     "dropout", "seed", "early_stopping_patience", "backup_every_steps",
                     "lr_schedule", "precision", "overwrite", "file_format", "encoding",
                     "delimiter", "quoting")


def run_distill(args: argparse.Namespace) -> int:
    from tfsft.training.distillation import DISTILLATION_FILE, DistillationSettings, distill
    from tfsft.training.trainer import seconds_since_process_start

    settings = DistillationSettings(args.teacher, student_layers=args.student_layers,
                                    student=args.student, unlabelled=args.unlabelled,
                                    temperature=args.temperature, alpha=args.alpha)
    with progress_to_stderr():
        result = distill(settings, _student_overrides(args),
                         startup_seconds=seconds_since_process_start())
    return _print_student(result, DISTILLATION_FILE)


def run_prune(args: argparse.Namespace) -> int:
    from tfsft.training.pruning import PRUNING_FILE, prune
    from tfsft.training.trainer import seconds_since_process_start

    with progress_to_stderr():
        result = prune(args.teacher, args.heads, args.ffn, _student_overrides(args),
                       recovery_epochs=args.recovery_epochs, temperature=args.temperature,
                       alpha=args.alpha, unlabelled=args.unlabelled,
                       startup_seconds=seconds_since_process_start())
    return _print_student(result, PRUNING_FILE)


def _student_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The training options ``distill`` / ``prune`` change in the teacher's recipe."""
    overrides = {name: getattr(args, name, None) for name in DISTILL_OVERRIDES}
    overrides.update(column_overrides(args))  # files whose columns differ from the teacher's
    if args.no_early_stopping:
        overrides["no_early_stopping"] = True
    if args.no_tensorboard:
        overrides["tensorboard"] = False
    return overrides


def _print_student(result: Any, report_file: str) -> int:
    record = json.loads((result.run_dir / report_file).read_text(encoding="utf-8"))
    print(json.dumps({"run_dir": str(result.run_dir), "validation": result.summary["validation"],
                      "teacher": record["teacher"], "student": record["student"],
                      **({"pruned": record["pruned"]} if "pruned" in record else {})}))
    return 0


def progress_to_stderr() -> Any:
    """A context in which Keras's progress bars (written to standard output) go to standard
    error, so that ``tfsft train ... > result.json`` or ``| jq`` gets the summary alone."""
    import contextlib
    import sys

    return contextlib.redirect_stdout(sys.stderr)


def _train_config(args: argparse.Namespace) -> Any:
    """The :class:`~tfsft.config.TrainConfig` of ``train`` (or ``cv``) flags and ``--config``."""
    from tfsft.config import TrainConfig
    from tfsft.data.shards.manifest import shard_defaults

    task = args.task or (task_of(["--config", args.config]) if args.config else
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
    if args.validation_fraction is not None and config.validation is not None:
        raise ConfigError(f"--validation-fraction splits the training data when there is no "
                          f"validation file; with --validation {config.validation} it would do "
                          "nothing: leave out one of them")
    if args.no_early_stopping:
        config.early_stopping_patience = None
    if args.no_tensorboard:
        config.tensorboard = False
    if getattr(args, "focal_gamma", None) is not None and config.task_options.get(
            "loss") != "focal":  # options drop a saved default of 2; a typed one is refused
        raise ConfigError("--focal-gamma is the exponent of --loss focal; pass --loss focal "
                          "with it, or leave it out")
    return config


def run_preprocess(args: argparse.Namespace) -> int:
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
                      "examples": manifest.extra.get("examples"), "rows": manifest.rows,
                      "tokens": manifest.tokens,
                      "shards": len(manifest.shards), "skipped": manifest.skipped,
                      "max_length": manifest.max_length,
                      "seconds": manifest.extra["seconds"]["total"]}))
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from tfsft.runs import TrainedRun

    run = TrainedRun(args.run_dir)
    run.check_report_folder(args.output_dir)
    data = _read(run, args.data, args)
    own = run.task.options.to_dict()
    overrides = {k: v for k, v in column_overrides(args).items() if k in own}
    if overrides:  # the task's read options (columns, an evaluation corpus) hold for this run
        run.task = run.task.with_options(**overrides)
    metrics = run.evaluate(data, output_dir=args.output_dir, batch_size=args.batch_size, verbose=0)
    print(json.dumps(metrics))
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from tfsft.data.readers import read_numbered_text_lines, visible
    from tfsft.runs import TrainedRun

    run = TrainedRun(args.run_dir)
    run.check_columns(column_overrides(args))
    names = run.task.serving.text_inputs()
    inputs: dict[str, list[str]] = {name: [] for name in names}
    places: list[dict[str, Any]] = []  # where each --input text is in its file
    flags = tuple(run.task.serving.input_flags)
    given = {flag: getattr(args, flag, None) for flag in input_flags()}
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
        owner = input_flags()[flag][1][0]
        shown = " and ".join(f"--{name.replace('_', '-')}"
                             for name in task_class(owner).Serving.input_flags)
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
        own = run.task.options.to_dict()
        reader = run.task.with_options(**{k: v for k, v in column_overrides(args).items()
                                          if k in own}).data
        if len(names) == 1 and reader.reads_text_lines(args.input, args.encoding or "utf-8"):
            numbered, blank = read_numbered_text_lines(args.input, args.encoding or "utf-8")
            if blank:
                logger.info("%s: %d blank lines skipped", args.input, blank)
            inputs[names[0]] += [text for _, text in numbered]
            places += [{"line": number} for number, _ in numbered]
        else:
            examples = _read(run, args.input, args, labelled=False)
            texts = run.task.data.texts(examples)
            for name, values in texts.items():
                inputs[name] += values
            read = len(texts[names[0]])
            locations = list(getattr(examples, "locations", None) or [])
            ids = list(getattr(examples, "ids", None) or [])  # question answering's ids
            places += [{**input_place(locations[i] if len(locations) == read else None),
                        **({"id": ids[i]} if len(ids) == read else {})} for i in range(read)]
    if not inputs[names[0]] and args.input:
        raise ConfigError(f"{args.input}: the file holds no texts to predict (it is empty or "
                          "only blank lines); give one text per line, or rows of a "
                          "CSV/TSV/JSONL/Parquet file")
    if not inputs[names[0]]:
        raise ConfigError("nothing to predict: pass " + (" and ".join(
            f"--{flag.replace('_', '-')}" for flag in flags) if flags else
            "texts as arguments") + ", or --input FILE")
    places = [{}] * (len(inputs[names[0]]) - len(places)) + places  # texts given as arguments
    for place, record in zip(places, run.predict_inputs(inputs, batch_size=args.batch_size),
                             strict=True):
        print(json.dumps({**place, **record}, ensure_ascii=False))
    return 0


def input_place(location: str | None) -> dict[str, int]:
    """Where a prediction's input is in the ``--input`` file, as a record's first key:
    ``{"line": 12}`` (a text line, a CSV/JSONL row or a CoNLL sentence's first line) or
    ``{"row": 3}`` (Parquet); nothing where it is not known.

    >>> input_place("line 12"), input_place("row 3 (id 'q7')"), input_place(None)
    ({'line': 12}, {'row': 3}, {})
    """
    match = re.match(r"(line|row) (\d+)\b", location or "")
    return {match.group(1): int(match.group(2))} if match else {}


def run_clean(args: argparse.Namespace) -> int:
    from tfsft.config import parse_delimiter
    from tfsft.data.cleaning import against_keys, clean_table, format_report, hashable_label
    from tfsft.data.readers import guess_format, read_table, require_file
    from tfsft.data.writers import write_table
    from tfsft.io_utils import atomic_write_json, atomic_write_text
    from tfsft.tasks.base import create_task
    from tfsft.text_normalization import DEFAULT_STEPS, parse_steps

    name = args.task or DEFAULT_TASK
    options = {f.name: getattr(args, f.name) for f, _ in option_fields(options_class(name))
               if getattr(args, f.name, None) is not None}
    task = create_task(name, options)
    if not hasattr(task.data, "columns") or not hasattr(task.data, "target_columns"):
        raise ConfigError(f"tfsft data clean takes tables of texts and labels (text-"
                          f"classification, multi-label, regression), not {name} data")
    steps_given = [s.strip() for s in args.steps.split(",")]
    steps = parse_steps([s for s in steps_given if s != "default"]
                        + (list(DEFAULT_STEPS) if "default" in steps_given else []))
    path = require_file(args.file)
    if not args.output.strip():
        raise ConfigError("--output is empty; name the cleaned file to write (e.g. "
                          "train.clean.tsv)")
    output = Path(args.output)
    try:
        guess_format(output)
    except DataError:
        raise ConfigError(f"--output {args.output}: name it .csv, .tsv, .jsonl or .parquet "
                          "(optionally .gz, .bz2 or .xz): its format comes from its "
                          "name") from None
    reports = {suffix: Path(f"{output}.report.{suffix}") for suffix in ("json", "txt")}
    given = [path, *(Path(a) for a in args.against or [])]
    for target in (output, *reports.values()):
        if any(p.exists() and target.exists() and target.resolve() == p.resolve()
               for p in given):
            raise ConfigError(f"--output {args.output} would replace the input {target}; name "
                              "a new file")
        _check_report_file(str(target), [], args.overwrite)
    read = dict(file_format=args.file_format, encoding=args.encoding or "utf-8",
                delimiter=parse_delimiter(args.delimiter) if args.delimiter else None,
                quoting=args.quoting is not False)
    text_columns = [c for c in task.data.columns("train") if c]
    label_columns = [] if args.unlabelled else list(task.data.target_columns("train"))
    against_columns = [args.against_text_column or text_columns[0]]
    if len(text_columns) > 1:
        against_columns.append(args.against_text_pair_column or text_columns[1])
    against = (against_keys(args.against, against_columns, steps, read) if args.against
               else None)
    table = read_table(str(path), **read)
    read_label = None
    if label_columns:
        reader = task.data.target_reader(table, "train")
        unordered = task.data.unordered_targets
        read_label = lambda row, where: hashable_label(reader(row, where), unordered)  # noqa: E731
    rows, report = clean_table(table, text_columns, label_columns, steps, args.conflicts,
                               not args.keep_duplicates, against, read_label)
    if not rows:
        raise DataError(str(path), None, f"no row is left after cleaning ({report['rows']} "
                        "dropped)", "check the report's reasons: " + ", ".join(
                            f"{s['step']} {s['rows']}" for s in report["steps"] if s["rows"]))
    report["output"] = str(output)
    report["train_with"] = f"--normalize {','.join(steps) or 'none'}"
    write_table(output, table.columns, rows)  # the format of its name, with its own delimiter
    text = format_report(report) + (
        f"Train with {report['train_with']} so that predict and the SavedModel normalize new "
        "texts the same way.\n")
    if args.quoting is False and guess_format(output) in ("csv", "tsv"):
        text += (f"{output} is written with standard quoting (a field holding a quote, the "
                 "delimiter or a line break is quoted): read it without --no-quoting.\n")
    atomic_write_json(reports["json"], report)
    atomic_write_text(reports["txt"], text)
    print(text, end="")
    return 0


#: Exit status of ``tfsft data drift`` when a signal passes its threshold.
DRIFT_EXIT = 3


def _without_blank_rows(task: Any, path: str, read: dict[str, Any],
                        role: str) -> tuple[Any, list[str]]:
    """``path``'s table without the rows whose text is blank (or ``path`` itself when none
    are, or when it is no table: a CoNLL or SQuAD document, which the task's reader reads), and
    where the blank rows were: counted by ``data inspect`` and ``data drift``, not refused."""
    from tfsft.data.readers import read_table

    try:
        table = read_table(path, **read)
    except DataError:
        return path, []
    kept, where = task.data.without_blank_texts(table, role)
    return (kept if where else path), where


def _check_report_file(output: str, inputs: list[str | None], overwrite: bool) -> None:
    """Refuse a report path that is an input, a folder, an existing file (without
    ``--overwrite``) or in a folder this user cannot write, before any work."""
    import os

    target = Path(output)
    if any(given and Path(given).exists() and target.exists()
           and target.resolve() == Path(given).resolve() for given in inputs):
        raise ConfigError(f"--output {output} is one of the input files; name a new file")
    if target.is_dir():
        raise ConfigError(f"--output {output} is a folder; name a file")
    if target.exists() and not overwrite:
        raise ConfigError(f"--output {output} exists; pass --overwrite to replace it, or name "
                          "a new file")
    folder = next(p for p in target.absolute().parents if p.exists())
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise ConfigError(f"--output {output}: {folder} is not a folder this user can write to")


def run_drift(args: argparse.Namespace) -> int:
    from tfsft.data.drift import served_labels
    from tfsft.data.readers import (
        TEXT_LINE_SUFFIXES,
        read_numbered_text_lines,
        read_text_lines,
        require_file,
    )
    from tfsft.io_utils import atomic_write_json
    from tfsft.runs import TrainedRun

    run = TrainedRun(args.run_dir)
    run.check_columns(column_overrides(args))
    path = str(require_file(args.input))
    if args.output:
        _check_report_file(args.output, [path, args.predictions], args.overwrite)
        if run.run_dir.resolve() in Path(args.output).absolute().resolve().parents:
            raise ConfigError(f"--output {args.output} is inside the run folder "
                              f"{run.run_dir}; write the report elsewhere, so the run keeps "
                              "only what training wrote")
    if args.predictions and not (run.task.data.target_summary(
            run.saved_examples()) or {}).get("counts"):
        raise ConfigError(f"{run.run_dir} is a {run.task.name} run: its predictions have no "
                          "labels to compare; leave out --predictions (the inputs are still "
                          "checked)")
    blank = 0
    single = len(run.task.serving.text_inputs()) == 1
    if not single and path.endswith(TEXT_LINE_SUFFIXES):
        raise ConfigError("this run takes text pairs: give the served inputs in a CSV/TSV/"
                          "JSONL/Parquet file with its text columns, not a .txt file")
    if single and run.task.data.reads_text_lines(path, args.encoding or "utf-8"):
        texts, blank = read_text_lines(path, args.encoding or "utf-8")
        live = run.task.data.examples_from_texts({run.task.serving.text_inputs()[0]: texts})
        live.source = path
    else:
        keywords = read_keywords(args)
        source, where = _without_blank_rows(run.task, path, {
            k: keywords[k] for k in ("file_format", "encoding", "delimiter", "quoting")}, "eval")
        blank = len(where)
        live = run.read(source, labelled=False, **keywords)
    if not len(live):
        raise DataError(path, None, "holds no inputs (it is empty or only blank)",
                        "give the served texts, one a line or one a row")
    served = served_labels(args.predictions) if args.predictions else None
    report = run.drift(live, blank=blank, served=served)
    if args.predictions:
        records = len(read_numbered_text_lines(args.predictions)[0])
        report["signals"]["labels"]["prediction_records"] = records
        if records != len(live):
            note = (f"{args.predictions} holds {records} prediction records for "
                    f"{len(live)} inputs in {path}: the label mix describes other inputs than "
                    "the ones checked")
            report.setdefault("warnings", []).append(note)
            logger.warning("%s", note)
    for name, signal in report["signals"].items():
        shown = {k: v for k, v in signal.items()
                 if k not in ("verdict", "rule", "reference_shares", "live_shares")}
        print(f"{name:14} {signal['verdict']:6} {json.dumps(shown)}  ({signal['rule']})")
    if args.output:
        atomic_write_json(args.output, report)
    if report["drift"]:
        print(f"drift: {', '.join(report['drift'])} (against {report['reference']['examples']} "
              f"validation examples of {run.run_dir})")
        return DRIFT_EXIT
    print(f"no drift in {report['live']['examples']} inputs")
    return 0


def run_data(args: argparse.Namespace) -> int:
    from tfsft.config import parse_delimiter
    from tfsft.data.checks import check_data, plot_lengths, refuse_certain_mistakes
    from tfsft.data.shards.manifest import is_shard_folder, read_manifest, shard_report
    from tfsft.io_utils import atomic_directory, atomic_write_json
    from tfsft.models.checkpoints import resolve_checkpoint
    from tfsft.tasks.base import create_task

    if args.data_command == "drift":
        return run_drift(args)
    if args.data_command == "clean":
        return run_clean(args)
    if is_shard_folder(args.file):  # tokenized already: what its manifest says
        report = shard_report(read_manifest(args.file))
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return 0
    name = args.task or DEFAULT_TASK
    options = {f.name: getattr(args, f.name) for f, _ in option_fields(options_class(name))
               if getattr(args, f.name, None) is not None}
    task = create_task(name, options)
    if args.max_length is None:
        args.max_length = task.data.default_max_length
    if not 8 <= args.max_length <= task.data.max_length_limit:
        raise ConfigError(f"--max-length must be between 8 and {task.data.max_length_limit}, "
                          f"got {args.max_length}")
    read = dict(file_format=args.file_format, encoding=args.encoding or "utf-8",
                delimiter=parse_delimiter(args.delimiter) if args.delimiter else None,
                quoting=args.quoting is not False)
    blank = {}
    sources = {"train": args.file, "validation": args.validation}
    for role, source in list(sources.items()):
        if source:
            sources[role], blank[role] = _without_blank_rows(task, source, read, role)
    train = task.data.read(sources["train"], role="train", **read)
    validation = (task.data.read(sources["validation"], role="validation", **read)
                  if args.validation else None)
    tokenizer = task.data.load_tokenizer(resolve_checkpoint(args.model), args.max_length)
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
    refuse_certain_mistakes(check, args.validation)  # what tfsft train would stop on: exit 2
    return 0


def run_export(args: argparse.Namespace) -> int:
    from exporters import export
    from tfsft.runs import TrainedRun

    def listed(value: str) -> list[str]:
        return [item.strip() for item in value.split(",") if item.strip()]

    run = TrainedRun(args.run_dir)
    data = _read(run, args.data, args) if args.data else None
    result = export(run, args.output, formats=listed(args.format), quantize=listed(args.quantize),
                    allow_mismatch=args.allow_mismatch, data=data, max_examples=args.max_examples)
    left_out = [f"{a['artifact']} {a['variant']}" for a in result.get("not_published", [])]
    print(json.dumps({"published": result["published"], "passed": result["passed"],
                      "not_published": left_out,
                      "report": str(Path(args.output) / "export_report.json")}))
    return 0


HANDLERS = {"train": run_train, "cv": run_cv, "distill": run_distill, "prune": run_prune,
            "preprocess": run_preprocess, "evaluate": run_evaluate, "predict": run_predict,
            "export": run_export, "data": run_data}
