"""A finished training run folder: load its task, model and tokenizer; predict and evaluate.

Layout of a run folder::

    config.yaml        the options the run was trained with
    task.json          the task, its options and what it learned (labels, thresholds, ...)
    tokenizer/         vocab.txt + tokenizer_config.json
    model.keras        the trained model, uncompiled, without optimizer state
                       (keras.saving.load_model; ``backup/`` resumes an interrupted run)
    heldout.jsonl      validation examples, for checking exports
    calibration.jsonl  a sample of training examples, for int8 calibration
    metrics.json + the task's report files (validation results)
    training_curves.png, history.csv, logs/ (TensorBoard), checkpoints/best.weights.h5

Run folders of earlier releases (``labels.json`` instead of ``task.json``) load as
text-classification runs.
"""

from __future__ import annotations

import json
import logging
import zipfile
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from tfsft.data.shards.manifest import CALIBRATION_ROWS
from tfsft.errors import ConfigError, DataError, TfsftError
from tfsft.io_utils import read_json_file
from tfsft.tasks.base import DEFAULT_TASK, Task, create_task

logger = logging.getLogger(__name__)

MODEL_FILE = "model.keras"
TASK_FILE = "task.json"
LEGACY_LABELS_FILE = "labels.json"  # run folders of tfsft 0.1
#: Written into an evaluation's --output-dir: the report files tfsft wrote there (JSON: name ->
#: SHA-256), which a later evaluation into the same folder may replace, or remove when it writes
#: other ones and they are unchanged.
EVALUATION_MARKER = ".tfsft-evaluation"


def _file_times(folder: Path) -> dict[str, int]:
    """Each file of ``folder`` (none if it does not exist) with its modification time."""
    if not folder.is_dir():
        return {}
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir() if p.is_file()}


def _record_evaluation(folder: Path, before: dict[str, int]) -> None:
    """Record the reports an evaluation wrote into ``folder`` (the files new or changed since
    ``before``) with their SHA-256, and remove those an earlier evaluation recorded there that
    this one did not write again (another task's reports), so the folder describes one
    evaluation; a recorded report changed since (a user's notes in it) is kept."""
    import json

    from tfsft.io_utils import atomic_write_json, file_sha256

    try:
        earlier = json.loads((folder / EVALUATION_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        earlier = {}
    if not isinstance(earlier, dict):  # an older marker: names only, so nothing is removed
        earlier = {}
    now = _file_times(folder)
    written = {name for name, mtime in now.items()
               if name != EVALUATION_MARKER and before.get(name) != mtime}
    for name in sorted(set(earlier) - written):
        path = folder / name
        if name not in now or not path.is_file():
            continue
        if file_sha256(path) == earlier[name] and now[name] == before.get(name):
            path.unlink()  # as the earlier evaluation wrote it
        else:
            logger.warning("%s: kept; it changed since an earlier evaluation wrote it", path)
    atomic_write_json(folder / EVALUATION_MARKER,
                      {name: file_sha256(folder / name) for name in sorted(written)
                       if (folder / name).is_file()})
HELDOUT_FILE = "heldout.jsonl"  # validation examples, for checking exports
CALIBRATION_FILE = "calibration.jsonl"  # a sample of training examples, for int8 calibration
TOKENIZER_DIR = "tokenizer"
MAX_SAVED_EXAMPLES = 2000  # validation examples kept in the run folder to check exports


def calibration_sample(count: int, seed: int) -> np.ndarray:
    """Sorted indices of the training examples kept for int8 calibration (seeded).

    >>> calibration_sample(10, seed=0).tolist() == sorted(calibration_sample(10, seed=0).tolist())
    True
    """
    return np.sort(np.random.default_rng(seed).permutation(count)[:CALIBRATION_ROWS])


def load_training_data(task: Task, config: Any) -> tuple[Any, Any]:
    """Training and validation examples of a :class:`~tfsft.config.TrainConfig`: its
    ``validation`` file, or a seeded split of the training data."""
    common = dict(file_format=config.file_format, encoding=config.encoding,
                  delimiter=config.delimiter, quoting=config.quoting)
    try:
        train = task.data.read(config.train, role="train", max_rows=config.max_train_rows,
                               **common)
    except DataError as exc:
        if config.max_train_rows is None or exc.where is not None:
            raise
        try:  # the hint only where reading every row would not fail so
            task.data.read(config.train, role="train", **common)
        except TfsftError:
            raise exc from None
        raise DataError(exc.source, None, f"{exc.problem} (in the first "
                        f"{config.max_train_rows} rows, all that --max-train-rows "
                        f"{config.max_train_rows} reads)", (exc.fix or "") + "; or read more "
                        "rows: raise --max-train-rows, or leave it out") from None
    if config.validation:
        validation = task.data.read(config.validation, role="validation",
                                    max_rows=config.max_validation_rows, **common)
    else:
        train, validation = task.data.split(train, config.validation_fraction, config.seed)
    return train, validation


def save_model_file(model: Any, path: str | Path) -> None:
    """Save ``model`` (a ``keras.Model``) as a ``.keras`` file without what only training
    needs: no optimizer state (two moments per weight: three times the file) and no compile
    config, so it loads uncompiled with ``keras.saving.load_model`` (compile it to evaluate or
    train on). ``model`` itself keeps its optimizer and compiled state."""
    optimizer, compiled = getattr(model, "optimizer", None), getattr(model, "compiled", False)
    if optimizer is None and not compiled:  # e.g. a merged LoRA model: nothing to leave out
        model.save(path)
        return
    try:
        model.optimizer, model.compiled = None, False
        model.save(path)
    finally:
        model.optimizer, model.compiled = optimizer, compiled


def task_record(task: Task, max_length: int) -> dict[str, Any]:
    """The contents of ``task.json``."""
    return {"format": 1, "task": task.name, "max_length": max_length,
            "options": task.options.to_dict(), "state": task.state_dict()}


class TrainedRun:
    """A run folder written by :func:`tfsft.training.trainer.train`.

    >>> run = TrainedRun("runs/sst2")                      # doctest: +SKIP
    >>> run.predict(["a gripping, beautiful film"])[0]["label"]  # doctest: +SKIP
    '1'
    """

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self._saved_examples: dict[str, Any] = {}
        if not self.run_dir.exists():
            raise ConfigError(f"{self.run_dir}: no such run folder; name the --output-dir of a "
                              "finished tfsft train")
        if self.run_dir.is_file():
            raise ConfigError(f"{self.run_dir} is a file; name a finished tfsft run folder (the "
                              "--output-dir of tfsft train)")
        for name in (MODEL_FILE, TOKENIZER_DIR):
            if not (self.run_dir / name).exists():
                raise ConfigError(
                    f"{self.run_dir}: {name} is missing; this is not a finished tfsft run folder "
                    "(train one with `tfsft train ... --output-dir DIR`)")
        record = self._task_record()
        try:
            self.task: Task = create_task(record["task"], record["options"], record["state"])
            self.max_length: int = int(record["max_length"])
        except (TfsftError, TypeError, ValueError) as exc:  # an edited or foreign task.json
            raise ConfigError(f"{self.run_dir / TASK_FILE}: {exc}; the file does not match "
                              "the run (was it edited?): train the run again, or restore the "
                              "run folder from a backup") from None
        self.tokenizer = self.task.data.load_tokenizer(self.run_dir / TOKENIZER_DIR,
                                                       self.max_length)
        self.task.bind(self.tokenizer, self.max_length)

    def _task_record(self) -> dict[str, Any]:
        path = self.run_dir / TASK_FILE
        fix = "train the run again, or restore the run folder from a backup"
        if path.exists():
            record = read_json_file(path, "run's task file", fix)
            missing = [k for k in ("task", "options", "state", "max_length")
                       if not isinstance(record, dict) or k not in record]
            if missing:
                raise ConfigError(f"{path}: the task file lacks {missing}; {fix}")
            return record
        legacy = self.run_dir / LEGACY_LABELS_FILE
        if not legacy.exists():
            raise ConfigError(f"{self.run_dir}: {TASK_FILE} is missing; this is not a finished "
                              "tfsft run folder")
        info = read_json_file(legacy, "run's label file", fix)
        if not isinstance(info, dict) or "labels" not in info or "max_length" not in info:
            raise ConfigError(f"{legacy}: the label file lacks labels or max_length; {fix}")
        options: dict[str, Any] = {}
        config_file = self.run_dir / "config.yaml"
        if config_file.exists():  # the columns it was trained with
            from tfsft.config import TrainConfig

            try:
                options = TrainConfig.from_yaml(config_file).task_options
            except TfsftError:
                options = {}
        if info.get("text_pair") and not options.get("text_pair_column"):
            options["text_pair_column"] = "text_pair"
        return {"task": info.get("task", DEFAULT_TASK), "options": options,
                "max_length": info["max_length"],
                "state": {"labels": info["labels"], "text_pair": bool(info.get("text_pair"))}}

    @property
    def base_checkpoint(self) -> str | None:
        """The checkpoint the run was tuned from, as training resolved it (``run.json``), else
        as ``config.yaml`` names it; None where neither says."""
        try:
            record = json.loads((self.run_dir / "run.json").read_text(encoding="utf-8"))
            if isinstance(record, dict) and record.get("checkpoint"):
                return str(record["checkpoint"])
        except (OSError, ValueError):
            pass
        try:
            config = yaml.safe_load((self.run_dir / "config.yaml").read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            return None
        model = config.get("model") if isinstance(config, dict) else None
        return str(model) if model else None

    @property
    def labels(self) -> tuple[str, ...]:
        """Name of each model output column (labels, or regression targets)."""
        return tuple(self.task.serving.labels())

    @property
    def text_pair(self) -> bool:
        return "text_pair" in self.task.serving.text_inputs()

    @cached_property
    def model(self):
        path = self.run_dir / MODEL_FILE
        if not zipfile.is_zipfile(path):
            raise ConfigError(f"{path}: the saved model is damaged or incomplete (not a .keras "
                              "archive); train the run again, or restore it from a backup")
        try:
            model = self.task.modeling.load(path)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            raise ConfigError(f"{path}: the saved model cannot be loaded ({exc}); train the "
                              "run again, or restore it from a backup") from exc
        expected, got = self.task.modeling.output_count(), getattr(model, "num_outputs", None)
        if expected is not None and isinstance(got, int) and got != expected:
            raise ConfigError(f"{self.run_dir / TASK_FILE}: it names {expected} outputs "
                              f"(labels or targets) but the saved model gives {got}; the file "
                              "does not match the run (was it edited?): train the run again, "
                              "or restore the run folder from a backup")
        return model

    def read(self, source: Any, labelled: bool = True, max_rows: int | None = None,
             file_format: str | None = None, encoding: str = "utf-8",
             delimiter: str | None = None, quoting: bool = True, **columns: Any) -> Any:
        """Read data with this run's task (and its label list); ``columns`` override the
        column options the run was trained with (``text_column="content"``)."""
        self.check_columns(columns)
        task = self.task.with_options(**{k: v for k, v in columns.items() if v is not None})
        return task.data.read(source, role="eval", labelled=labelled, max_rows=max_rows,
                              file_format=file_format, encoding=encoding, delimiter=delimiter,
                              quoting=quoting)

    def check_columns(self, columns: dict[str, Any]) -> None:
        """Refuse a second-text column for a run trained on single texts (its model has no
        input for it)."""
        if (columns.get("text_pair_column") is not None
                and "text_pair" not in self.task.serving.text_inputs()):
            raise ConfigError(f"--text-pair-column {columns['text_pair_column']}: {self.run_dir} "
                              "was trained on single texts and reads no second text; leave "
                              "it out")

    def saved_examples(self, name: str = HELDOUT_FILE, fallback: Any = None) -> Any:
        """Examples saved with the run (``heldout.jsonl`` or ``calibration.jsonl``).

        Runs without them re-read the data named in ``config.yaml`` when it is still there.
        """
        path = self.run_dir / name
        if path.exists():
            if name not in self._saved_examples:  # read once (data drift reads it twice)
                self._saved_examples[name] = self.task.data.read_records(path)
            return self._saved_examples[name]
        from tfsft.config import TrainConfig

        try:
            config = TrainConfig.from_yaml(self.run_dir / "config.yaml")
            train_data, validation_data = load_training_data(self.task, config)
        except TfsftError as exc:
            if fallback is not None:
                return fallback
            raise ConfigError(f"{self.run_dir} holds no {name} and its training data cannot "
                              f"be read ({exc}); pass held-out data (--data FILE)") from exc
        if name == HELDOUT_FILE:
            return validation_data
        return train_data.subset(calibration_sample(len(train_data), config.seed))

    def outputs(self, examples: Any, batch_size: int = 64,
                verbose: int | str = "auto") -> Any:
        """The model's raw outputs for ``examples``, in input order."""
        if batch_size < 1:
            raise ConfigError(f"batch size must be >= 1, got {batch_size}")
        encoded = self.task.data.encode(self.tokenizer, examples, self.max_length)
        return self.task.evaluation.outputs(self.model, encoded, batch_size=batch_size,
                                            verbose=verbose)

    def drift(self, live: Any, blank: int = 0,
              served: dict[str, int] | None = None) -> dict[str, Any]:
        """How unlabelled ``live`` examples (served inputs; ``blank``: how many empty ones were
        left out when reading them) and, if given, the ``served`` label counts differ from the
        run's validation examples; see :mod:`tfsft.data.drift` for the signals and thresholds.

        >>> run = TrainedRun("runs/sst2")                                   # doctest: +SKIP
        >>> run.drift(run.read("live.jsonl", labelled=False))["drift"]      # doctest: +SKIP
        []
        """
        from tfsft.data import drift

        reference = self.saved_examples(HELDOUT_FILE)
        data = self.task.data
        ref_report, ref_lengths = data.token_length_report(self.tokenizer, reference,
                                                           self.max_length)
        live_report, live_lengths = data.token_length_report(self.tokenizer, live,
                                                             self.max_length)
        texts = [*live.texts, *([""] * blank)]
        signals = {"length": drift.length_signal(np.asarray(ref_lengths),
                                                 np.asarray(live_lengths)),
                   "unknown_words": drift.unknown_signal(ref_report["unknown_word_share"],
                                                         live_report["unknown_word_share"]),
                   **drift.input_signals(texts)}
        if served is not None:
            summary = data.target_summary(reference) or {}
            if not summary.get("counts"):
                raise ConfigError(f"{self.run_dir}: the validation examples hold no labels to "
                                  "compare served predictions with (regression runs have none)")
            signals["labels"] = drift.label_signal(summary["counts"], served)
        return {"run_dir": str(self.run_dir),
                "reference": {"source": str(self.run_dir / HELDOUT_FILE),
                              "examples": len(reference)},
                "live": {"source": live.source, "examples": len(texts)},
                "signals": signals,
                "drift": [name for name, signal in signals.items()
                          if signal["verdict"] == "drift"]}

    def predict(self, texts: Sequence[str], text_pairs: Sequence[str] | None = None,
                batch_size: int = 64, verbose: int | str = 0) -> list[dict[str, Any]]:
        """One prediction record per text (its fields depend on the task)."""
        for name, given in (("texts", texts), ("text_pairs", text_pairs)):
            if isinstance(given, str):
                raise ConfigError(f"predict takes a list of {name}, not one string (which "
                                  "would be read character by character); pass [text]")
        inputs = {"text": list(texts)}
        if text_pairs is not None:
            inputs["text_pair"] = list(text_pairs)
        return self.predict_inputs(inputs, batch_size, verbose)

    def predict_inputs(self, inputs: dict[str, Sequence[str]], batch_size: int = 64,
                       verbose: int | str = 0) -> list[dict[str, Any]]:
        """Predictions for raw inputs by name, as the SavedModel takes them (``{"text": [...]}``,
        question answering ``{"question": [...], "context": [...]}``).

        >>> run.predict_inputs({"question": ["Who wrote it?"],          # doctest: +SKIP
        ...                     "context": ["Ada wrote it in 1843."]})[0]["answer"]
        'Ada'
        """
        examples = self.task.data.examples_from_texts({k: list(v) for k, v in inputs.items()})
        return self.task.evaluation.predictions(self.outputs(examples, batch_size, verbose))

    def check_report_folder(self, output_dir: str | Path | None) -> None:
        """Refuse an evaluation ``output_dir`` that is a file, or the run folder or inside it
        (the run's own reports would be replaced), before any work is done."""
        if output_dir is None:
            return
        folder = Path(output_dir)
        run = self.run_dir.resolve()
        if folder.resolve() == run or run in folder.resolve().parents:
            raise ConfigError(f"--output-dir {folder} is the run folder {self.run_dir} or inside "
                              "it, whose reports describe its own validation data; write this "
                              "evaluation to a folder of its own (e.g. evaluations/NAME)")
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"--output-dir {folder} is a file; name a folder for the "
                              "evaluation reports")
        if folder.is_dir() and not (folder / EVALUATION_MARKER).exists():
            entries = sorted(p.name for p in folder.iterdir())
            if entries:
                shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
                raise ConfigError(f"--output-dir {folder} already holds files that tfsft "
                                  f"evaluate did not write ({shown}); name a new or empty "
                                  "folder, or the folder of an earlier evaluation")

    def evaluate(self, examples: Any, output_dir: str | Path | None = None,
                 batch_size: int = 64, verbose: int | str = "auto") -> dict[str, Any]:
        """Metrics on labelled ``examples``; with ``output_dir``, also the report files.

        ``examples`` must name their labels as the run does, in its order (read them with
        :meth:`read`); other examples are refused rather than scored against the wrong labels.
        """
        self.check_report_folder(output_dir)
        names = getattr(examples, "target_names", None)
        if names is not None and self.labels and tuple(names) != self.labels:
            raise ConfigError(f"the examples' labels {list(names)} are not this run's "
                              f"{list(self.labels)} (in that order); read the data with "
                              "TrainedRun.read(...) so its labels map to the run's")
        outputs = self.outputs(examples, batch_size, verbose)
        before = _file_times(Path(output_dir)) if output_dir is not None else {}
        metrics = self.task.evaluation.evaluate(examples, outputs, output_dir=output_dir)
        if output_dir is not None:
            _record_evaluation(Path(output_dir), before)
        return metrics
