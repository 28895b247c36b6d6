"""Single-label text classification (one text or a text pair per row, one label).

``task`` holds the task and its options, ``model`` the :class:`TextClassifier` Keras model.
"""
