"""The evaluation role of token classification: windows' logits merged per sentence, entities
decoded with character offsets, and entity-level metrics on the data's own words."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tfsft.errors import ConfigError
from tfsft.tasks.roles import EvaluationRole
from tfsft.tasks.token_classification import tags as tag_schemes
from tfsft.tasks.token_classification.metrics import CONFUSION_FILE, ERRORS_FILE, REPORT_FILE
from tfsft.tasks.token_classification.pieces import Pieces

if TYPE_CHECKING:  # pragma: no cover
    from tfsft.data.pipeline import EncodedData
    from tfsft.tasks.token_classification.examples import TokenExamples
    from tfsft.tasks.token_classification.task import TokenClassificationTask


@dataclass
class TokenOutputs:
    """Per-token model outputs of whole sentences (windows merged), with their pieces."""

    texts: list[str]
    logits: list[np.ndarray]  # one [pieces, tags] array per sentence
    pieces: list[Pieces]

    def __len__(self) -> int:
        return len(self.texts)


def decode_entities(logits: np.ndarray, pieces: Pieces, text: str, labels: list[str],
                    scheme: str) -> list[dict[str, Any]]:
    """Entities of one text from its per-piece logits over ``labels``."""
    from scipy.special import softmax  # not at --help time

    units = np.flatnonzero(pieces.unit_start)
    if not len(units):
        return []
    probabilities = softmax(logits[units], axis=-1)
    tag_ids = probabilities.argmax(-1)
    tags = [labels[i] for i in tag_ids]
    starts, ends = pieces.unit_spans()
    entities = []
    for first, last, kind in tag_schemes.spans(tags, scheme):
        start, end = int(starts[first]), int(ends[last - 1])
        score = float(probabilities[np.arange(first, last), tag_ids[first:last]].mean())
        entities.append({"text": text[start:end], "type": kind, "start": start, "end": end,
                         "score": round(score, 6)})
    return entities


def word_tags(examples: TokenExamples, index: int, logits: np.ndarray, pieces: Pieces,
              text: str, labels: list[str], scheme: str) -> list[str]:
    """Predicted tags of sentence ``index``'s own words.

    BIO and IO: each word takes the tag of its first unit (the first-piece convention of
    word-level NER evaluation). Schemes with end tags (BIOES, BIOUL, BMES): the decoded
    entities are mapped onto the words they cover and re-tagged, so a word split into
    several units (or several words in one unit, as digits in character data) still gets a
    valid tag sequence.
    """
    if scheme in ("BIO", "IO"):
        units = np.flatnonzero(pieces.unit_start)
        unit_starts = pieces.starts[units]
        tag_ids = logits[units].argmax(-1) if len(units) else np.zeros(0, np.int64)
        tags = []
        for start, end in examples.words[index]:
            j = int(np.searchsorted(unit_starts, start, side="left"))
            inside = j < len(units) and unit_starts[j] < end
            tags.append(labels[tag_ids[j]] if inside else tag_schemes.OUTSIDE)
        return tags
    words = examples.words[index]
    word_starts = np.array([s for s, _ in words])
    word_ends = np.array([e for _, e in words])
    spans, taken = [], set()
    for entity in decode_entities(logits, pieces, text, labels, scheme):
        first = int(np.searchsorted(word_ends, entity["start"], side="right"))
        last = int(np.searchsorted(word_starts, entity["end"], side="left"))
        if first >= last or taken & set(range(first, last)):
            continue
        taken.update(range(first, last))
        spans.append((first, last, entity["type"]))
    return tag_schemes.tags_from_spans(len(words), spans, scheme)


class TokenEvaluation(EvaluationRole):
    """Entity predictions with character offsets; seqeval entity metrics and NER reports."""

    task: TokenClassificationTask
    headline_metric = "f1"
    report_files = ("metrics.json", REPORT_FILE, CONFUSION_FILE, ERRORS_FILE)

    def outputs_from_logits(self, logits: list[np.ndarray], encoded: EncodedData) -> TokenOutputs:
        """Per-piece logits of each sentence, from its windows' rows: each piece takes the
        logits of the window where it lies farthest from an edge."""
        rows = logits
        merged = [np.zeros((len(p.starts), len(self.task.labels)), np.float32)
                  for p in encoded.pieces]
        best = [np.full(len(p.starts), -1, np.int64) for p in encoded.pieces]
        for row, sentence, start in zip(rows, encoded.row_sentence, encoded.row_start,
                                        strict=True):
            inner = row[1:-1]  # without [CLS] and [SEP]
            count = len(inner)
            if not count:
                continue
            position = np.arange(count)
            margin = np.minimum(position, count - 1 - position)
            target = slice(start, start + count)
            better = margin > best[sentence][target]
            merged[sentence][target][better] = inner[better]
            best[sentence][target][better] = margin[better]
        return TokenOutputs(list(encoded.texts), merged, list(encoded.pieces))

    def predictions(self, outputs: TokenOutputs) -> list[dict[str, Any]]:
        labels, scheme = self.task.labels, self.task.scheme
        return [{"text": text, "entities": decode_entities(logits, pieces, text, labels, scheme)}
                for text, logits, pieces in zip(outputs.texts, outputs.logits, outputs.pieces,
                                                strict=True)]

    def evaluate(self, examples: TokenExamples, outputs: TokenOutputs,
                 output_dir: str | Path | None = None, prefix: str = "") -> dict[str, Any]:
        from tfsft.tasks.token_classification.metrics import entity_metrics, write_token_report

        if examples.tags is None:
            raise ConfigError("evaluation needs tagged data")
        labels, scheme = self.task.labels, self.task.scheme
        rows = list(zip(outputs.texts, outputs.logits, outputs.pieces, strict=True))
        predicted_entities = [decode_entities(logits, pieces, text, labels, scheme)
                              for text, logits, pieces in rows]
        predicted = [word_tags(examples, i, logits, pieces, text, labels, scheme)
                     for i, (text, logits, pieces) in enumerate(rows)]
        metrics = entity_metrics(examples.tags, predicted, scheme)
        metrics["examples"] = len(examples)
        metrics["skipped_rows"] = dict(examples.skipped)
        if output_dir is not None:
            write_token_report(Path(output_dir), examples, predicted, predicted_entities,
                               metrics, scheme, prefix)
        return metrics

    def headline(self, metrics: dict[str, Any]) -> dict[str, Any]:
        keys = ("f1", "precision", "recall", "f1_macro", "token_accuracy", "examples")
        return {k: metrics[k] for k in keys if k in metrics}
