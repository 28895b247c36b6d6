"""Word pieces of raw texts (character span of each, whether it starts a unit) and the windows
that cut a long text's pieces into model rows; shared by the data, evaluation and serving roles."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from tfsft.tokenization import WordPieceTokenizer


@dataclass
class Pieces:
    """The word pieces of one text: character span of each and whether it starts a unit."""

    starts: np.ndarray  # int32 character offsets
    ends: np.ndarray  # int32, exclusive
    unit_start: np.ndarray  # bool

    def unit_spans(self) -> tuple[np.ndarray, np.ndarray]:
        """Character start and end of every unit (a unit ends where its last piece ends)."""
        index = np.flatnonzero(self.unit_start)
        last = np.append(index[1:] - 1, len(self.starts) - 1).astype(np.int64)
        return self.starts[index], self.ends[last] if len(index) else self.ends[:0]


def text_pieces(tokenizer: WordPieceTokenizer, texts: Sequence[str],
                chunk: int = 4096) -> tuple[list[np.ndarray], list[Pieces]]:
    """Word-piece ids and :class:`Pieces` of every text (tokenized whole, in chunks)."""
    import tensorflow as tf

    from tfsft.tokenization import byte_to_char

    continuation = tokenizer.continuation_ids
    all_ids, all_pieces = [], []
    for begin in range(0, len(texts), chunk):
        part = list(texts[begin:begin + chunk])
        ids, starts, ends = tokenizer.wordpieces_with_offsets(tf.constant(part))
        splits = ids.row_splits.numpy()
        flat_ids, flat_starts, flat_ends = (ids.values.numpy(), starts.values.numpy(),
                                            ends.values.numpy())
        for i, text in enumerate(part):
            a, b = splits[i], splits[i + 1]
            chars = byte_to_char(text)
            row_ids = flat_ids[a:b].astype(np.int32)
            unit_start = ~continuation[row_ids]
            unit_start[:1] = True  # a text's first piece starts a unit
            all_ids.append(row_ids)
            all_pieces.append(Pieces(chars[flat_starts[a:b]], chars[flat_ends[a:b]], unit_start))
    return all_ids, all_pieces


def windows(count: int, width: int, stride: int) -> list[int]:
    """Start of each window of ``width`` pieces over ``count`` pieces, ``stride`` shared.

    >>> windows(5, 8, 2), windows(10, 4, 1)
    ([0], [0, 3, 6])
    """
    if count <= width:
        return [0]
    step = width - stride
    starts = list(range(0, count - width, step))
    return [*starts, count - width]
