"""``question-answering``: extractive QA (SQuAD v1.1 / v2.0), answer text and offsets out.

Data (:mod:`~tfsft.tasks.question_answering.data`): SQuAD JSON, flat JSONL/CSV/Parquet rows or
Hugging Face datasets (see :mod:`tfsft.tasks.question_answering.examples`); every answer is
checked against its context.

Features: ``[CLS] question [SEP] context window [SEP]``, windows of ``max_length`` tokens over
long contexts sharing ``doc_stride`` pieces (:mod:`tfsft.tasks.question_answering.graph`, the same ops in
training and in the SavedModel). A window's target is the token span of the question's first
answer, or ``[CLS]`` twice when the window does not hold the whole answer (and for
unanswerable questions).

Model (:mod:`~tfsft.tasks.question_answering.modeling`): the backbone's token vectors ->
``Dense(2)``: start and end logits per token, trained with the mean cross-entropy of start and
end.

Answers (:mod:`~tfsft.tasks.question_answering.evaluation`): the best span over all windows of
a question (:mod:`tfsft.tasks.question_answering.postprocess`, also shipped beside TFLite / ONNX
models by :mod:`~tfsft.tasks.question_answering.serving`), mapped back to character offsets of
the context; for data with unanswerable questions, the no-answer threshold that maximises
validation F1. Metrics: the official SQuAD exact match and F1 (HasAns / NoAns split for v2), a
file of wrong answers.

>>> task = create_task("question-answering")
>>> task.serving.text_inputs(), task.options.doc_stride
(('question', 'context'), 128)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tfsft.errors import ConfigError
from tfsft.tasks.base import Task, TaskOptions, create_task, option, register_task
from tfsft.tasks.question_answering.data import QAData
from tfsft.tasks.question_answering.evaluation import QAEvaluation
from tfsft.tasks.question_answering.examples import QAColumns
from tfsft.tasks.question_answering.modeling import QAModeling
from tfsft.tasks.question_answering.serving import QAServing

__all__ = ["QuestionAnsweringOptions", "QuestionAnsweringTask", "create_task"]


@dataclass
class QuestionAnsweringOptions(TaskOptions):
    question_column: str = option("question", help="column holding the question", read=True)
    context_column: str = option("context", help="column holding the context passage",
                                 read=True)
    answer_text_column: str = option("answer_text", help="column holding the answer text "
                                     "(flat rows)", read=True)
    answer_start_column: str = option("answer_start", help="column holding the answer's "
                                      "character offset in the context (flat rows)", read=True)
    answers_column: str = option("answers", help='column holding {"text": [...], '
                                 '"answer_start": [...]} (Hugging Face SQuAD layout)', read=True)
    id_column: str = option("id", help="column holding the question id (optional)", read=True)
    doc_stride: int = option(128, help="context word pieces shared by consecutive windows of "
                                       "a context longer than one window")
    max_question_length: int = option(64, help="word pieces of the question kept")
    max_answer_length: int = option(30, help="longest answer, in word pieces")
    n_best: int = option(1, help="answers returned per question by predict (the best first; "
                                 "more than 1 adds alternatives)")
    skip_bad_answers: bool = option(False, help="leave out questions whose answer is not at "
                                    "its answer_start instead of stopping (they are counted)",
                                    read=True)

    def validate(self) -> None:
        for name in ("max_question_length", "max_answer_length", "n_best"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1")
        if self.doc_stride < 0:
            raise ConfigError("doc_stride must be >= 0")

    def columns(self) -> QAColumns:
        return QAColumns(self.question_column, self.context_column, self.answer_text_column,
                         self.answer_start_column, self.answers_column, self.id_column)


@register_task
class QuestionAnsweringTask(Task):
    """Options, the learned state (``unanswerable``: the training data has unanswerable
    questions; ``null_threshold``: the no-answer threshold learned on validation data) and
    the window-length check that the data and serving roles share."""

    name = "question-answering"
    Options = QuestionAnsweringOptions
    Data = QAData
    Modeling = QAModeling
    Evaluation = QAEvaluation
    Serving = QAServing

    options: QuestionAnsweringOptions

    def __init__(self, options: QuestionAnsweringOptions):
        super().__init__(options)
        self.null_threshold: float | None = None
        self.unanswerable = False

    # -- state ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"null_threshold": self.null_threshold, "unanswerable": self.unanswerable}

    def load_state(self, state: dict[str, Any]) -> None:
        self.null_threshold = state.get("null_threshold")
        self.unanswerable = bool(state.get("unanswerable", False))

    # -- shared by the data and serving roles -----------------------------------------------
    def _check_lengths(self, max_length: int) -> None:
        """Refuse a ``max_length`` whose windows hold no more context pieces than
        ``doc_stride`` with the longest question."""
        room = max_length - 3 - self.options.max_question_length
        if room <= 0:
            raise ConfigError(
                f"--max-question-length {self.options.max_question_length} leaves no room for "
                f"the context in a window of --max-length {max_length} ({max_length} - 3 "
                f"special tokens - {self.options.max_question_length} = {room}); lower "
                f"--max-question-length well below {max_length - 3}, or raise --max-length")
        if room <= self.options.doc_stride:
            raise ConfigError(
                f"--doc-stride {self.options.doc_stride} must be smaller than the context "
                f"pieces a window holds with the longest question: max_length {max_length} - 3 "
                f"- max_question_length {self.options.max_question_length} = {room}; lower "
                f"--doc-stride below {room} or --max-question-length, or raise --max-length")
