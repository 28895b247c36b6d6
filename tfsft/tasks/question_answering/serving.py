"""The serving role of question answering: the exported graphs take a question and its context,
cut the context into windows inside the graph (:mod:`tfsft.tasks.question_answering.graph`) and
return the answer with its character offsets; token-id artifacts (TFLite, ONNX) return the
logits, which ``qa_postprocess.py`` (shipped beside them) turns into the same answers.

>>> from tfsft.tasks import create_task
>>> serving = create_task("question-answering").serving
>>> serving.text_inputs(), serving.labels(), sorted(serving.sidecar_files())
(('question', 'context'), ['start', 'end'], ['qa_postprocess.py'])
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tfsft.tasks.question_answering import postprocess as qa_postprocess
from tfsft.tasks.question_answering.examples import QAExamples
from tfsft.tasks.roles import HubHead, OutputCheck, ServingRole

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf

    from tfsft.tasks.question_answering.task import QuestionAnsweringTask
    from tfsft.tokenization import WordPieceTokenizer


class QAServing(ServingRole):
    """Question and context in; answers (raw-text signature) or start/end logits out."""

    task: QuestionAnsweringTask
    input_flags = {"question": "the question (with --context)",
                   "context": "the passage holding the answer"}
    no_lite_text_model = ("windows over long contexts need ragged ops LiteRT lacks: tokenize "
                          "with vocab.txt and decode the logits with qa_postprocess.py")
    #: quantized artifacts: SQuAD F1 (0-100) within one point of the Keras model's
    max_quality_loss = 1.0

    def text_inputs(self) -> tuple[str, ...]:
        return ("question", "context")

    def tokenize(self, tokenizer: WordPieceTokenizer, inputs: dict[str, tf.Tensor],
                 max_length: int) -> dict[str, tf.Tensor]:
        from tfsft.tasks.question_answering.graph import question_windows

        options = self.task.options
        self.task._check_lengths(max_length)
        windows = question_windows(tokenizer, inputs["question"], inputs["context"],
                                   max_length, options.doc_stride, options.max_question_length)
        return {k: windows[k] for k in ("token_ids", "segment_ids", "padding_mask")}

    def export_outputs(self, raw: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"start_logits": raw[..., 0], "end_logits": raw[..., 1]}

    def hub_head(self) -> HubHead:
        return HubHead("question-answering")

    def serving_outputs(self, raw: tf.Tensor, inputs: dict[str, tf.Tensor],
                        tokenizer: WordPieceTokenizer, max_length: int) -> dict[str, tf.Tensor]:
        from tfsft.tasks.question_answering.graph import question_windows, span_answers

        options = self.task.options
        windows = question_windows(tokenizer, inputs["question"], inputs["context"],
                                   max_length, options.doc_stride, options.max_question_length)
        return span_answers(raw, windows, inputs["context"], options.max_answer_length,
                            self.task.null_threshold)

    def output_checks(self) -> dict[str, OutputCheck]:
        """fp32 artifacts: logits within 1e-3 on real tokens and at most 1 % of the answers
        different. Quantized ones: the same answer text for >= 97 % of the questions (and F1
        within one point, :attr:`max_quality_loss`); logits correlated >= 0.95 with the Keras
        model's; the character offsets follow the answers and are reported."""
        logits = OutputCheck(kind="scores", per_token=True, tolerance=1e-3, min_correlation=0.95)
        offsets = OutputCheck(kind="equal", tolerance=0.01, min_agreement=0.0)
        return {"start_logits": logits, "end_logits": logits,
                "answer": OutputCheck(kind="equal", tolerance=0.01, min_agreement=0.97),
                "start": offsets, "end": offsets}

    def decode_exported(self, batch: dict[str, Any],
                        outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Answers from a token-id artifact's logits on a verification batch (as an app
        would decode them with ``qa_postprocess.py``)."""
        if "start_logits" not in outputs:
            return {}
        task = self.task
        questions = list(batch["text_inputs"]["question"])
        contexts = list(batch["text_inputs"]["context"])
        windows = task.data.windows(task.tokenizer, questions, contexts, task.max_length)
        width = np.asarray(outputs["start_logits"]).shape[1]
        offsets = np.full((len(windows["offsets"]), width, 2), -1, np.int32)
        for w, row in enumerate(windows["offsets"]):
            offsets[w, :len(row)] = row
        found = qa_postprocess.best_answers(
            outputs["start_logits"], outputs["end_logits"], offsets, windows["window_example"],
            contexts, batch["attention_mask"], task.options.max_answer_length,
            task.null_threshold)
        return {"answer": np.array([a["answer"] for a in found], dtype=object),
                "start": np.array([a["start"] for a in found]),
                "end": np.array([a["end"] for a in found])}

    def export_quality(self, examples: QAExamples, outputs: dict[str, Any]) -> float | None:
        """SQuAD F1 of the exported model's answers."""
        from tfsft.evaluation.squad_metrics import squad_metrics

        if examples.answers is None or "answer" not in outputs:
            return None
        answers = [str(a) for a in np.asarray(outputs["answer"]).ravel()]
        return squad_metrics(answers, examples.gold_texts)["f1"]

    def labels(self) -> list[str]:
        return ["start", "end"]

    def sidecar_files(self) -> dict[str, Path]:
        return {"qa_postprocess.py": Path(qa_postprocess.__file__)}
