"""Extractive question answering: an answer span in a context, SQuAD-style.

``task`` (the task and its options), ``examples`` (SQuAD JSON and tabular readers),
``postprocess`` (n-best answer spans from logits over windows), ``graph`` (answer search inside
the serving graph).
"""
