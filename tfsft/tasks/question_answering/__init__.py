"""Extractive question answering: an answer span in a context, SQuAD-style.

``task`` (the task, its options and learned state), its roles ``data`` (reading, windows and
span targets), ``modeling`` (the span model), ``evaluation`` (answers, SQuAD metrics, reports)
and ``serving`` (exported graphs and their checks); ``examples`` (SQuAD JSON and tabular
readers), ``encoding`` (encoded windows), ``postprocess`` (n-best answer spans from logits over
windows), ``graph`` (windows and answer search inside the serving graph).
"""
