"""Advice in error messages, checked against the command that failed.

Errors are raised deep in the library, where the command is unknown: a data reader advises
``pass --repair-tags`` whether ``tfsft train`` or ``tfsft evaluate`` read the file. Before an error
is printed, each flag it names is looked up in the parser of the command that ran; a flag that
command does not take gets a note naming the commands that do.

>>> import argparse
>>> parser = argparse.ArgumentParser(prog="tfsft")
>>> commands = parser.add_subparsers(dest="command")
>>> _ = commands.add_parser("train").add_argument("--repair-tags", action="store_true")
>>> _ = commands.add_parser("evaluate")
>>> args = parser.parse_args(["evaluate"])
>>> print(checked_advice("x.conll, line 3: I-PER after O. Pass --repair-tags.", parser, args))
x.conll, line 3: I-PER after O. Pass --repair-tags. (tfsft evaluate takes no --repair-tags; \
it is an option of tfsft train.)
>>> args = parser.parse_args(["train"])
>>> checked_advice("Pass --repair-tags.", parser, args)
'Pass --repair-tags.'
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterable, Iterator

# A long option as messages write it: --name, --two-words (not "---" rules or "a--b")
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9]*(?:-[a-z0-9]+)*")


def named_flags(text: str) -> list[str]:
    """The long options ``text`` names, each once, in order; not those of a command quoted in
    backticks (another tool's, such as `pip install --no-deps`).

    >>> named_flags("pass --tag-scheme, or --repair-tags (not --tag-scheme twice)")
    ['--tag-scheme', '--repair-tags']
    >>> named_flags("run `pip install --no-deps x`, then pass --model")
    ['--model']
    """
    return list(dict.fromkeys(FLAG.findall(re.sub(r"`[^`]*`", "", text))))


def _own_clauses(message: str, command: str) -> str:
    """The clauses of ``message`` that do not name another tfsft command: a flag in "write it
    again with tfsft embed RUN --output FILE" is that command's, not one to check.

    >>> _own_clauses("not an index; write it with tfsft embed --output F. Pass --top-k",
    ...              "tfsft search")
    'not an index. Pass --top-k'
    """
    program = command.split()[0]
    mention = re.compile(rf"\b{re.escape(program)} ([a-z][\w-]*)")
    message = re.sub(r"`[^`]*`", "", message)  # another command, quoted whole
    clauses = re.split(r"(?<=[.;])\s+|;\s*|\s*\(", message)
    kept = [c for c in clauses
            if not any(m.group(0) != " ".join(command.split()[:2]) and
                       not command.startswith(m.group(0)) for m in mention.finditer(c))]
    return ". ".join(c.rstrip(".") for c in kept if c)


def command_parsers(parser: argparse.ArgumentParser,
                    path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...],
                                                                  argparse.ArgumentParser]]:
    """Every command of ``parser`` as ``(("data", "inspect"), its parser)``, leaves and inner."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, subparser in action.choices.items():
                yield (*path, name), subparser
                yield from command_parsers(subparser, (*path, name))


def option_strings(parser: argparse.ArgumentParser) -> set[str]:
    return {flag for action in parser._actions for flag in action.option_strings}


def command_path(parser: argparse.ArgumentParser,
                 args: argparse.Namespace) -> list[argparse.ArgumentParser]:
    """The parsers ``args`` went through, from ``parser`` down to its command's."""
    chain = [parser]
    while True:
        actions = [a for a in chain[-1]._actions if isinstance(a, argparse._SubParsersAction)]
        name = getattr(args, actions[0].dest, None) if actions else None
        if name is None or name not in actions[0].choices:
            return chain
        chain.append(actions[0].choices[name])


def command_name(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """The command ``args`` ran, as the user typed it: ``tfsft data inspect``."""
    return " ".join([parser.prog, *(p.prog.split()[-1] for p in command_path(parser, args)[1:])])


# An option's name as the Python API and config files write it: two or more snake_case words
OPTION_NAME = re.compile(r"(?<![\w.'/-])[a-z][a-z0-9]*(?:_[a-z0-9]+)+(?![\w'/-]|\.\w)")


def as_flags(message: str, parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """``message`` with each option name (``batch_size``) that is a flag of the command of
    ``args`` written as that flag (``--batch-size``): the library's messages name options as
    the Python API and config files spell them.

    >>> parser = argparse.ArgumentParser(prog="tfsft")
    >>> _ = parser.add_argument("--batch-size")
    >>> as_flags("batch_size must be >= 1 (data_check.json, 'text_column')", parser,
    ...          parser.parse_args([]))
    "--batch-size must be >= 1 (data_check.json, 'text_column')"
    """
    taken = set().union(*(option_strings(p) for p in command_path(parser, args)))

    def flag(match: re.Match) -> str:
        name = "--" + match.group(0).replace("_", "-")
        return name if name in taken else match.group(0)

    return OPTION_NAME.sub(flag, message)


def checked_advice(message: str, parser: argparse.ArgumentParser, args: argparse.Namespace,
                   others: Iterable[argparse.ArgumentParser] = ()) -> str:
    """``message`` with a note for each flag it names that the command of ``args`` (parsed by
    ``parser``) does not take: which commands of ``parser`` or ``others`` (the parsers with
    other tasks' options) take it (see the module docstring)."""
    taken = set().union(*(option_strings(p) for p in command_path(parser, args)))
    command = command_name(parser, args)
    notes, trees = [], None
    for flag in named_flags(_own_clauses(message, command)):
        if flag in taken:
            continue
        if trees is None:  # built once, and only when a flag is missing (others may be lazy)
            trees = [parser, *others]
        owners = list(dict.fromkeys(" ".join(path) for tree in trees
                                    for path, sub in command_parsers(tree)
                                    if flag in option_strings(sub)))
        where = (f"it is an option of {', '.join(f'{parser.prog} {o}' for o in owners)}"
                 if owners else "no command takes it")
        notes.append(f"{command} takes no {flag}; {where}")
    if not notes:
        return message
    return f"{message} ({'; '.join(notes)}.)"
