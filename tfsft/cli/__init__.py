"""The ``tfsft`` command line: train, evaluate, predict, export.

Run ``tfsft COMMAND --help`` for the options of each command, and
``tfsft train --task TASK --help`` for a task's own options. ``parser`` builds the flags,
``commands`` runs each command, ``options`` holds the flags several commands share.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from tfsft.cli.advice import as_flags, checked_advice, command_name
from tfsft.cli.commands import HANDLERS, command_context
from tfsft.cli.options import task_of
from tfsft.cli.parser import build_parser
from tfsft.cli.startup import quiet_tensorflow_import
from tfsft.errors import TfsftError
from tfsft.tasks.base import task_names

__all__ = ["build_parser", "describe_os_error", "main", "run"]


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(task_of(argv))
    args = parse_arguments(parser, argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose or args.debug else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if not args.debug:  # TensorFlow's C++ lines (start-up, oneDNN notices) stay off the terminal
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        quiet_tensorflow_import()
    if not (args.verbose or args.debug):  # and its Python warnings (tf.function retracing)
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
    name = command_name(parser, args)
    task_command = getattr(args, "task_command", None)
    if task_command is not None:
        context = command_context()
        command = lambda args: task_command.run(args, context)  # noqa: E731
    else:
        command = HANDLERS[args.command]
    try:
        return command(args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"{name}: interrupted{_INTERRUPTED_HINTS.get(args.command, '')}", file=sys.stderr)
        return 130
    except (TfsftError, FileExistsError) as exc:
        if args.debug:
            raise
        message = str(exc)
        config = getattr(args, "config", None)
        if not (config and message.startswith(str(config))):  # a config file's keys stay keys
            message = as_flags(message, parser, args)
        message = checked_advice(message, parser, args,
                                 (build_parser(task) for task in task_names()))
        print(f"{name}: error: {message}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader of standard output left (`| head`): end quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the final flush has nowhere to fail
        return 128 + 13  # as a process ended by SIGPIPE
    except OSError as exc:  # permission denied, disk full, ... on a path tfsft was given
        if args.debug:
            raise
        print(f"{name}: error: {describe_os_error(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:  # a defect of tfsft: one line, the traceback with --debug
        if args.debug:
            raise
        print(f"{name}: internal error: {type(exc).__name__}: {exc}. This is a "
              "bug in tfsft; run the command again with --debug and report the traceback.",
              file=sys.stderr)
        return 1


#: What to do after Ctrl-C, by command (those that resume).
_INTERRUPTED_HINTS = {
    "train": "; run the same command again to resume from the last backup",
    "distill": "; run the same command again to resume from the last backup",
    "cv": "; run the same command with --resume to finish the folds left",
}


def parse_arguments(parser, argv: list[str]):
    """``parser.parse_args(argv)``, except that words after the options of ``predict`` and
    ``generate`` are texts too (``tfsft predict RUN --batch-size 8 "a text"``): argparse gives
    a ``nargs="*"`` positional only the words before the first option."""
    args, extra = parser.parse_known_args(argv)
    trailing = getattr(args, "trailing_positionals", None)
    if extra and trailing and not any(word.startswith("-") and word != "-" for word in extra):
        getattr(args, trailing).extend(extra)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}{_other_task_hint(args, extra, argv)}")
    return args


def _other_task_hint(args: argparse.Namespace, extra: list[str], argv: list[str]) -> str:
    """Where an unknown flag is an option of other tasks, which ones (and how to choose)."""
    from tfsft.cli.options import tasks_with_flag

    for word in extra:
        tasks = tasks_with_flag(word) if word.startswith("--") else []
        if not tasks:
            continue
        flag = word.split("=", 1)[0]
        if not hasattr(args, "task"):  # a command on a trained run
            return (f" ({flag} is a training option of {', '.join(tasks)}; this command keeps "
                    "what the run was trained with)")
        current = task_of(argv) if args.task is None else args.task
        return (f" ({flag} is an option of {', '.join(tasks)}, not of {current}: pass --task "
                + " or --task ".join(tasks) + ")")
    return ""


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
