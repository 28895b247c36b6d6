"""Evaluation outputs: ``metrics.json``, a text report, confusion-matrix and training-curve PNGs."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfsft.evaluation.metrics import classification_metrics, text_report
from tfsft.io_utils import atomic_file, atomic_write_json, atomic_write_text


def write_evaluation(
    folder: str | Path, label_ids: np.ndarray, probabilities: np.ndarray, labels: Sequence[str],
    prefix: str = "",
) -> dict[str, Any]:
    """Compute metrics and write ``{prefix}metrics.json``, ``{prefix}classification_report.txt``
    and ``{prefix}confusion_matrix.png`` into ``folder``; returns the metrics."""
    folder = Path(folder)
    metrics = classification_metrics(label_ids, probabilities, labels)
    atomic_write_json(folder / f"{prefix}metrics.json", metrics)
    atomic_write_text(folder / f"{prefix}classification_report.txt",
                      text_report(label_ids, probabilities, labels))
    plot_confusion_matrix(np.array(metrics["confusion_matrix"]), labels,
                          folder / f"{prefix}confusion_matrix.png")
    return metrics


def plot_confusion_matrix(matrix: np.ndarray, labels: Sequence[str], path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = max(4.0, 0.6 * len(labels) + 2)
    figure, axes = plt.subplots(figsize=(size, size))
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes, fraction=0.046)
    axes.set_xticks(range(len(labels)), labels=list(labels), rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels=list(labels))
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    threshold = matrix.max() / 2 if matrix.size else 0
    for (row, column), value in np.ndenumerate(matrix):
        axes.text(column, row, str(value), ha="center", va="center",
                  color="white" if value > threshold else "black")
    axes.set_title("Confusion matrix")
    figure.tight_layout()
    with atomic_file(path) as tmp:
        figure.savefig(tmp, dpi=100, format="png")
    plt.close(figure)


def read_history(path: str | Path) -> dict[str, list[float]]:
    """Columns of a Keras ``CSVLogger`` file (a resumed run may repeat an epoch: last one wins)."""
    rows: dict[int, dict[str, str]] = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            rows[int(row["epoch"])] = row
    history: dict[str, list[float]] = {}
    for epoch in sorted(rows):
        for key, value in rows[epoch].items():
            history.setdefault(key, []).append(float(value))
    return history


def plot_training_curves(history: dict[str, list[float]], path: str | Path) -> None:
    """Loss and accuracy per epoch, training next to validation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [int(e) + 1 for e in history.get("epoch", [])]
    panels = [name for name in ("loss", "accuracy") if name in history]
    figure, axes = plt.subplots(1, max(len(panels), 1), figsize=(5 * max(len(panels), 1), 4),
                                squeeze=False)
    for axis, name in zip(axes[0], panels, strict=False):
        axis.plot(epochs, history[name], marker="o", label=f"train {name}")
        if f"val_{name}" in history:
            axis.plot(epochs, history[f"val_{name}"], marker="o", label=f"validation {name}")
        axis.set_xlabel("epoch")
        axis.set_title(name)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    with atomic_file(path) as tmp:
        figure.savefig(tmp, dpi=100, format="png")
    plt.close(figure)
