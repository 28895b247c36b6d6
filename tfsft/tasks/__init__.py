"""Fine-tuning tasks behind one API (see :mod:`tfsft.tasks.base`), and their registry.

>>> from tfsft.tasks import create_task
>>> create_task("regression", {"target_columns": ["score"]}).options.target_columns
['score']
"""

from tfsft.tasks.base import (
    OutputCheck,
    Task,
    TaskOptions,
    create_task,
    option,
    options_class,
    register_task,
    task_class,
    task_names,
)

__all__ = ["OutputCheck", "Task", "TaskOptions", "create_task", "option", "options_class",
           "register_task", "task_class", "task_names"]
