"""``sentence-embedding``: contrastive fine-tuning of sentence vectors for search and RAG.

``task`` (options, the task, its modeling role), ``examples`` (pair reading and checks),
``data``, ``evaluation`` (retrieval and similarity metrics in ``metrics``), ``serving`` and
``model`` (the Keras training wrapper and its losses).
"""
