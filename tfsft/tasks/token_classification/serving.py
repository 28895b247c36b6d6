"""The serving role of token classification: per-token logits from every artifact, and entity
spans with character offsets decoded inside the SavedModel's raw-text signature."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from tfsft.tasks.roles import HubHead, OutputCheck, ServingRole
from tfsft.tasks.token_classification.evaluation import word_tags
from tfsft.tasks.token_classification.pieces import Pieces, text_pieces

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf

    from tfsft.tasks.token_classification.examples import TokenExamples
    from tfsft.tasks.token_classification.task import TokenClassificationTask
    from tfsft.tokenization import WordPieceTokenizer


class TokenServing(ServingRole):
    """A ``text`` input; ``logits`` out of every artifact, entities out of the SavedModel."""

    task: TokenClassificationTask
    # LiteRT lacks the ragged and Unicode ops of entity_outputs: the raw-text TFLite model
    # returns the per-token logits ([CLS] first), decoded with vocab.txt, labels.txt, task.json.
    lite_text_signature = True

    def text_inputs(self) -> tuple[str, ...]:
        return ("text",)

    def tokenize(self, tokenizer: WordPieceTokenizer, inputs: dict[str, tf.Tensor],
                 max_length: int) -> dict[str, tf.Tensor]:
        return tokenizer.encode(inputs["text"], None, max_length)

    def export_outputs(self, raw: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"logits": raw}

    def serving_outputs(self, raw: tf.Tensor, inputs: dict[str, tf.Tensor],
                        tokenizer: WordPieceTokenizer, max_length: int) -> dict[str, tf.Tensor]:
        from tfsft.tasks.token_classification.graph import entity_outputs

        return {**entity_outputs(raw, inputs["text"], tokenizer, max_length, self.task.labels,
                                 self.task.scheme), **self.export_outputs(raw)}

    #: quantized artifacts: per-token agreement >= 99 % and entity F1 within half a point
    max_quality_loss = 0.005

    def output_checks(self) -> dict[str, OutputCheck]:
        return {"logits": OutputCheck(kind="argmax", per_token=True, tolerance=1e-4,
                                      min_agreement=0.99)}

    def export_quality(self, examples: TokenExamples, outputs: dict[str, Any]) -> float | None:
        """Entity micro-F1 of per-token logits computed on truncated texts (as exported)."""
        from tfsft.tasks.token_classification.metrics import entity_metrics

        task = self.task
        if examples.tags is None or task.tokenizer is None:
            return None
        batches = outputs["logits"]
        _, pieces = text_pieces(task.tokenizer, examples.texts)
        width = task.max_length - 2
        predicted, index = [], 0
        for batch in batches:
            for row in batch:
                row_pieces = pieces[index]
                count = min(len(row_pieces.starts), width)
                kept = Pieces(row_pieces.starts[:count], row_pieces.ends[:count],
                              row_pieces.unit_start[:count])
                predicted.append(word_tags(examples, index, np.asarray(row[1:1 + count]), kept,
                                           examples.texts[index], task.labels, task.scheme))
                index += 1
        return entity_metrics(examples.tags, predicted, task.scheme)["f1"]

    def labels(self) -> list[str]:
        return list(self.task.labels)

    def hub_head(self) -> HubHead:
        return HubHead("token-classification", tuple(self.task.labels))
