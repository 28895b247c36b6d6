"""Guarding a run folder: what ``--overwrite`` may remove, and one training run at a time.

``tfsft train --overwrite`` replaces a folder only when it is a tfsft run folder (it carries the
``.tfsft-run`` marker, or is a run folder of an earlier release) holding nothing but what tfsft
writes; it never touches the working directory, the home directory, the file system root, a
folder that contains the training data, or a folder with other files in it. A lock file keeps a
second ``tfsft train`` out of a folder that a live run is writing.

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp()) / "run"
>>> mark_run_folder(folder); is_run_folder(folder)
True
>>> (folder / "my_notes.txt").write_text("keep me")
7
>>> foreign_entries(folder)
['my_notes.txt']
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tfsft.errors import ConfigError

MARKER = ".tfsft-run"
LOCK = ".tfsft-lock"
# Everything a training run writes into its folder besides its task's report files.
RUN_ENTRIES = frozenset({
    MARKER, LOCK, "config.yaml", "task.json", "labels.json", "tokenizer", "model.keras",
    "heldout.jsonl", "calibration.jsonl", "history.csv", "run.json", "training_curves.png",
    "checkpoints", "backup", "logs", "metrics.json", "data_check.json",
    "token_lengths.png", "augmented.jsonl"})

# What a run writes before training starts: a run that fails with nothing more leaves nothing.
BEFORE_TRAINING = frozenset({MARKER, "config.yaml", "data_check.json", "augmented.jsonl"})


def run_entries() -> frozenset[str]:
    """:data:`RUN_ENTRIES` plus the report files of every registered task."""
    from tfsft.tasks.base import task_class, task_names

    return RUN_ENTRIES | {name for task in task_names()
                          for name in task_class(task).Evaluation.report_files}


def mark_run_folder(folder: Path) -> None:
    """Create ``folder`` (if needed) and mark it as a tfsft run folder."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).write_text("written by tfsft train; --overwrite may replace this folder\n")


def is_run_folder(folder: Path) -> bool:
    """Whether ``folder`` was written by ``tfsft train`` (this release or an earlier one)."""
    if (folder / MARKER).is_file():
        return True
    return (folder / "config.yaml").is_file() and any(
        (folder / name).exists() for name in ("task.json", "labels.json", "history.csv"))


def foreign_entries(folder: Path) -> list[str]:
    """Names in ``folder`` that tfsft did not write (temporary files of its own excepted)."""
    known = run_entries()
    return sorted(p.name for p in folder.iterdir()
                  if p.name not in known and not _own_temporary(p.name, known))


def _own_temporary(name: str, known: frozenset[str]) -> bool:
    """tfsft's marker/lock and the temporary files of its atomic writes (``.task.json.x``)."""
    return name.startswith(".tfsft-") or any(name.startswith(f".{entry}.") for entry in known)


def _protected(folder: Path) -> str | None:
    resolved = folder.resolve()
    if resolved == Path(resolved.anchor):
        return "the file system root"
    if resolved == Path.home().resolve():
        return "your home directory"
    cwd = Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        return "the working directory (or a folder above it)"
    return None


def check_overwrite(folder: Path, inputs: Sequence[str | os.PathLike | None] = ()) -> None:
    """Raise :class:`ConfigError` unless ``--overwrite`` may remove ``folder``."""
    what = _protected(folder)
    if what:
        raise ConfigError(f"--overwrite would delete {what} ({folder}); choose a dedicated "
                          "--output-dir for the run")
    resolved = folder.resolve()
    for path in inputs:
        if path is not None and isinstance(path, (str, os.PathLike)) and (
                resolved == Path(path).resolve() or resolved in Path(path).resolve().parents):
            raise ConfigError(f"--overwrite would delete {folder}, which holds the data file "
                              f"{path}; choose another --output-dir")
    if not is_run_folder(folder):
        raise ConfigError(f"{folder} is not a tfsft run folder, so --overwrite leaves it alone; "
                          "choose another --output-dir or empty it yourself")
    foreign = foreign_entries(folder)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5
                                          else "")
        raise ConfigError(f"{folder} holds files tfsft did not write ({shown}), so --overwrite "
                          "leaves it alone; move them out or choose another --output-dir")


def entries(folder: Path) -> list[Path]:
    """What ``folder`` holds, this process's lock file aside."""
    return [p for p in folder.iterdir() if p.name != LOCK] if folder.is_dir() else []


def clear_run_folder(folder: Path, inputs: Sequence[str | os.PathLike | None] = ()) -> None:
    """Empty a run folder for ``--overwrite`` (after :func:`check_overwrite`; the lock stays)."""
    check_overwrite(folder, inputs)
    for path in entries(folder):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


@contextmanager
def run_lock(folder: Path) -> Iterator[None]:
    """Hold ``folder/.tfsft-lock`` while training; a second run into the folder fails at once.

    An OS file lock (``filelock``): it ends with its process, so a run that was killed leaves
    no lock behind. The file holds the process id of the run, for the second run's message.
    """
    from filelock import FileLock, Timeout

    created = not folder.exists()
    was_empty = created or not entries(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK
    holder = _lock_holder(path)  # read first: the holder writes its process id once it holds it
    lock = FileLock(path, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise ConfigError(f"{folder} is in use by another tfsft train (process "
                          f"{holder or _lock_holder(path) or 'starting'}); wait for it to "
                          "finish or choose another --output-dir") from None
    path.write_text(f"{os.getpid()}\n")
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        lock.release()
        if was_empty and folder.is_dir() and {
                p.name for p in folder.iterdir()} <= BEFORE_TRAINING:
            # a run that failed before training leaves nothing behind (a folder the user made
            # stays, empty, as it was)
            for path in folder.iterdir():
                path.unlink()
            if created:
                folder.rmdir()


def _lock_holder(path: Path) -> int | None:
    """The process id written in a lock file (None: no file, or nothing readable in it)."""
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None
