"""Multi-label text classification: any number of labels per text, one decision threshold each.

``task`` holds the task and its options.
"""
