"""Turn a :class:`~tfsft.data.readers.Table` into checked text-classification examples.

>>> import pandas as pd
>>> frame = pd.DataFrame({"review": ["great", "awful", "fine"], "stars": ["pos", "neg", "pos"]})
>>> data = read_text_classification(frame, text_column="review", label_column="stars")
>>> data.labels, data.label_ids.tolist()
(('neg', 'pos'), [1, 0, 1])
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from tfsft.data.readers import Table, read_table, visible
from tfsft.errors import DataError

logger = logging.getLogger(__name__)
ExamplesT = TypeVar("ExamplesT", bound="TextExamples")
_INTEGRAL = re.compile(r"[+-]?\d+(\.0*)?")


@dataclass(frozen=True)
class Columns:
    """Which columns hold the text, the optional second text and the label."""

    text: str = "text"
    text_pair: str | None = None
    label: str | None = "label"


@dataclass
class TextExamples:
    """Texts (and optional second texts) with per-example ``targets`` (or None: unlabelled).

    ``targets`` is an array with one row per example: label ids for classification, a 0/1
    matrix for multi-label classification, float values for regression. ``target_names`` names
    the labels or target columns. ``skipped`` counts rows left out on purpose, by reason.
    """

    texts: list[str]
    text_pairs: list[str] | None
    targets: np.ndarray | None
    target_names: tuple[str, ...]
    source: str = "data"
    locations: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: Sequence[int] | np.ndarray) -> TextExamples:
        """The examples at ``indices`` (same label list; ``skipped`` counts are kept)."""
        indices = np.asarray(indices, dtype=np.int64)
        return dataclasses.replace(
            self,
            texts=[self.texts[i] for i in indices],
            text_pairs=None if self.text_pairs is None else [self.text_pairs[i] for i in indices],
            targets=None if self.targets is None else self.targets[indices],
            locations=[self.locations[i] for i in indices] if self.locations else [],
            skipped=dict(self.skipped),
        )


class TextClassificationData(TextExamples):
    """Texts with integer labels indexing ``labels`` (``targets`` / ``target_names``)."""

    @property
    def label_ids(self) -> np.ndarray | None:
        return self.targets

    @property
    def labels(self) -> tuple[str, ...]:
        return self.target_names


def normalize_label(value: Any) -> str | None:
    """A label as a string: ints and integral floats as ``"3"``; ``None``/NaN/blank as None."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if hasattr(value, "item"):  # numpy scalars
        return normalize_label(value.item())
    text = str(value).strip()
    if _INTEGRAL.fullmatch(text):  # "2", "2.0" and "02" in a text file are the same label
        return str(int(float(text)))
    return text or None


def sort_labels(labels: set[str]) -> tuple[str, ...]:
    """A stable label order: numeric labels by value, others alphabetically."""
    try:
        return tuple(sorted(labels, key=int))
    except ValueError:
        return tuple(sorted(labels))


def read_text_classification(
    source: Any,
    text_column: str = "text",
    label_column: str | None = "label",
    text_pair_column: str | None = None,
    labels: Sequence[str] | None = None,
    exclude_labels: Sequence[str] = (),
    max_rows: int | None = None,
    file_format: str | None = None,
    encoding: str = "utf-8",
    delimiter: str | None = None,
    quoting: bool = True,
) -> TextClassificationData:
    """Read and check labelled texts from any source :func:`read_table` accepts.

    ``labels`` fixes the label list (as saved by a training run); a label outside it is an error.
    Without it the list is built from the data. ``exclude_labels`` skips rows carrying those labels
    (the count is logged and kept in ``skipped``). ``label_column=None`` reads unlabelled text.
    """
    table = source if isinstance(source, Table) else read_table(
        source, file_format, encoding, delimiter, quoting)
    columns = Columns(text=text_column, text_pair=text_pair_column, label=label_column)
    return examples_from_table(table, columns, labels, exclude_labels, max_rows)


SKIP = object()  # returned by a target reader: leave this row out (counted)


@dataclass
class TextRows:
    """What :func:`read_text_rows` collected: texts, optional pairs, one target per row."""

    texts: list[str]
    text_pairs: list[str] | None
    targets: list[Any]
    locations: list[str]
    skipped: int


def read_text_rows(
    table: Table,
    text_column: str,
    text_pair_column: str | None,
    target_columns: Sequence[str] = (),
    read_target: Callable[[dict[str, Any], str], Any] | None = None,
    max_rows: int | None = None,
    flags: str = "--text-column / --text-pair-column / --label-column",
) -> TextRows:
    """Check ``table`` row by row: texts must be non-empty strings; ``read_target(row, where)``
    returns a row's target, raises :class:`DataError`, or returns :data:`SKIP` to leave the row
    out (counted in ``skipped``). Stops after ``max_rows`` kept rows."""
    named = [c for c in [text_column, text_pair_column, *target_columns] if c]
    repeated = sorted({c for c in named if named.count(c) > 1})
    if repeated:
        raise DataError(table.source, None, f"column {repeated[0]!r} is named for two roles "
                        "(text, second text, label or target)",
                        f"name a different column for each ({flags})")
    for column in [text_column, text_pair_column, *target_columns]:
        if column and column not in table.columns:
            raise DataError(
                table.source, None, f"column {column!r} not found; the columns are "
                f"{', '.join(repr(c) for c in table.columns)}", f"pass the right name ({flags})")
    if len(table) == 0:
        raise DataError(table.source, None, "there are no data rows", "add rows below the header")
    rows = TextRows([], [] if text_pair_column else None, [], [], 0)
    for row, where in zip(table.rows, table.locations, strict=True):
        if max_rows is not None and len(rows.texts) >= max_rows:
            break
        if read_target is not None:
            target = read_target(row, where)
            if target is SKIP:
                rows.skipped += 1
                continue
            rows.targets.append(target)
        rows.texts.append(_checked_text(table, row, where, text_column))
        if rows.text_pairs is not None:
            rows.text_pairs.append(_checked_text(table, row, where, text_pair_column))
        rows.locations.append(where)
    return rows


def label_reader(source: str, column: str, labels: Sequence[str] | None = None,
                 exclude_labels: Sequence[str] = ()) -> Callable[[dict[str, Any], str], Any]:
    """A :func:`read_text_rows` target reader for one label per row (a string).

    Blank labels and labels outside ``labels`` (when given) are errors naming the row; labels
    in ``exclude_labels`` make the row :data:`SKIP`.
    """
    excluded = {str(x) for x in exclude_labels}
    known = None if labels is None else set(labels)

    def read_label(row: dict[str, Any], where: str) -> Any:
        label = normalize_label(row.get(column))
        refuse_missing_value_marker(label, source, where, column)
        if label is None:
            raise DataError(source, where, f"the label (column {column!r}) is empty",
                            "give every row a label, or remove the row")
        if label in excluded:
            return SKIP
        if known is not None and label not in known:
            raise DataError(
                source, where, f"label {label!r} was not seen in training; the model "
                f"knows {', '.join(repr(k) for k in labels)}",
                "fix the label, or train a model that includes it",
            )
        return label

    return read_label


def refuse_missing_value_marker(label: str | None, source: str, where: str, column: str) -> None:
    """A label such as ``NaN`` or ``NA`` is a missing value written out (pandas does so), not a
    class: an error naming the row."""
    from tfsft.data.checks import MISSING_VALUE_MARKERS

    if label in MISSING_VALUE_MARKERS:
        raise DataError(source, where, f"the label (column {column!r}) is {label!r}, which marks "
                        "a missing value", "give the row its label, or remove the row")


def classification_examples(rows: TextRows, source: str, labels: Sequence[str] | None,
                            exclude_labels: Sequence[str] = (),
                            labelled: bool = True, chunk: bool = False) -> TextClassificationData:
    """Examples from rows read with :func:`label_reader` (label list from the data if None).
    ``chunk``: the rows are part of a larger file (which is checked whole): they may all have
    been skipped, and skipping is not logged."""
    excluded = sorted({str(x) for x in exclude_labels})
    if not rows.texts and not chunk:
        raise DataError(source, None, f"no rows are left after skipping labels {excluded}",
                        "check --exclude-labels")
    if rows.skipped and not chunk:
        logger.warning("%s: skipped %d rows whose label is one of %s (--exclude-labels)",
                       source, rows.skipped, excluded)
    label_list = tuple(labels) if labels is not None else sort_labels(set(rows.targets))
    label_index = {label: i for i, label in enumerate(label_list)}
    label_ids = (np.array([label_index[x] for x in rows.targets], dtype=np.int32)
                 if labelled else None)
    return TextClassificationData(
        rows.texts, rows.text_pairs, label_ids, label_list, source=source,
        locations=rows.locations,
        skipped={"excluded_labels": rows.skipped} if rows.skipped else {},
    )


def examples_from_table(
    table: Table,
    columns: Columns,
    labels: Sequence[str] | None = None,
    exclude_labels: Sequence[str] = (),
    max_rows: int | None = None,
) -> TextClassificationData:
    """Check ``table`` row by row and build examples (see :func:`read_text_classification`)."""
    reader = (label_reader(table.source, columns.label, labels, exclude_labels)
              if columns.label else None)
    rows = read_text_rows(table, columns.text, columns.text_pair,
                          [columns.label] if columns.label else [], reader, max_rows)
    return classification_examples(rows, table.source, labels, exclude_labels,
                                   labelled=bool(columns.label))


def _checked_text(table: Table, row: dict[str, Any], where: str, column: str) -> str:
    value = row.get(column)
    if value is None or (isinstance(value, float) and value != value):
        raise DataError(table.source, where, f"the text (column {column!r}) is missing",
                        "fill it in or remove the row")
    if not isinstance(value, str):
        raise DataError(table.source, where,
                        f"the text (column {column!r}) is {value!r:.40} ({type(value).__name__}), "
                        "not a string",
                        "store text as strings")
    if not visible(value):
        what = "empty" if not value.strip() else "only invisible (zero-width) characters"
        raise DataError(table.source, where, f"the text (column {column!r}) is {what}",
                        "fill it in or remove the row")
    return value


def stratified_split(
    data: TextClassificationData, validation_fraction: float, seed: int
) -> tuple[TextClassificationData, TextClassificationData]:
    """Split off a seeded validation set with the same label proportions.

    >>> import numpy as np
    >>> data = TextClassificationData([f"t{i}" for i in range(20)], None,
    ...                               np.array([0, 1] * 10, dtype=np.int32), ("a", "b"))
    >>> train, validation = stratified_split(data, 0.2, seed=0)
    >>> len(train), len(validation), sorted(validation.label_ids.tolist())
    (16, 4, [0, 0, 1, 1])
    """
    if data.label_ids is None:
        raise ValueError("cannot split unlabelled data")
    counts = np.bincount(data.label_ids, minlength=len(data.labels))
    stratify = data.label_ids if counts[counts > 0].min() >= 2 else None
    if stratify is None:
        logger.warning("%s: a label has fewer than 2 examples; the validation split is not "
                       "stratified", data.source)
    return split_examples(data, validation_fraction, seed, stratify)


def split_examples(data: ExamplesT, validation_fraction: float, seed: int,
                   stratify: np.ndarray | None = None) -> tuple[ExamplesT, ExamplesT]:
    """A seeded split into training and validation examples (``stratify``: a class per row).

    >>> data = TextExamples([f"t{i}" for i in range(10)], None, np.arange(10.0)[:, None], ("y",))
    >>> train, validation = split_examples(data, 0.2, seed=0)
    >>> len(train), len(validation)
    (8, 2)
    """
    from sklearn.model_selection import train_test_split

    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    indices = np.arange(len(data))
    try:
        train_idx, val_idx = train_test_split(
            indices, test_size=validation_fraction, random_state=seed, stratify=stratify
        )
    except ValueError as exc:
        raise DataError(data.source, None, f"cannot split off a validation set ({exc})",
                        "pass a --validation file or change --validation-fraction") from exc
    return data.subset(np.sort(train_idx)), data.subset(np.sort(val_idx))
