"""Token classification (NER): a tag per word, entity-level metrics.

``task`` (the task and its options), ``examples`` (CoNLL and tabular readers), ``tags`` (tag
schemes: IO, BIO, BIOES/BMES), ``metrics`` (seqeval entity metrics), ``graph`` (entity spans
inside the serving graph).
"""
