"""Flags shared by the commands: task options, data-reading options, the tasks' named
inputs and subcommands."""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Sequence
from typing import Any

from tfsft.errors import ConfigError, TfsftError
from tfsft.tasks.base import DEFAULT_TASK, option_fields, options_class, task_class, task_names
from tfsft.tasks.commands import TaskCommand

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


def text_encoding(value: str) -> str:
    """An ``--encoding`` value Python knows (checked before any file is read).

    >>> text_encoding("latin-1")
    'latin-1'
    """
    import codecs

    try:
        codecs.lookup(value)
    except LookupError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a known text encoding (e.g. utf-8, "
                                         "utf-16, latin-1, cp1252)") from None
    return value


def add_option(group: argparse._ArgumentGroup, field: Any, hint: Any, suffix: str = "") -> None:
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


def add_task_options(parser: argparse.ArgumentParser, task: str, columns_only: bool = False,
                     ) -> None:
    """The options of ``task`` as flags (``columns_only``: those that read data: columns,
    excluded labels, label delimiters)."""
    group = parser.add_argument_group(
        f"{'columns' if columns_only else 'options'} of task {task} (other tasks: tfsft train "
        "--task NAME --help)")
    for field, hint in option_fields(options_class(task)):
        if not columns_only or field.metadata.get("read"):
            add_option(group, field, hint)


def add_read_options(parser: argparse.ArgumentParser, format_flag: str = "--format") -> None:
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
        add_option(group, field, hint, suffix)
    group.add_argument(format_flag, dest="file_format", choices=FILE_FORMATS,
                       help="file format, when the extension does not tell")
    group.add_argument("--encoding", default=None, type=text_encoding,
                       help="text encoding of the file (utf-8)")
    add_table_options(group)


def add_table_options(parser: Any) -> None:
    parser.add_argument("--delimiter", help="CSV/TSV field delimiter, e.g. ';' or '\\t' "
                                            "(default: , for .csv, tab for .tsv)")
    parser.add_argument("--no-quoting", dest="quoting", action="store_false", default=None,
                        help="CSV/TSV: read double quotes as plain text (default: a quoted "
                             "field may hold delimiters, newlines and \"\" as pandas writes it)")


def tasks_with_flag(flag: str) -> list[str]:
    """The tasks that take ``flag`` (``--tag-column`` or ``--tag-column=tags``) as an option.

    >>> tasks_with_flag("--tag-column=tags")
    ['token-classification']
    """
    name = flag.split("=", 1)[0].removeprefix("--").removeprefix("no-").replace("-", "_")
    return [task for task in task_names()
            if any(field.name == name for field, _ in option_fields(options_class(task)))]


def input_flags() -> dict[str, tuple[str, list[str]]]:
    """``tfsft predict`` flags of the tasks' named inputs: flag -> (help, tasks)."""
    flags: dict[str, tuple[str, list[str]]] = {}
    for name in task_names():
        for flag, help_text in task_class(name).Serving.input_flags.items():
            flags.setdefault(flag, (help_text, []))[1].append(name)
    return flags


def task_commands(taken: set[str]) -> list[TaskCommand]:
    """The subcommands the tasks add (see :meth:`tfsft.tasks.base.Task.commands`)."""
    found: dict[str, TaskCommand] = {}
    for name in task_names():
        for command in task_class(name).commands():
            if command.name in taken or command.name in found:
                raise ConfigError(f"task {name!r} adds the command {command.name!r}, which "
                                  "another command already has")
            found[command.name] = command
    return list(found.values())


def column_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Column options given on the command line (for ``TrainedRun.read``)."""
    names = {f.name for task in task_names() for f, _ in option_fields(options_class(task))
             if f.metadata.get("read")}
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def read_keywords(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of ``task.data.read`` / ``TrainedRun.read`` from the reading flags."""
    from tfsft.config import parse_delimiter

    return {"file_format": args.file_format, "encoding": args.encoding or "utf-8",
            "delimiter": parse_delimiter(args.delimiter) if args.delimiter else None,
            "quoting": args.quoting is not False, **column_overrides(args)}


def task_of(argv: Sequence[str]) -> str:
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
            try:
                task = shard_defaults(path).get("task") if path else None
            except TfsftError:
                return DEFAULT_TASK  # a damaged shard folder: reported when training reads it
            if task in task_names():
                return task
    return DEFAULT_TASK
