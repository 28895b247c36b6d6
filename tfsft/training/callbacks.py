"""The callbacks a fine-tuning run uses, built from its options.

>>> import tempfile
>>> names = [type(c).__name__ for c in standard_callbacks(tempfile.mkdtemp(), patience=2)]
>>> names
['BackupAndRestore', 'ModelCheckpoint', 'CSVLogger', 'EarlyStopping', 'TensorBoard']
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import keras

logger = logging.getLogger(__name__)

BACKUP_DIR = "backup"
BEST_CHECKPOINT = "checkpoints/best.weights.h5"
HISTORY_CSV = "history.csv"


def standard_callbacks(
    run_dir: str | Path,
    monitor: str = "val_loss",
    patience: int | None = 2,
    reduce_lr_on_plateau: bool = False,
    backup_every_steps: int | None = 200,
    tensorboard: bool = True,
) -> list[keras.callbacks.Callback]:
    """Backup/resume, best checkpoint, CSV history, early stopping, plateau LR and TensorBoard.

    ``backup_every_steps`` saves a resumable backup every that many steps (and at each epoch end)
    under ``run_dir/backup``; a restarted run picks it up. ``None`` backs up at epoch ends only.
    """
    run_dir = Path(run_dir)
    mode = "max" if "acc" in monitor or "auc" in monitor or "f1" in monitor else "min"
    callbacks: list[keras.callbacks.Callback] = [
        keras.callbacks.BackupAndRestore(
            backup_dir=str(run_dir / BACKUP_DIR),
            save_freq=backup_every_steps or "epoch",
            double_checkpoint=True,
        ),
        keras.callbacks.ModelCheckpoint(
            str(run_dir / BEST_CHECKPOINT), monitor=monitor, mode=mode,
            save_best_only=True, save_weights_only=True,
        ),
        keras.callbacks.CSVLogger(str(run_dir / HISTORY_CSV), append=True),
    ]
    if patience is not None:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor=monitor, mode=mode, patience=patience, restore_best_weights=True, verbose=1))
    if reduce_lr_on_plateau:
        callbacks.append(keras.callbacks.ReduceLROnPlateau(
            monitor=monitor, mode=mode, factor=0.5, patience=1, verbose=1))
    if tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(run_dir / "logs")))
    return callbacks


def backup_state(run_dir: str | Path) -> dict | None:
    """The epoch and batch of the backup a restarted run would resume from, if any."""
    path = Path(run_dir) / BACKUP_DIR / "training_metadata.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
