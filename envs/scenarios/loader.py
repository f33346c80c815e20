"""``load_scenarios``: one entry point from a name or a folder to a list of tasks.

Names:

* ``"bundled"``: the project's own scenario set, shipped with the package (``data/``);
* ``"moods"``: a small shipped family where each agent's goal asks for a tone (warm or angry) and
  the scenario's own checks score it (``data/moods/``): the best action depends on the scenario and
  side, so a planner must read its state to beat any constant action (``experiment=mood``);
* ``"probes"``: the shipped instruction-stability probe set (``data/probes/``): self-chats between two
  system-prompted agents, each prompt with a probe question and a test of the answer (``judge=probe``,
  ``experiment=stability``, ``python stability.py``; see :mod:`envs.scenarios.probes`);
* ``"sotopia"``: the official Sotopia profile folder, found at ``root`` or ``$DAT_SOTOPIA_DIR``
  (either the folder holding the four JSONL files or its parent with a ``profiles/`` subfolder);
* ``"sotopia-hard"``: the same, restricted to the 14 Sotopia-hard scenarios (70 tasks), whose ids
  ship with the package (``data/sotopia_hard.txt``);
* any folder in the Sotopia or project layout (see :mod:`envs.scenarios.formats`).

Any of them may end in ``":train"`` or ``":eval"`` to keep one side of :func:`split_tasks`.

``ids`` selects tasks: a list of ids, or the path of an id file. An id may be a task id (Sotopia:
the combo id) or a scenario id (Sotopia: the env id), which selects all its tasks. An id file holds
ids separated by whitespace or commas, optionally quoted; ``#`` starts a comment line. A file with
sections (a line ``NAME:`` before each list, like Sotopia-RL's ``env_ids.txt``) needs the section
named after the path: ``env_ids.txt#SOTOPIA-HARD``. Ids that match nothing are errors.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from .formats import read_folder
from .rows import ScenarioError
from .schema import Task
from .split import SPLITS, split_tasks

DATA_DIR = Path(__file__).resolve().parent / "data"
SOTOPIA_ENV_VAR = "DAT_SOTOPIA_DIR"
NAMES = ("bundled", "moods", "probes", "sotopia", "sotopia-hard")
_SECTION_RE = re.compile(r"^\s*([A-Za-z][\w .-]*):\s*$")
_ID_RE = re.compile(r"[^\s,\"']+")


def _sotopia_dir(root: str | Path | None) -> Path:
    base = root if root is not None else os.environ.get(SOTOPIA_ENV_VAR)
    if not base:
        raise ScenarioError(
            "sotopia",
            None,
            None,
            "no Sotopia data folder given",
            f"pass root=<folder> or set {SOTOPIA_ENV_VAR} to the folder of the profile JSONL files",
        )
    folder = Path(base).expanduser()
    return folder / "profiles" if (folder / "profiles").is_dir() else folder


def read_id_file(spec: str | Path) -> list[tuple[str, int, Path]]:
    """Ids of an id file as (id, line, path); ``path#SECTION`` picks one section of the file."""
    text_spec = str(spec)
    path_text, _, section = (
        text_spec.rpartition("#") if not Path(text_spec).is_file() else (text_spec, "", "")
    )
    path = Path(path_text)
    if not path.is_file():
        raise ScenarioError(path, None, None, "id file not found", "give an existing file, or a list of ids")
    found: dict[str, list[tuple[str, int, Path]]] = {}
    current = ""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.lstrip().startswith("#"):
            continue
        header = _SECTION_RE.match(line)
        if header:
            current = header.group(1).strip()
            found.setdefault(current, [])
            continue
        found.setdefault(current, []).extend((i, number, path) for i in _ID_RE.findall(line))
    sections = [name for name in found if name]
    if sections and not section:
        raise ScenarioError(
            path,
            None,
            None,
            f"the file has sections {sections}",
            f"name one after the path, e.g. '{path}#{sections[0]}'",
        )
    if section and section not in found:
        raise ScenarioError(
            path,
            None,
            None,
            f"no section {section!r} (sections: {sections or 'none'})",
            "use one of the listed sections, or drop '#…' for a file without sections",
        )
    return found.get(section, [])


def select(tasks: list[Task], ids: Sequence[str] | str | Path, source: str) -> list[Task]:
    """Tasks whose task id or scenario id is listed, in their original order."""
    if isinstance(ids, (str, Path)):
        wanted = read_id_file(ids)
    else:
        wanted = [(str(i), 0, Path("<ids argument>")) for i in ids]
    known = {t.id for t in tasks} | {t.scenario.id for t in tasks}
    for pk, line, path in wanted:
        if pk not in known:
            raise ScenarioError(
                path,
                line or None,
                None,
                f"id {pk!r} matches no task or scenario in {source}",
                "list task ids or scenario ids of this set",
            )
    keep = {pk for pk, _, _ in wanted}
    return [t for t in tasks if t.id in keep or t.scenario.id in keep]


def load_scenarios(
    path_or_name: str | Path,
    ids: Sequence[str] | str | Path | None = None,
    root: str | Path | None = None,
) -> list[Task]:
    """Tasks of a named set or a folder, optionally restricted to ``ids`` and to a split.

    >>> tasks = load_scenarios("bundled:eval")            # doctest: +SKIP
    >>> hard = load_scenarios("sotopia-hard", root="data/sotopia")  # doctest: +SKIP
    """
    spec, split = str(path_or_name), None
    for side in SPLITS:
        if spec.endswith(f":{side}") and not Path(spec).exists():
            spec, split = spec[: -len(side) - 1], side
    if spec == "bundled":
        folder = DATA_DIR
    elif spec == "moods":
        folder = DATA_DIR / "moods"
    elif spec == "probes":
        folder = DATA_DIR / "probes"
    elif spec in ("sotopia", "sotopia-hard"):
        folder = _sotopia_dir(root)
    elif Path(spec).expanduser().is_dir():
        folder = Path(spec).expanduser()
    else:
        raise ScenarioError(
            spec,
            None,
            None,
            "neither a known set nor a folder",
            f"use one of {list(NAMES)} (optionally ':train' / ':eval') or a folder path",
        )
    tasks = read_folder(folder)
    if spec == "sotopia-hard":
        tasks = select(tasks, DATA_DIR / "sotopia_hard.txt", str(folder))
    if ids is not None:
        tasks = select(tasks, ids, str(folder))
    return split_tasks(tasks, split) if split else tasks
