"""Training-data augmentation: EDA's word edits with synonyms from the backbone's own embeddings.

The four operations of EDA (Wei and Zou, 2019), each on about ``alpha`` of a text's words:

- ``synonym``: words replaced by one of their nearest neighbours in the backbone's word-piece
  embedding table (offline: no WordNet; stop words are left alone);
- ``insert``: a neighbour of a word inserted at a random place;
- ``swap``: two words trade places;
- ``delete``: each word dropped with probability ``alpha`` (one always stays).

Each generated row uses one operation (they take turns, from a random one per source row, so
that fewer copies than methods still use them all), is seeded, and copies its source
row's label. ``frozen`` word positions (an entity's words in NER) are never edited, moved or
used as an insertion point inside an entity. Embedding neighbours are not always synonyms
(``good`` is near ``bad``): whether augmentation helps is a question for measurement.

>>> import numpy as np
>>> vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "great", "fine", "movie", "film"]
>>> vectors = np.array([[0, 0], [0, 0], [0, 0], [0, 0], [1, 0.1], [1, 0], [0, 1], [0.1, 1]])
>>> neighbours = WordNeighbours(vocabulary, vectors)
>>> neighbours.of("great")[:2], neighbours.of("movie")[:2]
(['fine', 'film'], ['film', 'great'])
>>> Augmenter(("swap",)).edit(["a", "fine", "movie"], np.random.default_rng(0), "swap")
['a', 'movie', 'fine']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tfsft.errors import ConfigError

METHODS = ("synonym", "insert", "swap", "delete")
NEIGHBOURS = 5  # candidates a synonym is drawn from


def parse_methods(value: str | Sequence[str]) -> tuple[str, ...]:
    """Checked method names from ``"synonym,swap"`` or a list (``all``: every method).

    >>> parse_methods("swap, delete"), parse_methods("all")
    (('swap', 'delete'), ('synonym', 'insert', 'swap', 'delete'))
    """
    names = [n.strip().lower() for n in (value.split(",") if isinstance(value, str) else value)]
    names = [n for n in names if n]
    if names == ["all"]:
        return METHODS
    unknown = [n for n in names if n not in METHODS]
    if unknown or not names:
        raise ConfigError(f"unknown augmentation method(s) {', '.join(unknown) or '(none)'}; "
                          f"the methods are {', '.join(METHODS)} (or all)")
    return tuple(dict.fromkeys(names))


class WordNeighbours:
    """Nearest whole words of a word in a word-piece embedding table (cosine similarity):
    vocabulary entries of 3 or more letters, no ``##`` continuation pieces or stop words."""

    def __init__(self, vocabulary: Sequence[str], vectors: np.ndarray, lowercase: bool = True):
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

        self.lowercase = lowercase
        self.index = {token: i for i, token in enumerate(vocabulary)}
        words = [i for i, token in enumerate(vocabulary)
                 if len(token) >= 3 and token.isalpha() and token.lower() not in ENGLISH_STOP_WORDS]
        self.words = np.array(words, dtype=np.int64)
        self.word_set = set(words)
        self.vocabulary = list(vocabulary)
        unit = np.asarray(vectors, np.float32)
        unit = unit / np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
        self.unit = unit
        self._cache: dict[str, list[str]] = {}

    def of(self, word: str) -> list[str]:
        """Up to :data:`NEIGHBOURS` neighbours of ``word`` (none for stop words and for words the
        vocabulary splits into pieces)."""
        key = word.lower() if self.lowercase else word
        if key in self._cache:
            return self._cache[key]
        found: list[str] = []
        index = self.index.get(key)
        if index is not None and index in self.word_set:
            scores = self.unit[self.words] @ self.unit[index]
            order = np.argsort(-scores)[:NEIGHBOURS + 1]
            found = [self.vocabulary[self.words[i]] for i in order
                     if self.words[i] != index][:NEIGHBOURS]
        self._cache[key] = found
        return found


@dataclass
class Augmenter:
    """Generates edited copies of word sequences (see the module docstring)."""

    methods: tuple[str, ...]
    neighbours: WordNeighbours | None = None
    alpha: float = 0.1
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0 < self.alpha <= 0.5:
            raise ConfigError(f"--augment-alpha must be in (0, 0.5], got {self.alpha}")
        if {"synonym", "insert"} & set(self.methods) and self.neighbours is None:
            raise ConfigError("synonym and insert need the backbone's embeddings")

    def copies(self, words: list[str], copies: int, rng: np.random.Generator,
               frozen: set[int] = frozenset()) -> list[tuple[str, list[str], list[int]]]:
        """Up to ``copies`` edited versions of ``words``: ``(method, words, origin)``, where
        ``origin[j]`` is the position in ``words`` that word ``j`` came from (-1: inserted).
        Copies equal to the original are left out (counted as ``unchanged``)."""
        out = []
        start = int(rng.integers(len(self.methods)))  # each row its own first method
        for number in range(copies):
            method = self.methods[(start + number) % len(self.methods)]
            edited, origin = self._edit(words, rng, method, frozen)
            if edited == words:
                self.counts["unchanged"] = self.counts.get("unchanged", 0) + 1
                continue
            self.counts[method] = self.counts.get(method, 0) + 1
            out.append((method, edited, origin))
        return out

    def edit(self, words: list[str], rng: np.random.Generator, method: str) -> list[str]:
        """``words`` after one ``method`` (for a quick look)."""
        return self._edit(words, rng, method, frozenset())[0]

    def _edit(self, words: list[str], rng: np.random.Generator, method: str,
              frozen: set[int] | frozenset) -> tuple[list[str], list[int]]:
        positions = [i for i in range(len(words)) if i not in frozen]
        origin = list(range(len(words)))
        edits = max(1, int(round(self.alpha * len(words))))
        if not positions:
            return list(words), origin
        if method == "synonym":
            out = list(words)
            candidates = [i for i in positions if self.neighbours.of(words[i])]
            for i in rng.permutation(candidates)[:edits]:
                options = self.neighbours.of(words[i])
                out[i] = options[int(rng.integers(len(options)))]
            return out, origin
        if method == "insert":
            out, origin = list(words), list(origin)
            candidates = [i for i in positions if self.neighbours.of(words[i])]
            for _ in range(edits if candidates else 0):
                options = self.neighbours.of(words[int(rng.choice(candidates))])
                place = int(rng.choice(_insertion_points(origin, frozen)))
                out.insert(place, options[int(rng.integers(len(options)))])
                origin.insert(place, -1)
            return out, origin
        if method == "swap":
            out, origin = list(words), list(origin)
            if len(positions) < 2:
                return out, origin
            for _ in range(edits):
                a, b = rng.choice(positions, 2, replace=False)
                out[a], out[b] = out[b], out[a]
                origin[a], origin[b] = origin[b], origin[a]
            return out, origin
        if method == "delete":
            keep = [i for i in range(len(words))
                    if i in frozen or rng.random() >= self.alpha]
            if not keep:
                keep = [int(rng.choice(positions))]
            return [words[i] for i in keep], keep
        raise ConfigError(f"unknown augmentation method {method!r}")


def _insertion_points(origin: list[int], frozen: set[int] | frozenset) -> list[int]:
    """Places a word may be inserted at: anywhere but between two frozen words."""
    return [p for p in range(len(origin) + 1)
            if not (0 < p < len(origin) and origin[p - 1] in frozen and origin[p] in frozen)]


def word_neighbours(checkpoint: Any, tokenizer: Any) -> WordNeighbours:
    """:class:`WordNeighbours` from a checkpoint's word-piece embeddings and its tokenizer."""
    from tfsft.models.checkpoints import word_embeddings

    return WordNeighbours(tokenizer.vocabulary, word_embeddings(checkpoint),
                          lowercase=getattr(tokenizer, "lowercase", True))
