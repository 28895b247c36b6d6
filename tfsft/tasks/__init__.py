"""Fine-tuning tasks behind one API (see :mod:`tfsft.tasks.base` and the roles in
:mod:`tfsft.tasks.roles`), and their registry.

>>> from tfsft.tasks import create_task
>>> create_task("regression", {"target_columns": ["score"]}).options.target_columns
['score']
"""

from tfsft.tasks.base import (
    Task,
    TaskOptions,
    create_task,
    option,
    options_class,
    register_task,
    task_class,
    task_names,
)
from tfsft.tasks.roles import (
    DataRole,
    EvaluationRole,
    Examples,
    ModelingRole,
    OutputCheck,
    ServingRole,
)

__all__ = ["DataRole", "EvaluationRole", "Examples", "ModelingRole", "OutputCheck",
           "ServingRole", "Task", "TaskOptions", "create_task", "option", "options_class",
           "register_task", "task_class", "task_names"]
