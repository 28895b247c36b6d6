"""Token classification (NER): a tag per word, entity-level metrics.

``task`` (the task, its options and learned tag set), its roles ``data`` (reading and
windowed encoding), ``modeling`` (the per-token model), ``evaluation`` (merged window outputs,
decoded entities, metrics) and ``serving`` (export outputs and checks); ``examples`` (CoNLL and
tabular readers), ``tags`` (tag schemes: IO, BIO, BIOES/BMES), ``pieces`` (word pieces with
character spans, windows), ``encoding`` (windowed encoded data), ``metrics`` (seqeval entity
metrics), ``graph`` (entity spans inside the serving graph).
"""
