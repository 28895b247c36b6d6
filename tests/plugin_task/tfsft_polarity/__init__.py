"""``polarity``: a tfsft task kept outside tfsft, registered through the ``tfsft.tasks`` entry
point. ``task`` holds the task and its options."""
