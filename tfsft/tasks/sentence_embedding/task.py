"""``sentence-embedding``: fine-tune an encoder's sentence vectors for search and retrieval.

Data (:mod:`~tfsft.tasks.sentence_embedding.data`): ``anchor`` / ``positive`` pairs (a query and
the passage that answers it, two paraphrases), optionally with a hard ``negative``, or scored
pairs (``--score-column``, scores in ``--score-range``). Model: the checkpoint's encoder with
its own pooling (mean, for all-MiniLM-L6-v2) and a square dense layer that starts as the
identity, trained by :mod:`~tfsft.tasks.sentence_embedding.model`: in-batch negatives
(``--loss in-batch``, the default for pairs; ``--scale`` is 1 / temperature), triplets with a
margin (``--loss triplet``, with negatives), or cosine regression (``--loss cosine``, the
default for scored pairs). Evaluation: retrieval of each positive among all the validation
positives (recall@1/5/10, MRR@10, nDCG@10), or Pearson / Spearman for scored pairs. Serving:
raw text in, unit-length embeddings out.

>>> import pandas as pd
>>> task = create_task("sentence-embedding")
>>> pairs = task.data.read(pd.DataFrame({"anchor": ["a cat", "a dog"],
...                                      "positive": ["kitten", "puppy"]}))
>>> len(pairs), task.evaluation.headline_metric, task.loss_kind()
(2, 'recall@1', 'in-batch')
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfsft.choices import POOLINGS
from tfsft.errors import ConfigError
from tfsft.tasks.base import Task, TaskOptions, create_task, option, register_task
from tfsft.tasks.roles import ModelingRole
from tfsft.tasks.sentence_embedding.checkpoint import DEFAULTS as DEFAULT_SETTINGS
from tfsft.tasks.sentence_embedding.data import PairData
from tfsft.tasks.sentence_embedding.evaluation import EmbeddingEvaluation
from tfsft.tasks.sentence_embedding.serving import EmbeddingServing

if TYPE_CHECKING:  # pragma: no cover
    import keras

    from tfsft.tasks.commands import TaskCommand

__all__ = ["SentenceEmbeddingOptions", "SentenceEmbeddingTask", "create_task"]

LOSS_CHOICES = ("auto", "in-batch", "triplet", "cosine")


@dataclass
class SentenceEmbeddingOptions(TaskOptions):
    anchor_column: str = option("anchor", help="column holding the query / first text",
                                read=True)
    positive_column: str = option("positive", help="column holding the matching text",
                                  read=True)
    negative_column: str | None = option(None, help="column holding a hard negative (a text "
                                         "that does not match)", read=True)
    score_column: str | None = option(None, help="column holding a similarity score (scored "
                                      "pairs: cosine regression)", read=True)
    score_range: list[float] = option([0.0, 1.0], help="lowest and highest score (e.g. 0 5 "
                                      "for STS); scores are scaled to 0..1", read=True)
    loss: str = option("auto", choices=LOSS_CHOICES, help="in-batch negatives (pairs), "
                       "triplet (with negatives), cosine (scored pairs); auto picks by data")
    scale: float = option(20.0, help="in-batch loss: similarities are multiplied by this "
                          "(1 / temperature)")
    triplet_margin: float = option(0.5, help="triplet loss: the cosine margin between the "
                                   "positive and the negative")
    pooling: str = option("auto", choices=("auto", *POOLINGS), help="sentence vector: the "
                          "checkpoint's own (auto: its sentence-transformers pooling, mean "
                          "without one), masked mean of the last layer, [CLS], or BERT's tanh "
                          "pooler")
    normalize: str = option("auto", choices=("auto", "yes", "no"), help="unit-length "
                            "embeddings, so a dot product is the cosine similarity (auto: as "
                            "the checkpoint was trained; yes without a sentence-transformers "
                            "config)")
    corpus: str | None = option(None, help="evaluation: more texts to search beside the "
                                "validation positives (a .txt file, one text a line, or a "
                                "table with --corpus-column)", read=True)
    corpus_column: str = option("text", help="column of --corpus holding the texts (tables)",
                                read=True)

    def validate(self) -> None:
        if len(self.score_range) != 2 or not self.score_range[0] < self.score_range[1]:
            raise ConfigError(f"score_range must be two numbers LOW HIGH with LOW < HIGH, got "
                              f"{self.score_range}")
        self.score_range = [float(x) for x in self.score_range]
        if self.scale <= 0:
            raise ConfigError(f"scale must be > 0, got {self.scale}")
        if self.triplet_margin <= 0:
            raise ConfigError(f"triplet_margin must be > 0, got {self.triplet_margin}")
        if self.loss == "triplet" and not self.negative_column:
            raise ConfigError("--loss triplet needs hard negatives: pass --negative-column")
        if self.loss == "cosine" and not self.score_column:
            raise ConfigError("--loss cosine needs scored pairs: pass --score-column")
        if self.score_column and self.loss in ("in-batch", "triplet"):
            raise ConfigError(f"--loss {self.loss} trains on pairs without scores; scored "
                              "pairs train with --loss cosine")


class EmbeddingModeling(ModelingRole):
    """The encoder (identity-initialised head) inside a :class:`ContrastiveModel`."""

    task: SentenceEmbeddingTask
    model_options = ("loss", "scale", "triplet_margin")
    #: The checkpoint the model was built on (the evaluation measures it untuned too).
    pretrained: Path | None = None

    @property
    def min_batch_size(self) -> int:  # type: ignore[override]
        """In-batch negatives need another row in the batch to be a negative."""
        return 2 if self.task.loss_kind() == "in-batch" else 1

    def build(self, checkpoint: Path, dropout: float, dtype: str | None) -> keras.Model:
        from tfsft.models.checkpoints import load_backbone
        from tfsft.models.text_model import TextModel
        from tfsft.tasks.sentence_embedding.checkpoint import checkpoint_settings
        from tfsft.tasks.sentence_embedding.model import ContrastiveModel, identity_head

        self.pretrained = checkpoint
        self.task.settings = self.task.resolved_settings(checkpoint_settings(checkpoint))
        backbone, info = load_backbone(checkpoint, dtype=dtype)
        # no dropout on the sentence vector: the backbone keeps its own
        encoder = identity_head(TextModel(backbone, backbone.hidden_dim,
                                          pooling=self.task.settings["pooling"], dropout=0.0,
                                          exact_gelu=info["exact_gelu"]))
        return ContrastiveModel(encoder, self.task.loss_kind(), self.task.options.scale)

    def load(self, path: Path) -> keras.Model:
        """The encoder of the saved training model (what predicts and exports)."""
        import tfsft.tasks.sentence_embedding.model  # noqa: F401  (registers its classes)

        return super().load(path).encoder

    def compile(self, model: keras.Model, optimizer: Any) -> None:
        import keras

        from tfsft.tasks.sentence_embedding.model import TripletLoss, in_batch_loss

        kind = model.loss_kind
        loss = (in_batch_loss if kind == "in-batch" else
                TripletLoss(self.task.options.triplet_margin) if kind == "triplet" else
                keras.losses.MeanSquaredError())
        model.compile(optimizer=optimizer, loss=loss)


@register_task
class SentenceEmbeddingTask(Task):
    """Sentence embeddings for search (see the module docstring). Its state is the pooling
    and normalisation the model was built with (``auto`` resolved from the checkpoint)."""

    name = "sentence-embedding"
    Options = SentenceEmbeddingOptions
    Data = PairData
    Modeling = EmbeddingModeling
    Evaluation = EmbeddingEvaluation
    Serving = EmbeddingServing

    @classmethod
    def commands(cls) -> tuple[TaskCommand, ...]:
        from tfsft.tasks.sentence_embedding.commands import EMBED, SEARCH

        return (EMBED, SEARCH)

    def __init__(self, options: SentenceEmbeddingOptions):
        super().__init__(options)
        #: ``pooling`` and ``normalize`` as built (runs from before these options: mean, yes).
        self.settings: dict[str, Any] = self.resolved_settings(DEFAULT_SETTINGS)

    def resolved_settings(self, checkpoint: dict[str, Any]) -> dict[str, Any]:
        """The options' pooling and normalisation, ``auto`` taken from ``checkpoint``'s."""
        options = self.options
        return {"pooling": checkpoint["pooling"] if options.pooling == "auto" else options.pooling,
                "normalize": (checkpoint["normalize"] if options.normalize == "auto"
                              else options.normalize == "yes")}

    @property
    def normalizes(self) -> bool:
        """Whether the served embeddings are unit length."""
        return bool(self.settings["normalize"])

    def state_dict(self) -> dict[str, Any]:
        return {"embedding": dict(self.settings)}

    def load_state(self, state: dict[str, Any]) -> None:
        if "embedding" in state:
            self.settings = dict(state["embedding"])

    def loss_kind(self) -> str:
        """The loss ``--loss auto`` picks: cosine for scored pairs, else in-batch negatives."""
        if self.options.loss != "auto":
            return self.options.loss
        return "cosine" if self.options.score_column else "in-batch"
