"""Classification metrics with scikit-learn.

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


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def classification_metrics(
    label_ids: np.ndarray, probabilities: np.ndarray, labels: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, precision/recall/F1 (macro, weighted, per class), confusion matrix, ROC-AUC.

    ROC-AUC is binary for two labels and one-vs-rest (macro) for more; it is ``None`` when the
    data lacks a label (AUC is undefined then).
    """
    label_ids = np.asarray(label_ids)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    predicted = probabilities.argmax(axis=-1)
    indices = list(range(len(labels)))
    result: dict[str, Any] = {
        "examples": int(label_ids.shape[0]),
        "accuracy": float(skm.accuracy_score(label_ids, predicted)),
    }
    for average in ("macro", "weighted"):
        precision, recall, f1, _ = skm.precision_recall_fscore_support(
            label_ids, predicted, labels=indices, average=average, zero_division=0)
        result[f"precision_{average}"] = float(precision)
        result[f"recall_{average}"] = float(recall)
        result[f"f1_{average}"] = float(f1)
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        label_ids, predicted, labels=indices, average=None, zero_division=0)
    result["per_class"] = {
        label: {"precision": float(precision[i]), "recall": float(recall[i]),
                "f1": float(f1[i]), "support": int(support[i])}
        for i, label in enumerate(labels)
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


def text_report(label_ids: np.ndarray, probabilities: np.ndarray, labels: Sequence[str]) -> str:
    """scikit-learn's classification report as text."""
    return skm.classification_report(
        label_ids, np.asarray(probabilities).argmax(axis=-1), labels=list(range(len(labels))),
        target_names=list(labels), digits=4, zero_division=0)
