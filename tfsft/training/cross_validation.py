"""``tfsft cv``: k-fold cross-validation over a training file, one ordinary run per fold.

The rows of the training file are split into ``folds`` parts: stratified by label for
classification, by group with ``group_column`` (no group in two parts), else at random (seeded).
Fold ``k`` trains on the other parts and validates on part ``k``; it is a run folder of its own
(``OUTPUT/fold-k``: evaluate, predict and export work on it). The folds run one after another;
``resume`` skips the finished ones and resumes an interrupted one. At the end:

- ``cv_summary.json`` / ``cv_summary.txt``: each fold's validation metrics and their mean ±
  standard deviation (ddof 1);
- ``out_of_fold.jsonl``: every row's prediction by the fold that did not train on it, in the
  order of the training file, with the row's line and fold.

>>> from tfsft.config import TrainConfig, option_changes
>>> config = TrainConfig(train="train.tsv", model="minilm-l6", output_dir="cv/sst2")
>>> summary = cross_validate(config, folds=5)                              # doctest: +SKIP
>>> summary["mean"]["accuracy"]                                            # doctest: +SKIP
0.844
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from tfsft.config import TrainConfig, option_changes
from tfsft.data.examples import normalize_label
from tfsft.data.readers import read_table, rows_copied_from
from tfsft.errors import ConfigError, DataError
from tfsft.io_utils import atomic_write_json, atomic_write_text
from tfsft.tasks.base import create_task

logger = logging.getLogger(__name__)

MARKER = ".tfsft-cv"
DATA_DIR = "fold_data"


def cross_validate(config: TrainConfig, folds: int, group_column: str | None = None,
                   resume: bool = False) -> dict[str, Any]:
    """Train ``folds`` runs of ``config`` (see the module docstring); returns the summary."""
    from tfsft.data.writers import write_table
    from tfsft.training.trainer import train

    _refuse_options(config)
    if resume and config.overwrite:
        raise ConfigError("--resume finishes an earlier cross-validation and --overwrite "
                          "starts it over; pass one of them")
    task = create_task(config.task, config.task_options)
    if isinstance(config.train, (str, Path)):
        try:  # a document (SQuAD JSON) has no rows to split into folds
            task.data.refuse_chunked_file(Path(config.train), config.file_format)
        except DataError as exc:
            raise DataError(exc.source, None, "tfsft cv splits the rows of a table, and this "
                            "file is one document, not rows", "write one example per JSONL "
                            "line (question answering: question, context, answers) to "
                            "cross-validate it") from None
    table = read_table(config.train, config.file_format, config.encoding, config.delimiter,
                       config.quoting)
    if config.max_train_rows is not None:  # the folds split the first rows only
        table = dataclasses.replace(table, rows=table.rows[:config.max_train_rows],
                                    locations=table.locations[:config.max_train_rows])
    task.data.read(table, role="train")  # every row checked, errors naming the user's file
    parts = fold_of_rows(table, task, folds, config.seed, group_column)
    output = _checked_folder(config, folds, resume, rows_digest(table))
    data = output / DATA_DIR
    data.mkdir(parents=True, exist_ok=True)
    (output / MARKER).write_text("written by tfsft cv; --overwrite may replace this folder\n")
    fold_metrics: list[dict[str, Any]] = []
    for fold in range(1, folds + 1):
        run_dir = output / f"fold-{fold}"
        if _finished(run_dir):
            logger.info("fold %d of %d: finished earlier (%s), skipped", fold, folds, run_dir)
        else:
            logger.info("fold %d of %d: training on %d rows, validating on %d", fold, folds,
                        int((parts != fold - 1).sum()), int((parts == fold - 1).sum()))
            files, origins = {}, {}
            for role, rows in (("train", parts != fold - 1), ("validation", parts == fold - 1)):
                files[role] = data / f"fold-{fold}-{role}.jsonl"
                chosen = np.flatnonzero(rows)
                write_table(files[role], table.columns, [table.rows[i] for i in chosen])
                origins[files[role]] = (f"{table.source} (the {role} rows of fold {fold})",
                                        [table.locations[i] for i in chosen])
            _clear_unresumable(run_dir)
            fold_config = dataclasses.replace(
                config, train=str(files["train"]), validation=str(files["validation"]),
                output_dir=str(run_dir), file_format="jsonl", delimiter=None, quoting=True,
                max_train_rows=None, max_validation_rows=None, overwrite=False,
                task_options=_without_validation_columns(config.task_options))
            with rows_copied_from(origins):  # messages name the user's file and lines
                train(fold_config)
                _write_out_of_fold(run_dir, files["validation"], table, parts == fold - 1,
                                   data / f"fold-{fold}-out_of_fold.jsonl", fold)
        fold_metrics.append(json.loads((run_dir / "metrics.json").read_text()))
    return _summarize(output, task, fold_metrics, folds)


def fold_of_rows(table: Any, task: Any, folds: int, seed: int,
                 group_column: str | None = None) -> np.ndarray:
    """The fold (0 to ``folds - 1``) of each row of ``table``: stratified by label where the
    task has one label column, grouped by ``group_column`` where given; errors where a fold
    would be empty or a label missing from one."""
    from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

    rows = len(table.rows)
    if folds < 2:
        raise ConfigError(f"--folds must be at least 2, got {folds}")
    if rows < folds:
        raise DataError(table.source, None, f"{rows} rows cannot make {folds} folds",
                        "use fewer --folds")
    column = getattr(task.options, "label_column", None)
    labels = None
    if column is not None and getattr(task.options, "label_delimiter", None) is None:
        if column not in table.columns:
            raise DataError(table.source, None, f"no label column {column!r}; the columns are "
                            f"{', '.join(table.columns)}", "name it with --label-column")
        labels = np.array([str(normalize_label(row.get(column))) for row in table.rows])
        counts = {str(label): int((labels == label).sum()) for label in np.unique(labels)}
        smallest = str(min(counts, key=counts.get))
        if counts[smallest] < folds:
            raise DataError(table.source, None, f"--folds {folds} puts every label in every "
                            f"fold, but label {smallest!r} has {counts[smallest]} rows",
                            f"use at most --folds {counts[smallest]}, or add rows of that label")
    groups = None
    if group_column is not None:
        if group_column not in table.columns:
            raise DataError(table.source, None, f"no group column {group_column!r}; the columns "
                            f"are {', '.join(table.columns)}", "name it with --group-column")
        missing = [where for row, where in zip(table.rows, table.locations, strict=True)
                   if normalize_label(row.get(group_column)) is None]
        if missing:
            raise DataError(table.source, missing[0], f"the group (column {group_column!r}) is "
                            f"empty; {len(missing)} row(s) have none, which would all become "
                            "one group", "give every row its group (such as its user or "
                            "document), or remove those rows")
        groups = np.array([str(normalize_label(row.get(group_column))) for row in table.rows])
        distinct = len(set(groups.tolist()))
        if distinct < folds:
            raise DataError(table.source, None, f"column {group_column!r} holds {distinct} "
                            f"group(s); {folds} folds need at least {folds} (no group is split "
                            "between folds)", "use fewer --folds, or another --group-column")
    index = np.zeros(rows)
    if groups is not None and labels is not None:
        splitter = StratifiedGroupKFold(folds, shuffle=True, random_state=seed)
        splits = splitter.split(index, labels, groups)
    elif groups is not None:
        splits = GroupKFold(folds).split(index, groups=groups)
    elif labels is not None:
        splits = StratifiedKFold(folds, shuffle=True, random_state=seed).split(index, labels)
    else:
        splits = KFold(folds, shuffle=True, random_state=seed).split(index)
    fold_of = np.full(rows, -1)
    for fold, (_, held) in enumerate(splits):
        fold_of[held] = fold
    return fold_of


def _refuse_options(config: TrainConfig) -> None:
    if not config.output_dir:
        raise ConfigError("name the cross-validation folder with --output-dir")
    if config.validation:
        raise ConfigError("tfsft cv makes each fold's validation data from --train; leave out "
                          "--validation (evaluate a fold's run on other data afterwards)")
    if Path(config.train).is_dir():
        raise ConfigError(f"--train {config.train} is a folder; tfsft cv splits a training "
                          "file's rows")


def rows_digest(table: Any) -> str:
    """SHA-256 of a table's columns and rows: the data a cross-validation splits (a resumed
    one must split the same rows, wherever they came from).

    >>> from tfsft.data.readers import Table
    >>> a = Table("a.csv", ["text"], [{"text": "good"}], ["line 2"])
    >>> rows_digest(a) == rows_digest(Table("b.jsonl", ["text"], [{"text": "good"}], ["line 1"]))
    True
    """
    digest = hashlib.sha256(json.dumps(list(table.columns)).encode())
    for row in table.rows:
        digest.update(json.dumps(row, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _checked_folder(config: TrainConfig, folds: int, resume: bool, data_digest: str) -> Path:
    output = Path(config.output_dir)
    if output.exists() and not output.is_dir():
        raise ConfigError(f"--output-dir {output} is a file; name a folder")
    now = {"folds": folds, "config": config.to_dict(), "data_sha256": data_digest}
    if resume and not (output.is_dir() and any(output.iterdir())):
        logger.warning("--resume: %s holds no cross-validation yet; starting one", output)
    if output.is_dir() and any(output.iterdir()):
        if not (output / MARKER).exists():
            raise ConfigError(f"--output-dir {output} is not empty and was not written by tfsft "
                              "cv; name a new folder")
        saved = output / "cv.json"
        before = json.loads(saved.read_text()) if saved.exists() else None
        if config.overwrite:
            from tfsft.run_folder import clear_run_folder

            for child in sorted(output.glob("fold-*")):
                clear_run_folder(child, inputs=(config.train,))
        elif not resume:
            raise ConfigError(f"{output} holds an earlier cross-validation; pass --resume to "
                              "finish it, or --overwrite to start over")
        elif before is not None:
            changed = option_changes({**before["config"], "folds": before["folds"]},
                                     {**now["config"], "folds": folds})
            if changed:
                raise ConfigError(f"{output} holds a cross-validation with other options "
                                  f"({changed}); resume it with the same options, or pass "
                                  "--overwrite to start over")
            if before.get("data_sha256", data_digest) != data_digest:
                raise ConfigError(f"{output} holds a cross-validation of other data: the rows "
                                  f"of {config.train} changed since its finished folds were "
                                  "split; restore the file to resume, or pass --overwrite to "
                                  "start over on the new rows")
    output.mkdir(parents=True, exist_ok=True)
    atomic_write_json(output / "cv.json", now)
    return output


def _clear_unresumable(run_dir: Path) -> None:
    """Remove a fold folder this cross-validation started but cannot resume (stopped before
    its first backup, even before its config was written); only tfsft's own entries."""
    import shutil

    from tfsft.run_folder import MARKER as RUN_MARKER
    from tfsft.run_folder import run_entries

    if not run_dir.is_dir() or (run_dir / "backup").is_dir():
        return
    known = run_entries() | {RUN_MARKER}
    if all(path.name in known for path in run_dir.iterdir()):
        shutil.rmtree(run_dir)


def _finished(run_dir: Path) -> bool:
    return (run_dir / "metrics.json").is_file() and (run_dir / "model.keras").is_file()


def _without_validation_columns(options: dict[str, Any]) -> dict[str, Any]:
    """The task options without those naming validation-file columns (a fold's validation
    rows are rows of the training file)."""
    return {k: v for k, v in options.items() if not k.startswith("validation_")}


def _write_out_of_fold(run_dir: Path, validation: Path, table: Any, held: np.ndarray,
                       path: Path, fold: int) -> None:
    from tfsft.runs import TrainedRun

    run = TrainedRun(run_dir)
    examples = run.read(str(validation))
    records = run.task.evaluation.predictions(run.outputs(examples, verbose=0))
    where = [table.locations[i] for i in np.flatnonzero(held)]
    if len(records) != len(where):  # rows the task skips on purpose (excluded labels)
        where = list(getattr(examples, "locations", [])) or [None] * len(records)
    lines = [json.dumps({"where": place, "fold": fold, **record}, ensure_ascii=False)
             for place, record in zip(where, records, strict=True)]
    atomic_write_text(path, "\n".join(lines) + "\n")


def _summarize(output: Path, task: Any, fold_metrics: list[dict[str, Any]],
               folds: int) -> dict[str, Any]:
    scalars = [{k: v for k, v in task.evaluation.headline(m).items()
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "examples"}
               for m in fold_metrics]
    names = [k for k in scalars[0] if all(k in s for s in scalars)]
    mean = {k: statistics.mean(s[k] for s in scalars) for k in names}
    std = {k: statistics.stdev(s[k] for s in scalars) for k in names}
    summary = {"folds": folds, "per_fold": scalars, "mean": mean, "std": std,
               "examples": [m.get("examples") for m in fold_metrics],
               "out_of_fold": str(output / "out_of_fold.jsonl")}
    lines = []
    for fold in range(1, folds + 1):
        part = output / DATA_DIR / f"fold-{fold}-out_of_fold.jsonl"
        if part.exists():
            lines += [line for line in part.read_text(encoding="utf-8").split("\n") if line]
    atomic_write_text(output / "out_of_fold.jsonl", "\n".join(_in_file_order(lines)) + "\n")
    header = "| fold | " + " | ".join(names) + " |"
    rows = [f"| {i} | " + " | ".join(f"{s[k]:.4f}" for k in names) + " |"
            for i, s in enumerate(scalars, 1)]
    rows.append("| mean ± std | " + " | ".join(f"{mean[k]:.4f} ± {std[k]:.4f}" for k in names)
                + " |")
    text = "\n".join([header, "|---|" + "---|" * len(names), *rows]) + "\n"
    atomic_write_json(output / "cv_summary.json", summary)
    atomic_write_text(output / "cv_summary.txt", text)
    summary["table"] = text
    return summary


def _in_file_order(lines: list[str]) -> list[str]:
    """Out-of-fold records sorted by their line (or row) in the training file."""
    def position(line: str) -> tuple[int, str]:
        where = json.loads(line).get("where") or ""
        digits = "".join(c for c in where.split(" (")[0] if c.isdigit())
        return (int(digits) if digits else 0, where)

    return sorted(lines, key=position)
