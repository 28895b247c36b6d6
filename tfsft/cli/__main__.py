"""``python -m tfsft.cli``: the ``tfsft`` command."""

from tfsft.cli import run

run()
