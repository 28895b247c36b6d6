"""Subcommands a task adds to the ``tfsft`` command line (causal-lm's ``generate``, say).

A task lists them in :meth:`tfsft.tasks.base.Task.commands`; the command line adds each one
with its arguments and runs it with a :class:`CommandContext`, which hands the task what lives
above the task layer (loading a run folder, the shared data-reading flags), so a task package
imports nothing from the layers above it.

>>> import argparse
>>> hello = TaskCommand("hello", "say hello", lambda parser, context: None,
...                     lambda args, context: print("hello") or 0)
>>> hello.run(argparse.Namespace(), None)
hello
0
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CommandContext:
    """What the command line gives a task's subcommand.

    ``add_read_options(parser)`` adds the flags every data-reading command has (column names,
    ``--format``, ``--encoding``, ``--delimiter``); ``read_options(args)`` gives them back as
    keyword arguments of ``task.data.read`` (columns included); ``is_run(path)`` tells a run
    folder from anything else and ``load_run(path)`` loads one (a
    :class:`tfsft.runs.TrainedRun`).
    """

    add_read_options: Callable[[argparse.ArgumentParser], None]
    read_options: Callable[[argparse.Namespace], dict[str, Any]]
    is_run: Callable[[str], bool]
    load_run: Callable[[str], Any]


@dataclass(frozen=True)
class TaskCommand:
    """One ``tfsft NAME`` subcommand: ``add_arguments(parser, context)`` declares its
    arguments, ``run(args, context)`` runs it and returns the exit status. Errors are raised
    as :class:`tfsft.errors.TfsftError`, which the command line reports without a traceback."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser, CommandContext], None]
    run: Callable[[argparse.Namespace, CommandContext], int]
