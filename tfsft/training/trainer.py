"""One training run from a :class:`~tfsft.config.TrainConfig`: read, tokenize, fit, evaluate, save.

>>> from tfsft.config import TrainConfig, option_changes
>>> config = TrainConfig(train="train.tsv", model="minilm-l6", output_dir="runs/sst2",
...                      task_options={"text_column": "sentence"}, epochs=1)
>>> result = train(config)                      # doctest: +SKIP
>>> result.metrics["accuracy"]                  # doctest: +SKIP
0.89
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from tfsft.config import TrainConfig, option_changes
from tfsft.data.checks import (
    DATA_CHECK_FILE,
    LENGTHS_PLOT,
    DataCheck,
    check_data,
    plot_lengths,
    refuse_certain_mistakes,
    refuse_same_file,
)
from tfsft.data.pipeline import length_buckets, make_dataset
from tfsft.data.shards import (
    Manifest,
    check_compatible,
    explain_read_error,
    is_shard_folder,
    read_manifest,
    shard_dataset,
    shard_report,
)
from tfsft.errors import ConfigError, TfsftError
from tfsft.evaluation.reports import plot_training_curves, read_history
from tfsft.io_utils import (
    atomic_directory,
    atomic_file,
    atomic_write_json,
    atomic_write_text,
    file_sha256,
)
from tfsft.models.checkpoints import resolve_checkpoint
from tfsft.optimization.optimizers import LossScaleOptimizer, adamw
from tfsft.optimization.schedules import WarmupDecay
from tfsft.run_folder import clear_run_folder, entries, mark_run_folder, run_lock
from tfsft.runs import (
    CALIBRATION_FILE,
    HELDOUT_FILE,
    MAX_SAVED_EXAMPLES,
    MODEL_FILE,
    TASK_FILE,
    TOKENIZER_DIR,
    calibration_sample,
    load_training_data,
    save_model_file,
    task_record,
)
from tfsft.tasks.base import Task, create_task, option_fields, options_class, task_class
from tfsft.training.callbacks import (
    HISTORY_CSV,
    AfterFirstStep,
    backup_state,
    standard_callbacks,
)
from tfsft.training.distribution import (
    Distribution,
    barrier,
    make_distribution,
    prepare_model,
    shard_by_data,
)
from tfsft.training.precision import resolve_precision
from tfsft.training.validation import ValidationPass, restores_best_weights

if TYPE_CHECKING:  # pragma: no cover
    from tfsft.training.distillation import Distillation

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_dir: Path
    metrics: dict[str, Any]
    history: dict[str, list[float]]
    summary: dict[str, Any] = field(default_factory=dict)


class ThroughputMeter(keras.callbacks.Callback):
    """Training time per epoch, from its first batch to its last (validation excluded).

    ``steady_seconds`` leaves out each epoch's first step, which includes graph tracing
    (``first_step_seconds``); ``steady_cpu_seconds`` is the process's CPU time over the same
    steps (all threads), so ``steady_cpu_seconds / steady_seconds`` says how busy the cores were.
    """

    def __init__(self):
        super().__init__()
        self.epoch_seconds: list[float] = []
        self.steady_seconds: list[float] = []
        self.steady_cpu_seconds: list[float] = []
        self.first_step_seconds: list[float] = []
        self.epoch_steps: list[int] = []
        self._start = self._first = self._last = 0.0
        self._first_cpu = self._last_cpu = 0.0
        self._steps = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._start = self._first = self._last = time.perf_counter()
        self._first_cpu = self._last_cpu = time.process_time()
        self._steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self._last, self._last_cpu = time.perf_counter(), time.process_time()
        self._steps += 1
        if self._steps == 1:
            self._first, self._first_cpu = self._last, self._last_cpu

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_seconds.append(self._last - self._start)
        self.first_step_seconds.append(self._first - self._start)
        self.steady_seconds.append(self._last - self._first)
        self.steady_cpu_seconds.append(self._last_cpu - self._first_cpu)
        self.epoch_steps.append(self._steps)


def seconds_since_process_start() -> float | None:
    """Wall seconds since this process started (Linux ``/proc``; ``None`` elsewhere)."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


def train(config: TrainConfig, callbacks: Sequence[keras.callbacks.Callback] = (),
          startup_seconds: float | None = None,
          distillation: Distillation | None = None) -> TrainResult:
    """Fine-tune ``config.model`` on ``config.train`` and write a run folder (see tfsft.runs).

    ``callbacks`` run in ``fit`` after tfsft's own (checkpoints, logs, early stopping).
    A second ``train`` into the same folder while this one runs fails at once.
    ``startup_seconds``: what the process spent before this call (the command line passes its
    start-up, imports included), counted in ``run.json``'s account of the run's time.
    ``distillation`` trains a student on a teacher's outputs (see
    :mod:`tfsft.training.distillation`).
    """
    started = time.perf_counter()
    run_dir = Path(config.output_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--output-dir {run_dir} is a file, not a folder; name a new folder "
                          "for the run")
    distribution = make_distribution(config.strategy)  # before any other TensorFlow work
    if distribution.distributed and config.jit_compile:
        raise ConfigError(f"--jit-compile does not work with --strategy {distribution.name} "
                          "(XLA cannot hold the collective ops between replicas); leave it out, "
                          "or train on one device")
    if not distribution.is_chief:  # writes nothing; reads the chief's backup
        import tensorflow as tf

        try:
            return _train(config, run_dir, callbacks, started, distribution, startup_seconds,
                          distillation)
        except (tf.errors.UnavailableError, tf.errors.CancelledError,
                tf.errors.AbortedError) as exc:  # the collective ops ended under this worker
            raise TfsftError(
                f"worker {distribution.worker_index}: the other workers stopped (the chief, "
                "worker 0, first: its error says why), which ends this one's training too"
            ) from exc
    with run_lock(run_dir):
        _prepare_run_dir(run_dir, config)
        return _train(config, run_dir, callbacks, started, distribution, startup_seconds,
                      distillation)


@dataclass
class _Data:
    """What the data phase hands on: the task, the examples, the tokenizer and the encodings."""

    checkpoint: Path
    shards: Manifest | None
    task: Task
    monitor: tuple[str, str]
    train_data: Any
    validation_data: Any
    tokenizer: Any
    plot: Callable[[], None] | None
    train_encoded: Any
    validation_encoded: Any
    train_rows: int
    train_tokens: int
    notes: dict[str, Any]
    tokenize_seconds: float
    unknown_share: float | None


@dataclass
class _Pipelines:
    """The training batches (as built, and as ``fit`` reads them) and the validation batches
    of a distributed run."""

    train: Any
    fit_train: Any
    validation: Any
    steps_per_epoch: int
    buckets: Any


@dataclass
class _Fitted:
    """The trained model and what ``fit`` measured."""

    model: keras.Model
    optimizer: Any
    precision: str
    meter: ThroughputMeter
    validation_pass: ValidationPass | None
    resume: dict[str, Any] | None
    fit_start: float
    fit_seconds: float
    jit_compile: bool


def _train(config: TrainConfig, run_dir: Path, callbacks: Sequence[keras.callbacks.Callback],
           started: float, distribution: Distribution, startup: float | None = None,
           distillation: Distillation | None = None) -> TrainResult:
    """The run's phases: data, input pipelines, model, fit, then (on the chief) evaluation,
    the saved run folder and ``run.json``."""
    keras.utils.set_random_seed(config.seed)
    data = _read_and_encode(config, run_dir, distribution, distillation)
    pipelines = _input_pipelines(config, data, distribution)
    model, optimizer, precision = _build_model(config, data, pipelines, distribution,
                                               distillation)
    fitted = _fit(config, run_dir, data, pipelines, model, optimizer, precision, distribution,
                  callbacks)
    if not distribution.is_chief:
        logger.info("Worker %d finished training; the chief writes the run folder",
                    distribution.worker_index)
        return TrainResult(run_dir, {}, {}, {"chief": False,
                                              "distribution": distribution.describe(
                                                  config.batch_size)})
    metrics, history = _evaluate_and_save(config, run_dir, data, fitted, distribution)
    summary = _run_summary(config, data, pipelines, fitted, metrics, distribution, started,
                           startup)
    atomic_write_json(run_dir / "run.json", summary)
    return TrainResult(run_dir, metrics, history, summary)


def _read_and_encode(config: TrainConfig, run_dir: Path, distribution: Distribution,
                     distillation: Distillation | None = None) -> _Data:
    """Read and check the data, load the tokenizer, encode the examples (shards: validation
    only, the training rows are encoded already); a distillation's training rows carry the
    teacher's outputs."""
    checkpoint = resolve_checkpoint(config.model)
    shards = read_manifest(config.train) if is_shard_folder(config.train) else None
    if distillation is not None and shards is not None:
        raise ConfigError("tfsft distill trains from files, not from shards (tfsft "
                          "preprocess): pass --train FILE")
    task = _create_task(config, shards)
    monitor = task.modeling.monitor(config.monitor)
    refuse_same_file(config.train if shards is None else shards.source, config.validation,
                     can_split=shards is None)
    if shards is None:
        train_data, validation_data = load_training_data(task, config)
    else:
        train_data, validation_data = None, _shard_validation_data(task, config)
    train_rows = len(train_data) if shards is None else min(
        shards.rows, config.max_train_rows or shards.rows)  # --max-train-rows reads the first
    logger.info("%s: %d training and %d validation examples", task.name, train_rows,
                len(validation_data))
    tokenizer = task.data.load_tokenizer(checkpoint, config.max_length)
    if shards is not None:
        check_compatible(shards, tokenizer, config.max_length)
    if distillation is not None:
        distillation.prepare_task(task, checkpoint, tokenizer, config.max_length)
    data_check, plot = _check_data(task, train_data, validation_data, tokenizer, config,
                                   run_dir if distribution.is_chief else None, shards,
                                   fixed_length=distillation is not None)
    if config.augment and shards is not None:
        raise ConfigError("--augment edits training examples held in memory, not shards "
                          "(tfsft preprocess): train from the file, or leave out --augment")
    if config.augment and shards is None:
        train_data = _augmented(task, train_data, config, checkpoint, tokenizer,
                                run_dir if distribution.is_chief else None)
        train_rows = len(train_data)
    task.bind(tokenizer, config.max_length)
    tokenize_start = time.perf_counter()
    notes, train_encoded = {}, None
    if shards is None:
        train_encoded = task.data.encode(tokenizer, train_data, config.max_length, training=True)
        notes["train"] = task.data.encoding_notes()
        if distillation is not None:
            train_encoded = distillation.training_rows(task, tokenizer, train_encoded,
                                                       config.max_length)
            train_rows += distillation.unlabelled_rows
        train_tokens = int(train_encoded.lengths.sum())
    else:
        notes["train"] = shards.extra.get("encoding") or {}
        train_tokens = shards.tokens
    validation_encoded = task.data.encode(tokenizer, validation_data, config.max_length)
    notes["validation"] = task.data.encoding_notes()
    if distillation is not None and distribution.is_chief:
        distillation.score_teacher(validation_data, validation_encoded)
    return _Data(checkpoint, shards, task, monitor, train_data, validation_data, tokenizer,
                 plot, train_encoded, validation_encoded, train_rows, train_tokens, notes,
                 time.perf_counter() - tokenize_start,
                 data_check.report["train"].get("tokens", {}).get("unknown_word_share"))


def _augmented(task: Task, train_data: Any, config: TrainConfig, checkpoint: Path,
               tokenizer: Any, run_dir: Path | None) -> Any:
    """The training examples and ``config.augment`` edited copies of each (seeded; never the
    validation data); the generated ones listed in ``augmented.jsonl`` of the run folder."""
    from tfsft.data.augmentation import Augmenter, parse_methods, word_neighbours

    methods = parse_methods(config.augment_methods or "all")
    neighbours = (word_neighbours(checkpoint, tokenizer)
                  if {"synonym", "insert"} & set(methods) else None)
    augmenter = Augmenter(methods, neighbours, config.augment_alpha or 0.1)
    rng = np.random.default_rng([config.seed, 7])
    grown, records = task.data.augment(train_data, augmenter, config.augment, rng)
    logger.info("Augmentation: %d generated training examples from %d (%s; %d copies equal "
                "to their source left out)", len(records), len(train_data),
                ", ".join(f"{m} {augmenter.counts.get(m, 0)}" for m in methods),
                augmenter.counts.get("unchanged", 0))
    if run_dir is not None:
        lines = [json.dumps(record, ensure_ascii=False) for record in records]
        atomic_write_text(run_dir / AUGMENTED_FILE, "\n".join(lines) + ("\n" if lines else ""))
    return grown


#: Generated training examples of a run trained with ``--augment`` (source, method, fields).
AUGMENTED_FILE = "augmented.jsonl"


def _input_pipelines(config: TrainConfig, data: _Data, distribution: Distribution) -> _Pipelines:
    """Training batches from the encoded rows or the shards; with a strategy, split over the
    replicas (multi-worker runs from shards: each worker its own shard files)."""
    buckets = length_buckets(config.max_length) if config.jit_compile else None
    smallest = data.task.modeling.min_batch_size
    if distribution.per_replica_batch(config.batch_size) < smallest:
        raise ConfigError(f"task {data.task.name!r} learns from at least {smallest} rows a batch "
                          f"(per replica); --batch-size {config.batch_size} gives "
                          f"{distribution.per_replica_batch(config.batch_size)}: raise it")
    if data.shards is None:
        train_ds = make_dataset(data.train_encoded, config.batch_size, shuffle=True,
                                seed=config.seed, buckets=buckets)
    else:  # data.train_rows counts --max-train-rows already
        train_ds = shard_dataset(data.shards, config.batch_size, seed=config.seed,
                                 max_rows=config.max_train_rows, buckets=buckets)
    steps_per_epoch = int(train_ds.cardinality())
    if not distribution.distributed:  # without a strategy, ValidationPass makes its own
        return _Pipelines(train_ds, train_ds, None, steps_per_epoch, buckets)
    validation_ds = make_dataset(data.validation_encoded, config.batch_size, buckets=buckets)
    logger.info("Strategy %s: %d worker(s), %d replica(s); the global batch of %d is split "
                "into %d rows per replica", distribution.name, distribution.workers,
                distribution.replicas, config.batch_size,
                distribution.per_replica_batch(config.batch_size))
    if data.shards is not None and distribution.workers > 1:  # each worker its own shard files
        fit_train_ds = _worker_shards(distribution, data.shards, config, steps_per_epoch,
                                      buckets)
    else:
        fit_train_ds = shard_by_data(train_ds)
    return _Pipelines(train_ds, fit_train_ds, shard_by_data(validation_ds), steps_per_epoch,
                      buckets)


def _build_model(config: TrainConfig, data: _Data, pipelines: _Pipelines,
                 distribution: Distribution,
                 distillation: Distillation | None = None) -> tuple[keras.Model, Any, str]:
    """The task's model (a distillation's student) compiled with AdamW and the warmup + decay
    schedule, in the precision asked for, on every replica; returns it with its optimizer and
    precision."""
    accumulation = config.gradient_accumulation_steps
    # optimizer updates
    total_steps = math.ceil(pipelines.steps_per_epoch * config.epochs / accumulation)
    precision = resolve_precision(config.precision)
    logger.info("Training with %s precision", precision)
    with distribution.strategy.scope():  # weights, optimizer and metrics on every replica
        if distillation is None:
            model = data.task.modeling.build(data.checkpoint, dropout=config.dropout,
                                             dtype=precision)
        else:
            model = distillation.student_model(data.task, data.checkpoint, config.dropout,
                                               precision)
        schedule = WarmupDecay(config.learning_rate, total_steps=total_steps,
                               warmup_steps=math.ceil(config.warmup_ratio * total_steps),
                               decay=config.lr_schedule)
        learning_rate = config.learning_rate if config.reduce_lr_on_plateau else schedule
        optimizer = adamw(learning_rate, config.weight_decay, config.clipnorm,
                          gradient_accumulation_steps=accumulation if accumulation > 1 else None)
        if precision == "mixed_float16":  # float16 gradients underflow without loss scaling
            optimizer = LossScaleOptimizer(optimizer)
        data.task.modeling.compile(model, optimizer)
        # Keras's "auto" would compile with XLA on a GPU, once per batch length
        model.jit_compile = config.jit_compile
        # Optimizer slots created before fit: variables created inside the first traced step
        # make TensorFlow trace the whole training step twice (about 8 s more for MiniLM).
        model.optimizer.build(model.trainable_variables)
    prepare_model(distribution, model, pipelines.train)
    return model, optimizer, precision


def _fit(config: TrainConfig, run_dir: Path, data: _Data, pipelines: _Pipelines,
         model: keras.Model, optimizer: Any, precision: str, distribution: Distribution,
         callbacks: Sequence[keras.callbacks.Callback]) -> _Fitted:
    """``model.fit`` with tfsft's callbacks (the validation pass first), resuming from the
    run folder's backup when there is one."""
    monitor, mode = data.monitor
    meter = ThroughputMeter()
    background = AfterFirstStep(data.plot)
    fit_callbacks = standard_callbacks(
        run_dir, monitor=monitor, mode=mode, patience=config.early_stopping_patience,
        reduce_lr_on_plateau=config.reduce_lr_on_plateau,
        backup_every_steps=config.backup_every_steps, tensorboard=config.tensorboard,
        chief=distribution.is_chief,
    ) + [meter, background, *callbacks]
    validation_pass = None
    if not distribution.distributed:  # Keras validates across replicas
        # first: the checkpoint, early-stopping and log callbacks read what it logs
        validation_pass = ValidationPass(
            data.validation_encoded, config.batch_size, buckets=pipelines.buckets,
            keep_outputs=data.task.evaluation.outputs_from_validation,
            restorer=next((c for c in fit_callbacks if restores_best_weights(c)), None))
        fit_callbacks.insert(0, validation_pass)
    barrier(distribution)  # no worker reads the backup before the chief has prepared the folder
    resume = backup_state(run_dir)
    if resume:
        logger.warning("Resuming from the backup in %s (epoch %d, batch %d)",
                       run_dir / "backup", resume["epoch"] + 1, resume.get("batch", 0))
    fit_start = time.perf_counter()
    try:
        model.fit(pipelines.fit_train,
                  validation_data=None if validation_pass else pipelines.validation,
                  epochs=config.epochs, callbacks=fit_callbacks, shuffle=False,
                  verbose="auto" if distribution.is_chief else 0)  # one progress bar
    except Exception as exc:  # a damaged shard surfaces as a TensorFlow error inside fit
        explained = (explain_read_error(data.shards, exc) if data.shards is not None
                     else None)
        if explained is None:
            raise
        raise explained from exc
    fit_seconds = time.perf_counter() - fit_start
    background.finish()
    return _Fitted(model, optimizer, precision, meter, validation_pass, resume, fit_start,
                   fit_seconds, bool(model.jit_compile))


def _evaluate_and_save(config: TrainConfig, run_dir: Path, data: _Data, fitted: _Fitted,
                       distribution: Distribution) -> tuple[dict[str, Any], dict[str, list]]:
    """The validation metrics and reports, the training curves and the saved run (model,
    tokenizer, task state, held-out and calibration examples); returns metrics and history."""
    task, model = data.task, fitted.model
    model = getattr(model, "student", model)  # a distillation saves the student it trained
    logits = (fitted.validation_pass.final_outputs() if fitted.validation_pass is not None
              else None)
    if (fitted.precision != "float32" or getattr(model, "saved_weights_differ", False)
            or distribution.distributed):
        # the saved model, its metrics and exports compute in float32, adapters merged, in this
        # process alone (a copy made outside the strategy's scope)
        model = model.with_float32_compute()
        logits = None  # predicted again by the model that is saved
    if logits is not None:  # the last validation pass saw the weights the model ends with
        outputs = task.evaluation.outputs_from_logits(logits, data.validation_encoded)
    else:
        outputs = task.evaluation.outputs(model, data.validation_encoded)
    task.evaluation.after_fit(data.validation_data, outputs)
    metrics = task.evaluation.evaluate(data.validation_data, outputs, output_dir=run_dir)
    history = read_history(run_dir / HISTORY_CSV)
    plot_training_curves(history, run_dir / "training_curves.png")
    if data.shards is None:
        calibration = data.train_data.subset(calibration_sample(len(data.train_data),
                                                                config.seed))
    else:
        calibration = task.data.read_records(data.shards.folder / CALIBRATION_FILE)
    _save_model_files(run_dir, model, data.tokenizer, task, calibration, data.validation_data,
                      config)
    return metrics, history


def _time_account(fitted: _Fitted, started: float,
                  startup: float | None) -> dict[str, float | None]:
    """Where the run's time went, for ``run.json``."""
    meter, validation_pass = fitted.meter, fitted.validation_pass
    validation_seconds = sum(validation_pass.seconds) if validation_pass is not None else None
    ended = time.perf_counter()
    steady = sum(meter.steady_seconds)
    first = sum(meter.first_step_seconds)
    in_fit = fitted.fit_seconds - first - steady - (validation_seconds or 0.0)
    return {
        "process_start_to_train": None if startup is None else round(startup, 3),  # imports
        "before_fit": round(fitted.fit_start - started, 3),  # read, check, tokenize, build
        "first_steps": round(first, 3),  # each epoch's, with tracing
        "steady_steps": round(steady, 3),
        "validation": None if validation_seconds is None else round(validation_seconds, 3),
        # epoch-end callbacks (checkpoints, logs); with validation None, validation too
        "other_in_fit": round(in_fit, 3),
        "after_fit": round(ended - fitted.fit_start - fitted.fit_seconds, 3),  # evaluate, save
        "total": round(ended - started + (startup or 0.0), 3),
    }


def _run_summary(config: TrainConfig, data: _Data, pipelines: _Pipelines, fitted: _Fitted,
                 metrics: dict[str, Any], distribution: Distribution, started: float,
                 startup: float | None) -> dict[str, Any]:
    """``run.json``: what was trained on what, how, how fast, and the validation headline."""
    meter, rows = fitted.meter, data.train_rows
    steady = sum(meter.steady_seconds)
    seconds = _time_account(fitted, started, startup)
    return {
        "task": data.task.name,
        "checkpoint": str(data.checkpoint),
        "train_examples": rows,
        "train_data": "shards" if data.shards is not None else "file",
        "validation_examples": len(data.validation_data),
        "skipped_rows": {"train": (data.train_data.skipped if data.shards is None
                                   else data.shards.skipped),
                         "validation": data.validation_data.skipped},
        "resumed_from": fitted.resume,
        "precision": fitted.precision,
        "jit_compile": fitted.jit_compile,
        "distribution": distribution.describe(config.batch_size),
        "steps_per_epoch": pipelines.steps_per_epoch,
        "epochs_run": len(meter.epoch_seconds),
        "optimizer_steps": int(keras.ops.convert_to_numpy(fitted.optimizer.iterations)),
        "tokenize_seconds": round(data.tokenize_seconds, 3),
        "fit_seconds": round(fitted.fit_seconds, 3),
        "epoch_train_seconds": [round(s, 3) for s in meter.epoch_seconds],
        "train_examples_per_second": [round(rows / s, 2) for s in meter.epoch_seconds if s],
        # Without each epoch's first (tracing) step: examples in the remaining steps / their time.
        "train_examples_per_second_after_first_step": [
            round(rows * (steps - 1) / steps / seconds, 2)
            for steps, seconds in zip(meter.epoch_steps, meter.steady_seconds, strict=True)
            if steps > 1 and seconds > 0],
        "steady_cpu_per_wall": (round(sum(meter.steady_cpu_seconds) / steady, 3) if steady
                                else None),
        "seconds": seconds,
        "train_tokens": data.train_tokens,
        "unknown_word_share": (None if data.unknown_share is None
                               else round(data.unknown_share, 4)),
        "encoding": {k: v for k, v in data.notes.items() if v},
        "wall_seconds": round(time.perf_counter() - started, 3),
        "validation": data.task.evaluation.headline(metrics),
    }


def _create_task(config: TrainConfig, shards: Manifest | None) -> Task:
    """The run's task; from pre-tokenized shards, with the state learned when they were made
    (options that change what the shards hold must equal those they were made with)."""
    if shards is None:
        return create_task(config.task, config.task_options)
    if config.task != shards.task:
        raise ConfigError(f"{shards.folder} holds {shards.task} data; the run's task is "
                          f"{config.task} (leave out --task, or preprocess for {config.task})")
    if config.task_options.get("sampling", "none") != "none":
        raise ConfigError(f"--sampling {config.task_options['sampling']} draws class-balanced "
                          "epochs from training data held in memory, not from shards; train "
                          "from the file, or use --class-weight balanced (given to tfsft "
                          "preprocess) or --loss focal")
    allowed = {f.name for f, _ in option_fields(options_class(config.task))
               if f.metadata.get("validation")}
    allowed |= set(task_class(config.task).Modeling.model_options)
    changed = sorted(name for name, value in config.task_options.items()
                     if value != shards.task_options.get(name) and name not in allowed)
    if changed:
        made = ", ".join(f"--{n.replace('_', '-')} {shards.task_options.get(n)!r}"
                         for n in changed)
        raise ConfigError(f"{shards.folder} was preprocessed with {made}; this run asks for "
                          f"{', '.join(repr(config.task_options[n]) for n in changed)}. Leave "
                          "them out, or run tfsft preprocess again with the new values")
    task = create_task(config.task, config.task_options)
    task.load_state(shards.task_state)
    return task


def _worker_shards(distribution: Distribution, shards: Manifest, config: TrainConfig,
                   steps: int, buckets: Any) -> Any:
    """Training batches of a multi-worker run from shards: worker ``i`` of ``n`` reads shard
    files ``i, i + n, ...`` only, in per-replica batches, ``steps`` of them per epoch."""
    import tensorflow as tf

    count = len(shards.shards)
    if count < distribution.workers:
        raise ConfigError(f"{shards.folder} holds {count} shard(s) for {distribution.workers} "
                          "workers: run tfsft preprocess again with --shards of at least the "
                          "number of workers")

    def worker_dataset(context: tf.distribute.InputContext) -> tf.data.Dataset:
        files = range(context.input_pipeline_id, count, context.num_input_pipelines)
        local_replicas = context.num_replicas_in_sync // context.num_input_pipelines
        return shard_dataset(shards, context.get_per_replica_batch_size(config.batch_size),
                             seed=config.seed, buckets=buckets, files=files,
                             steps=steps * local_replicas)  # one batch per local replica

    logger.info("Worker %d reads shard files %s", distribution.worker_index,
                list(range(distribution.worker_index, count, distribution.workers)))
    return distribution.strategy.distribute_datasets_from_function(worker_dataset)


def _shard_validation_data(task: Task, config: TrainConfig) -> Any:
    if not config.validation:
        raise ConfigError(f"--train {config.train} holds pre-tokenized shards, which cannot be "
                          "split: pass a --validation file")
    return task.data.read(config.validation, role="validation",
                          max_rows=config.max_validation_rows, file_format=config.file_format,
                          encoding=config.encoding, delimiter=config.delimiter,
                          quoting=config.quoting)


def _check_data(task: Task, train_data: Any, validation_data: Any,
                tokenizer: Any, config: TrainConfig, run_dir: Path | None,
                shards: Manifest | None = None,
                fixed_length: bool = False) -> tuple[DataCheck, Callable[[], None] | None]:
    """The data check (see :mod:`tfsft.data.checks`): stops on certain mistakes, logs the
    warnings, writes ``data_check.json`` into the run folder (none: writes nothing), and returns
    it with the function that draws ``token_lengths.png`` there (run while training runs).
    Pre-tokenized training data (``shards``) is described by its manifest; ``fixed_length``:
    the run keeps another run's max_length (a distillation), so the advice names that run."""
    check, lengths = check_data(task, train_data, validation_data, tokenizer, config.max_length)
    if fixed_length:  # a student reads what its teacher read
        check.warnings = [w.replace("; consider --max-length", "; a student keeps its "
                                    "teacher's max_length: to keep more, train the teacher "
                                    "with --max-length") for w in check.warnings]
    if shards is not None:
        check.report["train"] = shard_report(shards)
        # the shards were cut at their max_length: a longer one means preprocessing again
        check.warnings = [w.replace("; consider --max-length", "; consider running tfsft "
                                    "preprocess again, and training, with --max-length")
                          for w in check.warnings]
    else:
        refuse_certain_mistakes(check, config.validation)
    for role, source in (("train", config.train), ("validation", config.validation or
                                                    config.train)):
        if (role in check.report and isinstance(source, (str, os.PathLike))
                and os.path.isfile(source)):  # which file it was, for the model card
            check.report[role]["sha256"] = file_sha256(source)
    for warning in check.warnings:
        logger.warning(warning)
    tokens = check.report["train"].get("tokens")
    if tokens:
        measured = tokens.get("measured", len(train_data))  # texts, where an example has more
        logger.info("Data check: %d of %d training %s longer than max_length %d; %.2f "
                    "%% of the words are [UNK]", tokens["over_max_length"], measured,
                    "examples" if measured == len(train_data) else "texts", config.max_length,
                    100 * tokens["unknown_word_share"])
    plot = None
    if run_dir is not None:
        atomic_write_json(run_dir / DATA_CHECK_FILE, {**check.report, "warnings": check.warnings})
        if lengths:
            def plot() -> None:
                plot_lengths(lengths, config.max_length, run_dir / LENGTHS_PLOT)
    return check, plot


def _changed_options(config_file: Path, config: TrainConfig) -> str:
    """The options of ``config`` that differ from those an interrupted run saved, as
    ``"name: saved -> now"`` (empty when none; where the folder is does not count, so a copied
    run folder resumes)."""
    import yaml

    try:
        saved = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return "its config.yaml cannot be read"
    return option_changes(saved if isinstance(saved, dict) else {}, config.to_dict())


def _prepare_run_dir(run_dir: Path, config: TrainConfig) -> None:
    config_file = run_dir / "config.yaml"
    if entries(run_dir):
        if config.overwrite:
            clear_run_folder(run_dir, inputs=(config.train, config.validation))
        elif backup_state(run_dir) is not None:
            changed = _changed_options(config_file, config)
            if changed:
                raise ConfigError(
                    f"{run_dir} holds an interrupted run with other options ({changed}); to "
                    "resume it use the same options, or pass --overwrite to start over")
        elif (run_dir / MODEL_FILE).exists():
            raise ConfigError(f"{run_dir} already holds a finished run; choose another "
                              "--output-dir or pass --overwrite")
        elif not config_file.exists():
            raise ConfigError(f"{run_dir} is not empty and is not a tfsft run folder; choose "
                              "another --output-dir")
    mark_run_folder(run_dir)
    atomic_write_text(config_file, config.to_yaml())


def write_examples(path: Path, task: Task, examples) -> None:
    """Examples as JSON lines that ``task.data.read_records`` reads back."""
    records = task.data.example_records(examples)
    lines = [json.dumps(record, ensure_ascii=False) for record in records]
    atomic_write_text(path, "\n".join(lines) + "\n")


def _save_model_files(run_dir: Path, model: keras.Model, tokenizer: Any, task: Task,
                      calibration: Any, validation_data: Any, config: TrainConfig) -> None:
    with atomic_directory(run_dir / TOKENIZER_DIR, overwrite=True) as tmp:
        tokenizer.save(tmp)
    write_examples(run_dir / HELDOUT_FILE, task, validation_data.subset(np.arange(
        min(len(validation_data), MAX_SAVED_EXAMPLES))))
    write_examples(run_dir / CALIBRATION_FILE, task, calibration)
    atomic_write_json(run_dir / TASK_FILE, task_record(task, config.max_length))
    with atomic_file(run_dir / MODEL_FILE) as tmp:
        save_model_file(model, tmp)
