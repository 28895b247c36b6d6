"""Per-token encodings: windows of longer texts with each text's word pieces."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tfsft.data.pipeline import EncodedData


@dataclass
class TokenEncodedData(EncodedData):
    """Encoded rows that are windows of longer texts, with each text's word pieces.

    Row ``r`` holds pieces ``row_start[r]:`` of text ``row_sentence[r]`` (between ``[CLS]`` and
    ``[SEP]``); ``pieces[i]`` is the piece alignment of text ``i`` (for per-token tasks).
    """

    texts: list[str] | None = None
    pieces: list | None = None
    row_sentence: np.ndarray | None = None
    row_start: np.ndarray | None = None
