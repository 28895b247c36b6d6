"""The modeling role of question answering: the backbone's token vectors -> ``Dense(2)``, start
and end logits per token, trained with the mean cross-entropy of start and end.

>>> from tfsft.tasks import create_task
>>> create_task("question-answering").modeling.monitor("val_span_accuracy")
('val_span_accuracy', 'max')
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfsft.tasks.roles import ModelingRole

if TYPE_CHECKING:  # pragma: no cover
    import keras

    from tfsft.tasks.question_answering.task import QuestionAnsweringTask


class QAModeling(ModelingRole):
    """A per-token text model with two outputs, the span loss and span accuracy."""

    task: QuestionAnsweringTask
    metric_directions = {"loss": False, "span_accuracy": True}
    model_options = ("max_answer_length", "n_best")
    soft_targets = "positions"  # start and end logits over the tokens

    def build(self, checkpoint: Path, dropout: float, dtype: str | None) -> keras.Model:
        from tfsft.models.text_model import TextModel

        return TextModel.from_pretrained(checkpoint, num_outputs=2, pooling="tokens",
                                         dropout=dropout, dtype=dtype)

    def compile(self, model: keras.Model, optimizer: Any) -> None:
        from tfsft.models.metrics import SpanAccuracy, SpanLoss

        model.compile(optimizer=optimizer, loss=SpanLoss(), metrics=[SpanAccuracy()])
