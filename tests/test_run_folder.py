"""--overwrite removes only tfsft run folders; one training run per folder at a time."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tfsft.errors import ConfigError
from tfsft.run_folder import (
    LOCK,
    check_overwrite,
    clear_run_folder,
    is_run_folder,
    mark_run_folder,
    run_lock,
)

from .conftest import sentiment_rows, tiny_config, write_csv


def _fake_run(folder):
    mark_run_folder(folder)
    for name in ("config.yaml", "task.json", "model.keras", "history.csv"):
        (folder / name).write_text("x")
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "best.weights.h5").write_text("x")
    return folder


def test_a_run_folder_is_cleared(tmp_path):
    folder = _fake_run(tmp_path / "run")
    clear_run_folder(folder)
    assert folder.is_dir() and not any(folder.iterdir())


def test_a_run_folder_of_an_earlier_release_counts_as_one(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "config.yaml").write_text("x")
    (folder / "labels.json").write_text("{}")
    assert is_run_folder(folder)


@pytest.mark.parametrize("extra, problem", [
    ("notes.txt", "holds files tfsft did not write \\(notes.txt\\)"),
    ("train.csv", "holds files tfsft did not write \\(train.csv\\)"),
])
def test_a_run_folder_with_other_files_is_left_alone(tmp_path, extra, problem):
    folder = _fake_run(tmp_path / "run")
    (folder / extra).write_text("mine")
    with pytest.raises(ConfigError, match=problem):
        clear_run_folder(folder)
    assert (folder / extra).read_text() == "mine" and (folder / "model.keras").exists()


def test_a_folder_that_is_not_a_run_folder_is_left_alone(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "reviews.csv").write_text("text,label\n")
    with pytest.raises(ConfigError, match="is not a tfsft run folder, so --overwrite leaves it"):
        clear_run_folder(folder)
    assert (folder / "reviews.csv").exists()


@pytest.mark.parametrize("where", ["cwd", "parent", "home", "root"])
def test_protected_folders_are_never_overwritten(tmp_path, monkeypatch, where):
    work = _fake_run(tmp_path / "work")
    monkeypatch.chdir(work)
    folder = {"cwd": work, "parent": tmp_path, "home": os.path.expanduser("~"),
              "root": "/"}[where]
    from pathlib import Path

    with pytest.raises(ConfigError, match="--overwrite would delete"):
        check_overwrite(Path(folder))


def test_overwrite_refuses_a_folder_holding_the_training_data(tiny_checkpoint, tmp_path):
    from tfsft.training.trainer import train

    folder = _fake_run(tmp_path / "run")
    data = write_csv(folder / "model.keras", sentiment_rows(8))  # data hidden under a run name
    config = tiny_config(tiny_checkpoint, data, folder, overwrite=True)
    with pytest.raises(ConfigError, match="holds the data file"):
        train(config)
    assert data.exists() and (folder / "task.json").exists()


HOLD_LOCK = """
import os, sys, time
from filelock import FileLock
path = sys.argv[1]
lock = FileLock(path, timeout=0)
lock.acquire()
open(path, "w").write(f"{os.getpid()}\\n")
print("held", flush=True)
time.sleep(60)
"""


def test_a_second_run_into_a_busy_folder_fails_at_once(tmp_path, tiny_checkpoint, capsys):
    from tfsft.cli import main as cli

    folder = tmp_path / "run"
    mark_run_folder(folder)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(folder / LOCK)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        busy = f"in use by another tfsft train \\(process {holder.pid}\\)"
        with pytest.raises(ConfigError, match=busy):
            with run_lock(folder):
                pass
        data = write_csv(tmp_path / "train.csv", sentiment_rows(40))
        assert cli(["train", "--model", str(tiny_checkpoint), "--train", str(data),
                    "--output-dir", str(folder), "--epochs", "1", "--no-tensorboard"]) == 2
        assert f"is in use by another tfsft train (process {holder.pid})" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    assert (folder / LOCK).exists()  # the killed run's file stays, its lock does not
    with run_lock(folder):  # its process is gone: the lock is free
        assert (folder / LOCK).read_text().strip() == str(os.getpid())
    assert not (folder / LOCK).exists()


def test_a_run_that_fails_early_leaves_no_empty_folder(tiny_checkpoint, tmp_path):
    from tfsft.errors import DataError
    from tfsft.training.trainer import train

    missing = tmp_path / "missing.csv"
    with pytest.raises(DataError, match="file not found"):
        train(tiny_config(tiny_checkpoint, missing, tmp_path / "new-run"))
    assert not (tmp_path / "new-run").exists()


def test_a_run_that_fails_after_the_data_check_leaves_nothing_behind(tiny_checkpoint, tmp_path):
    import json

    from tfsft.training.trainer import train

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"anchor": f"good film {i}", "positive": f"fun {i}"})
                             + "\n" for i in range(20)))
    made = tmp_path / "made-by-user"
    made.mkdir()
    for output in (tmp_path / "new-run", made):
        with pytest.raises(ConfigError, match="at least 2 rows a batch"):  # checked after the data
            train(tiny_config(tiny_checkpoint, pairs, output, batch_size=1,
                              task="sentence-embedding", validation_fraction=0.25))
    assert not (tmp_path / "new-run").exists()
    assert made.is_dir() and not list(made.iterdir())  # the user's folder stays, as it was


def test_hidden_folders_of_the_user_count_as_foreign(tmp_path):
    folder = _fake_run(tmp_path / "run")
    (folder / ".git").mkdir()
    (folder / ".task.json.abc123").write_text("tfsft's own temporary file")
    with pytest.raises(ConfigError, match="holds files tfsft did not write \\(.git\\)"):
        clear_run_folder(folder)
    assert (folder / ".git").is_dir()
