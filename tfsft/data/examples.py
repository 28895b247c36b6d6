"""Turn a :class:`~tfsft.data.readers.Table` into checked text-classification examples.

>>> import pandas as pd
>>> frame = pd.DataFrame({"review": ["great", "awful", "fine"], "stars": ["pos", "neg", "pos"]})
>>> data = read_text_classification(frame, text_column="review", label_column="stars")
>>> data.labels, data.label_ids.tolist()
(('neg', 'pos'), [1, 0, 1])
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tfsft.data.readers import Table, read_table
from tfsft.errors import DataError

logger = logging.getLogger(__name__)
_INTEGRAL = re.compile(r"[+-]?\d+(\.0*)?")


@dataclass(frozen=True)
class Columns:
    """Which columns hold the text, the optional second text and the label."""

    text: str = "text"
    text_pair: str | None = None
    label: str | None = "label"


@dataclass
class TextClassificationData:
    """Texts (and optional second texts) with integer labels indexing ``labels``."""

    texts: list[str]
    text_pairs: list[str] | None
    label_ids: np.ndarray | None
    labels: tuple[str, ...]
    source: str = "data"
    locations: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: Sequence[int] | np.ndarray) -> TextClassificationData:
        """The examples at ``indices`` (same label list)."""
        indices = np.asarray(indices, dtype=np.int64)
        return TextClassificationData(
            texts=[self.texts[i] for i in indices],
            text_pairs=None if self.text_pairs is None else [self.text_pairs[i] for i in indices],
            label_ids=None if self.label_ids is None else self.label_ids[indices],
            labels=self.labels,
            source=self.source,
            locations=[self.locations[i] for i in indices] if self.locations else [],
        )


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
) -> TextClassificationData:
    """Read and check labelled texts from any source :func:`read_table` accepts.

    ``labels`` fixes the label list (as saved by a training run); a label outside it is an error.
    Without it the list is built from the data. ``exclude_labels`` skips rows carrying those labels
    (the count is logged and kept in ``skipped``). ``label_column=None`` reads unlabelled text.
    """
    table = source if isinstance(source, Table) else read_table(source, file_format, encoding)
    columns = Columns(text=text_column, text_pair=text_pair_column, label=label_column)
    return examples_from_table(table, columns, labels, exclude_labels, max_rows)


def examples_from_table(
    table: Table,
    columns: Columns,
    labels: Sequence[str] | None = None,
    exclude_labels: Sequence[str] = (),
    max_rows: int | None = None,
) -> TextClassificationData:
    """Check ``table`` row by row and build examples (see :func:`read_text_classification`)."""
    wanted = [c for c in (columns.text, columns.text_pair, columns.label) if c]
    for column in wanted:
        if column not in table.columns:
            raise DataError(
                table.source, None, f"column {column!r} not found; the columns are "
                f"{', '.join(repr(c) for c in table.columns)}",
                "pass the right name (--text-column / --text-pair-column / --label-column)",
            )
    if len(table) == 0:
        raise DataError(table.source, None, "there are no data rows", "add rows below the header")
    excluded = {str(x) for x in exclude_labels}
    known = None if labels is None else {label: i for i, label in enumerate(labels)}
    texts: list[str] = []
    pairs: list[str] | None = [] if columns.text_pair else None
    raw_labels: list[str] = []
    locations: list[str] = []
    skipped = 0
    rows = zip(table.rows, table.locations, strict=True)
    for row, where in rows:
        if max_rows is not None and len(texts) >= max_rows:
            break
        label = None
        if columns.label:
            label = normalize_label(row.get(columns.label))
            if label is None:
                raise DataError(table.source, where, f"the label (column {columns.label!r}) is empty",
                                "give every row a label, or remove the row")
            if label in excluded:
                skipped += 1
                continue
            if known is not None and label not in known:
                raise DataError(
                    table.source, where, f"label {label!r} was not seen in training; the model "
                    f"knows {', '.join(repr(k) for k in known)}",
                    "fix the label, or train a model that includes it",
                )
        texts.append(_checked_text(table, row, where, columns.text))
        if pairs is not None:
            pairs.append(_checked_text(table, row, where, columns.text_pair))
        if label is not None:
            raw_labels.append(label)
        locations.append(where)
    if not texts:
        raise DataError(table.source, None, "no rows are left after skipping labels "
                        f"{sorted(excluded)}", "check --exclude-labels")
    if skipped:
        logger.warning("%s: skipped %d rows whose label is one of %s (--exclude-labels)",
                       table.source, skipped, sorted(excluded))
    label_list = tuple(labels) if labels is not None else sort_labels(set(raw_labels))
    label_index = {label: i for i, label in enumerate(label_list)}
    label_ids = (
        np.array([label_index[x] for x in raw_labels], dtype=np.int32) if columns.label else None
    )
    return TextClassificationData(
        texts=texts, text_pairs=pairs, label_ids=label_ids, labels=label_list,
        source=table.source, locations=locations,
        skipped={"excluded_labels": skipped} if skipped else {},
    )


def _checked_text(table: Table, row: dict[str, Any], where: str, column: str) -> str:
    value = row.get(column)
    if value is None or (isinstance(value, float) and value != value):
        raise DataError(table.source, where, f"the text (column {column!r}) is missing",
                        "fill it in or remove the row")
    if not isinstance(value, str):
        raise DataError(table.source, where,
                        f"the text (column {column!r}) is a {type(value).__name__}, not a string",
                        "store text as strings")
    if not value.strip():
        raise DataError(table.source, where, f"the text (column {column!r}) is empty",
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
    from sklearn.model_selection import train_test_split

    if data.label_ids is None:
        raise ValueError("cannot split unlabelled data")
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    indices = np.arange(len(data))
    counts = np.bincount(data.label_ids, minlength=len(data.labels))
    stratify = data.label_ids if counts[counts > 0].min() >= 2 else None
    if stratify is None:
        logger.warning("%s: a label has fewer than 2 examples; the validation split is not "
                       "stratified", data.source)
    try:
        train_idx, val_idx = train_test_split(
            indices, test_size=validation_fraction, random_state=seed, stratify=stratify
        )
    except ValueError as exc:
        raise DataError(data.source, None, f"cannot split off a validation set ({exc})",
                        "pass a --validation file or change --validation-fraction") from exc
    return data.subset(np.sort(train_idx)), data.subset(np.sort(val_idx))
