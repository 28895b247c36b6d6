"""scikit-learn metrics, reports and plots."""

from tfsft.evaluation.metrics import classification_metrics, softmax
from tfsft.evaluation.reports import write_evaluation

__all__ = ["classification_metrics", "softmax", "write_evaluation"]
