"""Encoded conversations: token ids with each example's prompt, for generation."""

from __future__ import annotations

from dataclasses import dataclass

from tfsft.data.pipeline import EncodedData


@dataclass
class ChatEncodedData(EncodedData):
    """Encoded conversations of a causal language model: ``prompt_ids[i]`` prompts for the
    response of example ``i`` (for generation); ``prompt_texts[i]`` is its prompt as given."""

    prompt_ids: list | None = None
    prompt_texts: list | None = None
