"""Scenarios: who talks to whom, about what, and what each side wants.

* :mod:`.schema`: ``AgentProfile``, ``Scenario``, ``Task`` (Sotopia's fields and visibility rules),
  ``RelationshipType`` and the rule-check format (``validate_check``).
* :mod:`.loader`: ``load_scenarios("bundled" | "sotopia" | "sotopia-hard" | folder, ids=…)``.
* :mod:`.split`: ``split_tasks(tasks, "train" | "eval")``, held-out scenarios by a stable hash.
* ``data/``: the project's own scenario set (original text, project layout) and the Sotopia-hard ids.
"""

from .loader import DATA_DIR, SOTOPIA_ENV_VAR, load_scenarios, read_id_file
from .rows import ScenarioError
from .schema import (
    DEFAULT_LEAVE_PHRASE,
    AgentProfile,
    RelationshipType,
    Scenario,
    Task,
    render_goal,
    validate_check,
)
from .split import per_scenario, split_of, split_tasks

__all__ = [
    "DATA_DIR",
    "DEFAULT_LEAVE_PHRASE",
    "SOTOPIA_ENV_VAR",
    "AgentProfile",
    "RelationshipType",
    "Scenario",
    "ScenarioError",
    "Task",
    "load_scenarios",
    "read_id_file",
    "per_scenario",
    "render_goal",
    "split_of",
    "split_tasks",
    "validate_check",
]
