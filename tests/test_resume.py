"""A run killed with SIGKILL mid-epoch resumes from its backup when the same command runs again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from .conftest import sentiment_rows, sigkill_when, write_csv


def test_sigkill_mid_epoch_then_resume(tiny_checkpoint, tmp_path):
    train_file = write_csv(tmp_path / "train.csv", sentiment_rows(3000, seed=3))
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "tfsft.cli", "train", "--model", str(tiny_checkpoint),
               "--train", str(train_file), "--output-dir", str(run_dir), "--epochs", "2",
               "--batch-size", "4", "--max-length", "16", "--learning-rate", "1e-3",
               "--backup-every-steps", "5", "--no-early-stopping", "--no-tensorboard"]
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3")
    metadata = run_dir / "backup" / "training_metadata.json"

    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    def mid_epoch_backup() -> bool:
        try:
            state = json.loads(metadata.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return False
        return state["epoch"] == 0 and state["batch"] >= 30

    sigkill_when(first, mid_epoch_backup)
    assert first.returncode == -signal.SIGKILL, first.stderr.read().decode()[-2000:]
    assert not (run_dir / "model.keras").exists()
    killed_at = json.loads(metadata.read_text())  # the backup the restart will find
    assert killed_at["epoch"] == 0 and killed_at["batch"] >= 30

    # a copy of the interrupted folder resumes too (where it lies is not an option), but not
    # with other options, which the refusal names
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    command[command.index(str(run_dir))] = str(copy)
    run_dir = copy
    other = [*command[:command.index("1e-3")], "2e-3", *command[command.index("1e-3") + 1:]]
    refused = subprocess.run(other, env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2
    assert "other options (--learning-rate: 0.001 -> 0.002)" in refused.stderr, refused.stderr
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Resuming from the backup" in second.stderr
    summary = json.loads((run_dir / "run.json").read_text())
    assert summary["resumed_from"] == killed_at
    # The optimizer continued from the backup's step count instead of starting again at 0.
    steps_per_epoch = summary["steps_per_epoch"]
    expected_steps = killed_at["batch"] + 1 + 2 * steps_per_epoch
    assert summary["optimizer_steps"] == expected_steps
    assert not (run_dir / "backup").exists()


def test_a_backup_cut_off_while_saving_leaves_the_previous_one(tmp_path):
    import keras
    import numpy as np

    from tfsft.training.callbacks import AtomicBackupAndRestore

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.ones((4, 3)), np.ones((4, 2)), verbose=0)
    backup = AtomicBackupAndRestore(str(tmp_path / "backup"), save_freq=1)
    backup.set_model(model)
    backup._save_model()
    saved = (tmp_path / "backup" / "latest.weights.h5").read_bytes()

    def interrupted(filepath, overwrite=True):  # a stop in the middle of writing
        with open(filepath, "wb") as handle:
            handle.write(saved[: len(saved) // 3])
        raise KeyboardInterrupt

    model.save_weights = interrupted
    with pytest.raises(KeyboardInterrupt):
        backup._save_model()
    assert (tmp_path / "backup" / "latest.weights.h5").read_bytes() == saved
    assert sorted(p.name for p in (tmp_path / "backup").iterdir() if p.name.startswith(".")) == []
