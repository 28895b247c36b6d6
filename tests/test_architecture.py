"""The layers written down in pyproject.toml ([tool.importlinter]) and docs/architecture.md hold,
and a task brings its own command-line subcommands without the CLI naming it."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from tfsft.tasks.base import Task, TaskOptions, register_task, task_class, task_names, unregister_task
from tfsft.tasks.commands import CommandContext, TaskCommand

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def test_import_contracts_are_kept():
    """Zero upward imports (function-level ones included), no task importing another, exporters
    on the public run/task API only, no cycles: ``lint-imports`` on pyproject.toml's contracts."""
    if not LINT_IMPORTS.exists():
        pytest.skip("import-linter is not installed (pip install -e .[test])")
    done = subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_every_built_in_task_lives_in_its_own_package():
    for name in task_names():
        module = task_class(name).__module__
        package = module.rsplit(".", 1)[0]
        assert module.startswith("tfsft.tasks.") and package != "tfsft.tasks", (name, module)
        assert (REPO / package.replace(".", "/") / "__init__.py").is_file(), package


def _hello(args: argparse.Namespace, context: CommandContext) -> int:
    print(f"hello {args.who} ({context.is_run(args.who)})")
    return 0


class GreetingTask(Task):
    name = "greeting-test"
    Options = TaskOptions

    @classmethod
    def commands(cls):
        return (TaskCommand("greet", "say hello", lambda parser, context:
                            parser.add_argument("who"), _hello),)


def test_a_task_adds_a_subcommand_to_the_command_line(capsys, tmp_path):
    from tfsft.cli import build_parser, main

    register_task(GreetingTask)
    try:
        assert "greet" in build_parser().format_help()
        assert main(["greet", str(tmp_path)]) == 0
        assert capsys.readouterr().out.strip() == f"hello {tmp_path} (False)"
    finally:
        unregister_task(GreetingTask.name)
    assert "greet" not in build_parser().format_help()


def test_a_task_command_may_not_take_a_built_in_name():
    from tfsft.cli import build_parser
    from tfsft.errors import ConfigError

    class Clash(GreetingTask):
        name = "clash-test"

        @classmethod
        def commands(cls):
            return (TaskCommand("train", "no", lambda parser, context: None, _hello),)

    register_task(Clash)
    try:
        with pytest.raises(ConfigError, match="adds the command 'train'"):
            build_parser()
    finally:
        unregister_task(Clash.name)
