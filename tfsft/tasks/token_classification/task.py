"""``token-classification`` (NER): a tag per word, entity spans with character offsets out.

Data: CoNLL column files, character-per-line Chinese data, JSONL token/tag lists or texts with
character spans, Hugging Face datasets with ``tokens`` / ``ner_tags`` (see
:mod:`tfsft.tasks.token_classification.examples`). Tags in IO, BIO, BIOES/BIOUL or BMES, detected or set with
``tag_scheme``, and validated.

How words meet word pieces. The text is tokenized whole, with the character span of every
word piece. A *unit* is a piece that does not continue a word (``##...``): the words of BERT's
own pre-tokenization (``U.S.`` is the units ``u . s .``). Each unit takes the tag its position
in the gold entities gives it (the scheme re-applied at unit level, so ``B-LOC`` on ``U.S.``
becomes ``B-LOC I-LOC I-LOC I-LOC``); continuation pieces are ignored by the loss
(``label_all_subtokens`` gives them their unit's tag). The same units exist in any raw text, so
``predict`` and the SavedModel decode entities from the units' tags and return character
offsets into the input string. Metrics are computed on the data's own words with ``seqeval``
(BIO: each word takes its first unit's tag; schemes with end tags: entities mapped onto words).

Sentences longer than ``max_length`` pieces are cut into overlapping windows (``stride``
pieces shared); each piece's prediction comes from the window where it is farthest from an
edge. Nothing is truncated in training, evaluation or ``predict``; the exported models see at
most ``max_length`` tokens per text (their ``truncated`` output says when a text was cut).

>>> task = create_task("token-classification")
>>> data = task.data.read_tokens([["EU", "rejects", "German", "call"]],
...                              [["B-ORG", "O", "B-MISC", "O"]])
>>> task.labels, task.scheme
(['O', 'B-MISC', 'I-MISC', 'B-ORG', 'I-ORG'], 'BIO')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tfsft.errors import ConfigError
from tfsft.tasks.base import Task, TaskOptions, create_task, option, register_task
from tfsft.tasks.token_classification import tags as tag_schemes
from tfsft.tasks.token_classification.data import TokenData
from tfsft.tasks.token_classification.evaluation import TokenEvaluation
from tfsft.tasks.token_classification.modeling import TokenModeling
from tfsft.tasks.token_classification.serving import TokenServing

__all__ = ["TokenClassificationOptions", "TokenClassificationTask", "create_task"]


@dataclass
class TokenClassificationOptions(TaskOptions):
    tokens_column: str = option("tokens", help="column holding each sentence's token list",
                                read=True)
    tags_column: str | None = option(None, help="column holding the tag lists (default: tags, "
                                                "else ner_tags)", read=True)
    text_column: str = option("text", help="column holding the text, for character-span data",
                              read=True)
    entities_column: str = option("entities", help="column holding the character spans "
                                  '([{"start", "end", "label"}])', read=True)
    tag_column: int | None = option(None, help="CoNLL files: the column of the tag, counted "
                                               "from 0 (0 is the token; default: the last "
                                               "column holding tags)",
                                    read=True)
    tag_names: list[str] = option([], help="tag names in id order, for numeric tags, space- or "
                                           "comma-separated (Hugging Face datasets name them "
                                           "themselves)", read=True)
    tag_scheme: str = option("auto", choices=("auto", *tag_schemes.SCHEMES),
                             help="tag scheme of the data (auto: detected; character-span "
                                  "data: BIO)")
    repair_tags: bool = option(False, help="turn invalid tags (I-X after O) into valid ones "
                                           "instead of stopping; the count is reported")
    token_separator: str | None = option(None, help="joins tokens into the text (default: a "
                                         "space; none for character-per-line CJK data)")
    label_all_subtokens: bool = option(False, help="train on every word piece, not only each "
                                                   "word's first")
    stride: int | None = option(None, help="word pieces shared by consecutive windows of a "
                                           "sentence longer than max_length (default 32, or a "
                                           "quarter of max_length - 2 if that is less)")

    def validate(self) -> None:
        if self.stride is not None and self.stride < 0:
            raise ConfigError("stride must be >= 0")
        if any("," in name for name in self.tag_names):  # --tag-names O,B-PER,I-PER
            self.tag_names = [n.strip() for name in self.tag_names for n in name.split(",")
                              if n.strip()]


@register_task
class TokenClassificationTask(Task):
    """The learned tag set (``labels``, ``label_index``) and tag ``scheme``; the roles are
    :class:`TokenData`, :class:`TokenModeling`, :class:`TokenEvaluation` and
    :class:`TokenServing`."""

    name = "token-classification"
    Options = TokenClassificationOptions
    Data = TokenData
    Modeling = TokenModeling
    Evaluation = TokenEvaluation
    Serving = TokenServing

    def __init__(self, options: TokenClassificationOptions):
        super().__init__(options)
        self.labels: list[str] = []
        self.scheme: str = "BIO" if options.tag_scheme == "auto" else options.tag_scheme
        self.label_index: dict[str, int] = {}

    def state_dict(self) -> dict[str, Any]:
        return {"labels": list(self.labels), "scheme": self.scheme}

    def load_state(self, state: dict[str, Any]) -> None:
        self.labels = list(state.get("labels", []))
        self.scheme = state.get("scheme", self.scheme)
        self.label_index = {label: i for i, label in enumerate(self.labels)}

    @property
    def types(self) -> list[str]:
        """The entity types of :attr:`labels`, sorted."""
        return tag_schemes.entity_types(self.labels)
