"""Text regression: one or more real-valued targets per text, standardised for training.

``task`` holds the task and its options.
"""
