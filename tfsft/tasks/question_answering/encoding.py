"""Encoded question-answering windows with each token's character span."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tfsft.data.pipeline import EncodedData


@dataclass
class QAEncodedData(EncodedData):
    """Encoded question-answering windows: row ``r`` is a window of question
    ``window_example[r]``; ``offsets[r]`` the character span in its context of each of the
    row's tokens (``[tokens, 2]``, -1 outside the context)."""

    window_example: np.ndarray | None = None
    offsets: list | None = None
    contexts: list[str] | None = None
