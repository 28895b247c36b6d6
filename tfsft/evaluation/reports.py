"""Evaluation outputs: ``metrics.json``, text reports and PNG plots (confusion matrix, predicted
vs true scatter, training curves)."""

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
    prefix: str = "", predicted: np.ndarray | None = None, extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Compute metrics and write ``{prefix}metrics.json``, ``{prefix}classification_report.txt``
    and ``{prefix}confusion_matrix.png`` into ``folder``; returns the metrics. ``predicted``:
    the decided label ids (default: the most probable label); ``extra``: more metrics entries."""
    folder = Path(folder)
    metrics = {**classification_metrics(label_ids, probabilities, labels, predicted),
               **(extra or {})}
    atomic_write_json(folder / f"{prefix}metrics.json", metrics)
    atomic_write_text(folder / f"{prefix}classification_report.txt",
                      text_report(label_ids, probabilities, labels, predicted))
    plot_confusion_matrix(np.array(metrics["confusion_matrix"]), labels,
                          folder / f"{prefix}confusion_matrix.png")
    return metrics


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_figure(figure, path: str | Path) -> None:
    with atomic_file(path) as tmp:
        figure.savefig(tmp, dpi=100, format="png")
    _pyplot().close(figure)


def plot_confusion_matrix(matrix: np.ndarray, labels: Sequence[str], path: str | Path) -> None:
    from sklearn.metrics import ConfusionMatrixDisplay

    plt = _pyplot()
    size = max(4.0, 0.6 * len(labels) + 2)
    figure, axes = plt.subplots(figsize=(size, size))
    display = ConfusionMatrixDisplay(np.asarray(matrix), display_labels=list(labels))
    display.plot(ax=axes, cmap="Blues", xticks_rotation=45, colorbar=True)
    axes.set_title("Confusion matrix")
    figure.tight_layout()
    _save_figure(figure, path)


def write_regression_report(folder: str | Path, metrics: dict[str, Any], targets: np.ndarray,
                            predicted: np.ndarray, names: Sequence[str], prefix: str = "") -> None:
    """``{prefix}metrics.json``, ``{prefix}regression_report.txt`` and a predicted-vs-true
    scatter plot per target, ``{prefix}scatter.png``."""
    folder = Path(folder)
    atomic_write_json(folder / f"{prefix}metrics.json", metrics)
    lines = [f"{'target':<20} {'MAE':>9} {'RMSE':>9} {'Pearson':>9} {'Spearman':>9} {'R2':>9}"]
    for name, m in metrics["per_target"].items():
        values = [m[k] for k in ("mae", "rmse", "pearson", "spearman", "r2")]
        lines.append(f"{name:<20} " + " ".join("        -" if v is None else f"{v:9.4f}"
                                                for v in values))
    lines.append(f"\n{metrics['examples']} examples")
    atomic_write_text(folder / f"{prefix}regression_report.txt", "\n".join(lines) + "\n")
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 5), squeeze=False)
    for column, (axis, name) in enumerate(zip(axes[0], names, strict=True)):
        truth, guess = targets[:, column], predicted[:, column]
        axis.scatter(truth, guess, s=6, alpha=0.4)
        low, high = float(min(truth.min(), guess.min())), float(max(truth.max(), guess.max()))
        axis.plot([low, high], [low, high], color="grey", linewidth=1, label="predicted = true")
        pearson = metrics["per_target"][name]["pearson"]
        axis.set_title(f"{name}: Pearson {pearson:.3f}" if pearson is not None else name)
        axis.set_xlabel("true")
        axis.set_ylabel("predicted")
        axis.legend(loc="upper left")
        axis.grid(alpha=0.3)
    figure.tight_layout()
    _save_figure(figure, folder / f"{prefix}scatter.png")


def write_multilabel_report(folder: str | Path, metrics: dict[str, Any], targets: np.ndarray,
                            probabilities: np.ndarray, thresholds: Sequence[float],
                            labels: Sequence[str], prefix: str = "") -> None:
    """``{prefix}metrics.json`` and ``{prefix}classification_report.txt`` (per label, with its
    threshold and ROC-AUC)."""
    from sklearn.metrics import classification_report

    folder = Path(folder)
    atomic_write_json(folder / f"{prefix}metrics.json", metrics)
    predicted = (probabilities > np.asarray(thresholds)[None, :]).astype(np.int32)
    text = classification_report(targets, predicted, labels=list(range(len(labels))),
                                 target_names=list(labels), digits=4, zero_division=0)
    lines = [text, f"{'label':<20} {'threshold':>9} {'ROC-AUC':>9}"]
    for label, m in metrics["per_label"].items():
        auc = "        -" if m["roc_auc"] is None else f"{m['roc_auc']:9.4f}"
        lines.append(f"{label:<20} {m['threshold']:9.2f} {auc}")
    lines.append(f"\nsubset accuracy {metrics['subset_accuracy']:.4f}, "
                 f"Hamming loss {metrics['hamming_loss']:.4f}, {metrics['examples']} examples")
    atomic_write_text(folder / f"{prefix}classification_report.txt", "\n".join(lines) + "\n")


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
    """Loss and the other logged metrics per epoch, training next to validation."""
    plt = _pyplot()
    epochs = [int(e) + 1 for e in history.get("epoch", [])]
    panels = [name for name in history if name not in ("epoch", "learning_rate")
              and not name.startswith("val_")]
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
    _save_figure(figure, path)
