"""The serving role of sentence embeddings: raw text in, one vector out.

Every export (the SavedModel's raw-text and token-id signatures, TFLite, ONNX) returns
``embedding`` (float32 ``[batch, dimensions]``, unit length unless the run was trained with
``--normalize no``), so a dot product is the cosine similarity: ready for a vector store that
ranks by inner product (FAISS ``IndexFlatIP``, pgvector's ``<#>``, Qdrant or Milvus with the
dot or cosine metric). fp32 artifacts must give each component within 1e-4 of the Keras
model's (a cosine of at least 0.99999 per row). Quantized ones must keep recall@1 on the
held-out pairs within one point of the Keras model's (``max_quality_loss``), and their
components a Pearson correlation of at least 0.99 with it. The export report's quality column
is the recall@1 of each artifact's vectors on the held-out pairs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from tfsft.tasks.roles import HubHead, OutputCheck, ServingRole

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf

    from tfsft.tasks.sentence_embedding.examples import PairExamples
    from tfsft.tasks.sentence_embedding.task import SentenceEmbeddingTask
    from tfsft.tokenization import WordPieceTokenizer


class EmbeddingServing(ServingRole):
    """See the module docstring."""

    task: SentenceEmbeddingTask
    #: quantized artifacts keep recall@1 within one point of the Keras model's
    max_quality_loss = 0.01

    def text_inputs(self) -> tuple[str, ...]:
        return ("text",)

    def tokenize(self, tokenizer: WordPieceTokenizer, inputs: dict[str, tf.Tensor],
                 max_length: int) -> dict[str, tf.Tensor]:
        return tokenizer.encode(inputs["text"], None, max_length)

    def export_outputs(self, raw: tf.Tensor) -> dict[str, tf.Tensor]:
        import tensorflow as tf

        vectors = tf.cast(raw, tf.float32)
        if self.task.normalizes:
            vectors = tf.math.l2_normalize(vectors, axis=-1)
        return {"embedding": vectors}

    def output_checks(self) -> dict[str, OutputCheck]:
        return {"embedding": OutputCheck(kind="scores", tolerance=1e-4, min_correlation=0.99)}

    def hub_head(self) -> HubHead:
        return HubHead("feature-extraction", normalize=self.task.normalizes)

    def export_quality(self, examples: PairExamples,
                       outputs: dict[str, np.ndarray]) -> float | None:
        """Recall@1 of the exported vectors: anchors searching the distinct positives (the
        outputs hold the anchors, then the positives; see ``PairData.texts``)."""
        from tfsft.tasks.sentence_embedding.evaluation import retrieval_of
        from tfsft.tasks.sentence_embedding.metrics import normalized

        vectors, count = normalized(outputs["embedding"]), len(examples)
        if examples.text_pairs is None or examples.scores is not None or len(vectors) != 2 * count:
            return None
        return retrieval_of(examples, vectors[:count], vectors[count:])[0]["recall@1"]

    def labels(self) -> list[str]:
        return []

    def sidecar_files(self) -> dict[str, Any]:
        return {}
