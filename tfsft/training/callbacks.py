"""The callbacks a fine-tuning run uses, built from its options.

>>> import tempfile
>>> names = [type(c).__name__ for c in standard_callbacks(tempfile.mkdtemp(), patience=2)]
>>> names
['StopOnNaN', 'AtomicBackupAndRestore', 'BestWeightsCheckpoint', 'CSVLogger', 'EarlyStopping', 'TensorBoard']
"""

from __future__ import annotations

import json
import logging
import math
import threading
from pathlib import Path

import keras
from keras.src.saving import saving_lib

from tfsft.errors import TfsftError
from tfsft.io_utils import atomic_file

logger = logging.getLogger(__name__)

BACKUP_DIR = "backup"
BEST_CHECKPOINT = "checkpoints/best.weights.h5"
HISTORY_CSV = "history.csv"


def standard_callbacks(
    run_dir: str | Path,
    monitor: str = "val_loss",
    mode: str = "min",
    patience: int | None = 2,
    reduce_lr_on_plateau: bool = False,
    backup_every_steps: int | None = 200,
    tensorboard: bool = True,
    chief: bool = True,
) -> list[keras.callbacks.Callback]:
    """Backup/resume, best checkpoint, CSV history, early stopping, plateau LR and TensorBoard.

    ``backup_every_steps`` saves a resumable backup (weights, optimizer state, position) every
    that many steps under ``run_dir/backup``; a restarted run picks it up. ``None`` backs up at
    each epoch end instead. ``mode`` says whether lower (``min``) or higher (``max``) values of
    ``monitor`` are better (each task declares it for its metrics).

    ``chief=False`` (a worker of a multi-worker run other than the chief) writes nothing: it
    restores from the chief's backup and stops early when the chief does (all workers see the
    same averaged metrics).
    """
    run_dir = Path(run_dir)
    backup = dict(backup_dir=str(run_dir / BACKUP_DIR), save_freq=backup_every_steps or "epoch",
                  double_checkpoint=True)
    callbacks: list[keras.callbacks.Callback] = [
        StopOnNaN(),  # first: a diverged step stops the run before anything is saved
        AtomicBackupAndRestore(**backup) if chief else RestoreFromChiefBackup(**backup),
    ]
    if chief:
        callbacks += [
            # with early stopping, restores the best epoch from its file at the end
            BestWeightsCheckpoint(run_dir / BEST_CHECKPOINT, monitor=monitor, mode=mode,
                                  restore=patience is not None),
            keras.callbacks.CSVLogger(str(run_dir / HISTORY_CSV), append=True),
        ]
    if patience is not None:
        callbacks.append(keras.callbacks.EarlyStopping(  # the chief restores from the file
            monitor=monitor, mode=mode, patience=patience, restore_best_weights=not chief,
            verbose=1))
    if reduce_lr_on_plateau:
        callbacks.append(keras.callbacks.ReduceLROnPlateau(
            monitor=monitor, mode=mode, factor=0.5, patience=1, verbose=1))
    if tensorboard and chief:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(run_dir / "logs")))
    return callbacks


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras's backup with each file written whole: to a temporary name, then renamed. A run
    stopped while it saves (Ctrl-C, a kill) keeps its previous backup; Keras writes in place,
    and a cut-off weights file then loads without the optimizer's moments, with a warning."""

    def _save_model(self):
        import os
        import shutil

        folder = Path(self.backup_dir)
        folder.mkdir(parents=True, exist_ok=True)
        weights, metadata = Path(self._weights_path), Path(self._training_metadata_path)
        if self.double_checkpoint:
            for current, previous in ((weights, self._prev_weights_path),
                                      (metadata, self._prev_training_metadata_path)):
                if current.exists():
                    shutil.copyfile(current, f"{previous}.tmp")
                    os.replace(f"{previous}.tmp", previous)
        with atomic_file(weights) as temporary:  # keeps the .weights.h5 ending Keras wants
            self.model.save_weights(filepath=str(temporary), overwrite=True)
        with atomic_file(metadata) as temporary:
            temporary.write_text(json.dumps({"epoch": self._current_epoch,
                                             "batch": self._last_batch_seen}))


class RestoreFromChiefBackup(keras.callbacks.BackupAndRestore):
    """A non-chief worker's :class:`keras.callbacks.BackupAndRestore`: it restores the chief's
    backup when training (re)starts, and neither writes nor removes it. The chief saves at the
    same steps, so a restarted job resumes every worker from the same state."""

    def on_train_begin(self, logs=None):
        try:
            self._load_model()
        except OSError:
            # a damaged last backup: the chief falls back to the one before it (copying it
            # into place); read that one too, without touching the chief's files
            self._weights_path = self._prev_weights_path
            self._training_metadata_path = self._prev_training_metadata_path
            self._load_model()

    def _save_model(self):
        pass

    def on_train_end(self, logs=None):
        pass


class AfterFirstStep(keras.callbacks.Callback):
    """Run ``work`` (callables, in order) on a thread once the first training step is done,
    for what the run writes anyway but need not wait for (a plot of the data): a training step
    spends its time in TensorFlow's kernels, which leave Python free. The work is finished (and
    any error it raised, raised) when training ends, or by :meth:`finish`.
    """

    def __init__(self, *work):
        super().__init__()
        self.work = [w for w in work if w is not None]
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def on_train_batch_end(self, batch, logs=None):
        if self._thread is None and self.work:
            self._thread = threading.Thread(target=self._run, name="tfsft-after-first-step",
                                            daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            while self.work:
                self.work.pop(0)()
        except BaseException as exc:  # raised in the training thread by finish()
            self._error = exc

    def on_train_end(self, logs=None):
        self.finish()

    def finish(self) -> None:
        """Wait for the work (or do it here if no step ran) and raise its error, if any."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        else:
            self._run()
        if self._error is not None:
            error, self._error = self._error, None
            raise error


class TrainingDiverged(TfsftError):
    """The training loss became NaN or infinite."""


class StopOnNaN(keras.callbacks.Callback):
    """Stop at the first step whose loss is NaN or infinite, before a backup or checkpoint
    of the broken weights is written, with a message that names the learning rate."""

    def __init__(self):
        super().__init__()
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or math.isfinite(float(loss)):
            return
        optimizer = self.model.optimizer
        rate = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        print(flush=True)  # end the progress bar's line: the error goes on its own
        raise TrainingDiverged(
            f"the training loss became {float(loss)} at epoch {self._epoch + 1}, step "
            f"{batch + 1} (learning rate then {rate:.3g}); nothing of this step was saved. "
            "Lower --learning-rate (BERT fine-tuning uses 1e-5 to 1e-4), or keep "
            "--clipnorm on, and start again with --overwrite")


class BestWeightsCheckpoint(keras.callbacks.Callback):
    """The model's weights at its best epoch so far (``monitor``), written atomically.

    Only the model's weights: a third of the size of ``ModelCheckpoint(save_weights_only=True)``,
    which also writes the optimizer's two moment tensors per weight. Load them with
    ``model.load_weights(path)``.

    With ``restore``, training ends with the best epoch's weights, read back from the file when
    a later epoch was worse (what ``EarlyStopping(restore_best_weights=True)`` does with a copy
    of every weight in memory, taken at each better epoch).
    """

    def __init__(self, path: str | Path, monitor: str = "val_loss", mode: str = "min",
                 restore: bool = False):
        super().__init__()
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.path, self.monitor, self.mode = Path(path), monitor, mode
        self.restore = restore
        self.best: float | None = None
        self.best_epoch: int | None = None
        self._last_epoch: int | None = None

    def on_epoch_end(self, epoch, logs=None):
        self._last_epoch = epoch
        value = (logs or {}).get(self.monitor)
        if value is None:
            logger.warning("No %s at the end of epoch %d: the best checkpoint is not updated "
                           "(logged: %s)", self.monitor, epoch + 1, sorted(logs or {}))
            return
        better = self.best is None or (value < self.best if self.mode == "min" else value > self.best)
        if better:
            self.best, self.best_epoch = float(value), epoch
            with atomic_file(self.path) as tmp:
                saving_lib.save_weights_only(self.model, tmp, objects_to_skip=self._skip())

    def on_train_end(self, logs=None):
        if self.restore and self.best_epoch is not None and self.best_epoch != self._last_epoch:
            print(f"Restoring model weights from the end of the best epoch: "
                  f"{self.best_epoch + 1}.", flush=True)
            saving_lib.load_weights_only(self.model, str(self.path), objects_to_skip=self._skip())

    def _skip(self) -> list | None:
        optimizer = getattr(self.model, "optimizer", None)
        return [optimizer] if optimizer is not None else None


def backup_state(run_dir: str | Path) -> dict | None:
    """The epoch and batch of the backup a restarted run would resume from, if any."""
    path = Path(run_dir) / BACKUP_DIR / "training_metadata.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
