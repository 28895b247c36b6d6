"""Metrics of every task, computed with scikit-learn (and SciPy's rank correlation).

>>> import numpy as np
>>> probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
>>> metrics = classification_metrics(np.array([0, 1, 1, 1]), probabilities, ("neg", "pos"))
>>> metrics["accuracy"], metrics["confusion_matrix"]
(0.75, [[1, 0], [1, 2]])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn import metrics as skm


def classification_metrics(
    label_ids: np.ndarray, probabilities: np.ndarray, labels: Sequence[str],
    predicted: np.ndarray | None = None,
) -> dict[str, Any]:
    """Accuracy, precision/recall/F1 (macro, weighted, per class), confusion matrix, ROC-AUC.

    ROC-AUC is binary for two labels and one-vs-rest (macro) for more; it is ``None`` when the
    data lacks a label (AUC is undefined then). ``predicted``: the decided label ids (default:
    the most probable label; a tuned decision threshold decides otherwise).
    """
    label_ids = np.asarray(label_ids)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if predicted is None:
        predicted = probabilities.argmax(axis=-1)
    indices = list(range(len(labels)))
    result: dict[str, Any] = {
        "examples": int(label_ids.shape[0]),
        "accuracy": float(skm.accuracy_score(label_ids, predicted)),
    }
    report = skm.classification_report(label_ids, predicted, labels=indices,
                                       target_names=list(labels), output_dict=True,
                                       zero_division=0)
    for average in ("macro", "weighted"):
        for metric, key in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score")):
            result[f"{metric}_{average}"] = float(report[f"{average} avg"][key])
    result["per_class"] = {
        label: {"precision": float(report[label]["precision"]),
                "recall": float(report[label]["recall"]),
                "f1": float(report[label]["f1-score"]), "support": int(report[label]["support"])}
        for label in labels
    }
    result["confusion_matrix"] = skm.confusion_matrix(label_ids, predicted, labels=indices).tolist()
    result["roc_auc"] = _roc_auc(label_ids, probabilities, len(labels))
    return result


def _roc_auc(label_ids: np.ndarray, probabilities: np.ndarray, num_labels: int) -> float | None:
    present = np.unique(label_ids)
    if len(present) < num_labels or num_labels < 2:
        return None
    if num_labels == 2:
        return float(skm.roc_auc_score(label_ids, probabilities[:, 1]))
    return float(skm.roc_auc_score(label_ids, probabilities, multi_class="ovr", average="macro",
                                   labels=list(range(num_labels))))


def text_report(label_ids: np.ndarray, probabilities: np.ndarray, labels: Sequence[str],
                predicted: np.ndarray | None = None) -> str:
    """scikit-learn's classification report as text (``predicted``: as in
    :func:`classification_metrics`)."""
    if predicted is None:
        predicted = np.asarray(probabilities).argmax(axis=-1)
    return skm.classification_report(
        label_ids, predicted, labels=list(range(len(labels))),
        target_names=list(labels), digits=4, zero_division=0)


def regression_metrics(targets: np.ndarray, predicted: np.ndarray,
                       names: Sequence[str]) -> dict[str, Any]:
    """MAE, RMSE, Pearson, Spearman and R² per target and averaged over the targets.

    >>> truth = np.array([[1.0], [2.0], [3.0], [4.0]])
    >>> metrics = regression_metrics(truth, truth * 2, ["score"])
    >>> metrics["pearson"], metrics["spearman"], metrics["mae"]
    (1.0, 1.0, 2.5)
    """
    from scipy import stats

    targets = np.asarray(targets, np.float64).reshape(len(targets), -1)
    predicted = np.asarray(predicted, np.float64).reshape(len(predicted), -1)
    per_target = {}
    for column, name in enumerate(names):
        truth, guess = targets[:, column], predicted[:, column]
        varied = len(truth) > 1 and np.std(truth) > 0 and np.std(guess) > 0
        per_target[name] = {
            "mae": float(skm.mean_absolute_error(truth, guess)),
            "rmse": float(skm.root_mean_squared_error(truth, guess)),
            "pearson": float(stats.pearsonr(truth, guess)[0]) if varied else None,
            "spearman": float(stats.spearmanr(truth, guess)[0]) if varied else None,
            "r2": float(skm.r2_score(truth, guess)) if len(truth) > 1 else None,
        }

    def mean_of(metric: str) -> float | None:
        values = [m[metric] for m in per_target.values()]
        return None if any(v is None for v in values) else float(np.mean(values))

    return {"examples": int(len(targets)),
            **{metric: mean_of(metric) for metric in ("mae", "rmse", "pearson", "spearman", "r2")},
            "per_target": per_target}


def multilabel_metrics(targets: np.ndarray, probabilities: np.ndarray,
                       thresholds: Sequence[float], labels: Sequence[str]) -> dict[str, Any]:
    """Micro/macro P/R/F1, per-label P/R/F1/ROC-AUC, subset accuracy and Hamming loss at
    per-label ``thresholds`` (a label is predicted when its probability is above it).

    >>> targets = np.array([[1, 0], [0, 1], [1, 1]])
    >>> probabilities = np.array([[0.9, 0.2], [0.1, 0.7], [0.8, 0.3]])
    >>> m = multilabel_metrics(targets, probabilities, [0.5, 0.5], ["a", "b"])
    >>> m["subset_accuracy"], round(m["f1_micro"], 3), round(m["hamming_loss"], 3)
    (0.6666666666666666, 0.857, 0.167)
    """
    targets = np.asarray(targets).astype(np.int32)
    probabilities = np.asarray(probabilities, np.float64)
    predicted = (probabilities > np.asarray(thresholds)[None, :]).astype(np.int32)
    report = skm.classification_report(targets, predicted, labels=list(range(len(labels))),
                                       target_names=list(labels), output_dict=True,
                                       zero_division=0)
    result: dict[str, Any] = {"examples": int(len(targets))}
    for average in ("micro", "macro", "weighted", "samples"):
        entry = report[f"{average} avg"]
        for metric, key in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score")):
            result[f"{metric}_{average}"] = float(entry[key])
    result["subset_accuracy"] = float(skm.accuracy_score(targets, predicted))
    result["hamming_loss"] = float(skm.hamming_loss(targets, predicted))
    result["per_label"] = {}
    aucs = []
    for column, label in enumerate(labels):
        truth = targets[:, column]
        auc = (float(skm.roc_auc_score(truth, probabilities[:, column]))
               if 0 < truth.sum() < len(truth) else None)
        if auc is not None:
            aucs.append(auc)
        result["per_label"][label] = {
            "precision": float(report[label]["precision"]), "recall": float(report[label]["recall"]),
            "f1": float(report[label]["f1-score"]), "support": int(report[label]["support"]),
            "threshold": float(thresholds[column]), "roc_auc": auc}
    result["roc_auc_macro"] = float(np.mean(aucs)) if aucs else None
    return result


#: Decision thresholds tried when tuning them on validation data.
THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.01), 2)


def tune_thresholds(targets: np.ndarray, probabilities: np.ndarray) -> list[float]:
    """Per label, the threshold of :data:`THRESHOLD_GRID` with the best F1 on validation data
    (ties: the one closest to 0.5; labels without positive examples keep 0.5).

    >>> targets = np.array([[1], [1], [0], [0]])
    >>> tune_thresholds(targets, np.array([[0.3], [0.4], [0.2], [0.1]]))
    [0.29]
    """
    thresholds = []
    for column in range(targets.shape[1]):
        truth = targets[:, column].astype(bool)
        if not truth.any():
            thresholds.append(0.5)
            continue
        predicted = probabilities[:, column][:, None] > THRESHOLD_GRID[None, :]
        tp = (predicted & truth[:, None]).sum(axis=0)
        fp = (predicted & ~truth[:, None]).sum(axis=0)
        fn = (~predicted & truth[:, None]).sum(axis=0)
        f1 = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
        best = np.flatnonzero(f1 == f1.max())
        closest = best[np.argmin(np.abs(THRESHOLD_GRID[best] - 0.5))]
        thresholds.append(float(THRESHOLD_GRID[closest]))
    return thresholds
