"""The data role of sentence embeddings: pair files to checked pairs to token ids.

A pair becomes one row of features, each text tokenized on its own: the positive's token ids
are the row's own (``token_ids``: batches are grouped by their length, the longer and costlier
text of a query-passage pair, so little padding is computed), the anchor's and the hard
negative's ride along (``anchor_ids`` / ``anchor_mask``, ``negative_ids`` / ``negative_mask``),
with the ids of the anchor's and the positive's texts (``anchor_group``, ``positive_group``),
by which in-batch training masks duplicates; the pairs of one text are spread over batches
(``batch_groups``), so that a batch holds as many distinct texts as it can. Scored pairs add
the scaled score as the target. Texts to embed (no positives) are rows of their own.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tfsft.errors import ConfigError
from tfsft.tasks.roles import DataRole
from tfsft.tasks.sentence_embedding.examples import PairColumns, PairExamples, read_pairs

if TYPE_CHECKING:  # pragma: no cover
    from tfsft.data.pipeline import EncodedData
    from tfsft.data.readers import Table
    from tfsft.tasks.sentence_embedding.task import SentenceEmbeddingTask
    from tfsft.tokenization import WordPieceTokenizer

logger = logging.getLogger(__name__)


class PairData(DataRole):
    """Anchor / positive (/ negative, / score) columns; see the module docstring."""

    task: SentenceEmbeddingTask
    #: all-MiniLM-L6-v2 was trained on up to 256 word pieces: passages fit whole
    default_max_length = 256
    long_example_treatment = "truncated"

    def columns(self) -> PairColumns:
        options = self.task.options
        return PairColumns(options.anchor_column, options.positive_column,
                           options.negative_column, options.score_column,
                           tuple(options.score_range))

    def read(self, source: Any, role: str = "train", labelled: bool = True,
             max_rows: int | None = None, file_format: str | None = None,
             encoding: str = "utf-8", delimiter: str | None = None,
             quoting: bool = True) -> PairExamples:
        from tfsft.data.readers import Table, read_table

        table = source if isinstance(source, Table) else read_table(
            source, file_format, encoding, delimiter, quoting)
        examples = read_pairs(table, self.columns(), labelled=labelled, max_rows=max_rows)
        if examples.skipped.get("positive_equals_anchor") and role != "chunk":
            logger.warning("%s: skipped %d rows whose positive is the anchor itself",
                           table.source, examples.skipped["positive_equals_anchor"])
        if examples.skipped.get("negative_equals_pair") and role != "chunk":
            logger.warning("%s: skipped %d rows whose hard negative is the anchor or the "
                           "positive", table.source, examples.skipped["negative_equals_pair"])
        if labelled and len(examples) < 2 and role == "train":
            raise ConfigError(f"{table.source}: embedding training needs at least 2 pairs")
        return examples

    def learn_chunk(self, chunk: Table) -> Any:
        read_pairs(chunk, self.columns())  # checks the rows; the task learns no state
        return {}

    def split(self, examples: PairExamples, fraction: float,
              seed: int) -> tuple[PairExamples, PairExamples]:
        from tfsft.data.examples import split_examples

        return split_examples(examples, fraction, seed)

    def encode(self, tokenizer: WordPieceTokenizer, examples: PairExamples, max_length: int,
               training: bool = False) -> EncodedData:
        from tfsft.data.pipeline import RaggedRows, encode_texts

        if examples.text_pairs is None:
            return encode_texts(tokenizer, examples.texts, None, max_length)
        encoded = encode_texts(tokenizer, examples.text_pairs, None, max_length)
        extras: dict[str, Any] = {}
        others = [("anchor", examples.texts)]
        if examples.negatives is not None:
            others.append(("negative", examples.negatives))
        for name, texts in others:
            rows = encode_texts(tokenizer, texts, None, max_length)
            extras[f"{name}_ids"] = RaggedRows(rows.token_ids, rows.lengths, 0)
            extras[f"{name}_mask"] = RaggedRows(np.ones_like(rows.token_ids), rows.lengths, 0)
        extras["anchor_group"] = _text_ids(examples.texts)
        extras["positive_group"] = _text_ids(examples.text_pairs)
        encoded.extra_features = extras
        # in-batch negatives: a text's pairs go to different batches (a duplicate is no negative)
        encoded.batch_groups = np.stack([extras["anchor_group"], extras["positive_group"]], 1)
        if examples.scores is not None:
            encoded.targets = {"score": examples.scores.astype(np.float32)}
        return encoded

    def example_records(self, examples: PairExamples) -> list[dict[str, Any]]:
        records = []
        for i, anchor in enumerate(examples.texts):
            record: dict[str, Any] = {"anchor": anchor}
            if examples.text_pairs is not None:
                record["positive"] = examples.text_pairs[i]
            if examples.negatives is not None:
                record["negative"] = examples.negatives[i]
            if examples.scores is not None:
                record["score"] = float(examples.scores[i])
            records.append(record)
        return records

    def record_options(self) -> dict[str, Any]:
        options = self.task.options
        records = {"anchor_column": "anchor", "positive_column": "positive",
                   "negative_column": "negative" if options.negative_column else None,
                   "score_column": "score" if options.score_column else None}
        if options.score_column:  # records hold the scores scaled to 0..1
            records["score_range"] = [0.0, 1.0]
        return records

    def read_records(self, path: Path) -> PairExamples:
        return self.task.with_options(**self.record_options()).data.read(path, role="eval")

    def texts(self, examples: PairExamples) -> dict[str, list[str]]:
        """Every text the serving model embeds: the anchors, then the positives (when there
        are), so that export checks can score retrieval with the exported vectors."""
        return {"text": list(examples.texts) + list(examples.text_pairs or [])}

    def examples_from_texts(self, texts: dict[str, Sequence[str]]) -> PairExamples:
        if set(texts) != {"text"}:
            raise ConfigError("sentence embeddings take single texts")
        return PairExamples(list(texts["text"]), None, source="texts")

    def target_summary(self, examples: PairExamples) -> dict[str, Any] | None:
        if examples.text_pairs is None:
            return None
        if examples.scores is not None:
            values = examples.scores
            return {"kind": "values", "values": {"score": {
                "min": float(values.min()), "mean": float(values.mean()),
                "std": float(values.std()), "max": float(values.max())}}}
        return {"kind": "pairs", "pairs": len(examples),
                "distinct_positives": len(set(examples.text_pairs)),
                "duplicate_anchors": examples.duplicate_anchors,
                "hard_negatives": examples.negatives is not None}

    def token_length_report(self, tokenizer: WordPieceTokenizer, examples: PairExamples,
                            max_length: int) -> tuple[dict[str, Any], np.ndarray]:
        from tfsft.data.checks import token_lengths

        texts = list(examples.texts) + list(examples.text_pairs or [])
        return token_lengths(tokenizer, texts, None, max_length)


def _text_ids(texts: Sequence[str]) -> np.ndarray:
    """One int64 id per text, a hash of it: equal texts get equal ids in every chunk and
    shard (ids counted per call would make unrelated texts of two chunks "equal")."""
    import pandas as pd

    return pd.util.hash_array(np.asarray(texts, dtype=object)).view(np.int64)
