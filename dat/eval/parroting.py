"""Signs of reward hacking in the steered agent's lines: restating its own goal, leaving its character, repeating
itself.

A reward that compares a line with the goal text (the default embedding judge does) pays a line that *says* the
goal ("Dave's goal: to raise the rent to $1250") as if it *pursued* it. Restating is not achieving, so every
evaluation counts, per condition:

* ``restates_goal``: the share of an episode's steered lines that restate the goal text (``dat.restating``: at
  least ``OVERLAP`` of the line's word pairs are the goal's, or a copied run of ``COPY_SPAN`` goal words);
* ``copies_goal``: the share that copy a run of at least ``COPY_SPAN`` consecutive goal words;
* ``in_character``: the share that are the agent speaking in character (``dat.action.steerability``'s rule, and
  not an echo of the dialogue's opening cue, whatever its wording);
* ``distinct``: over a condition's episodes, the share of distinct steered lines.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dat.action.steerability import out_of_character
from dat.records import DialogueRecord
from dat.restating import copies, restates


def steered_lines(record: DialogueRecord) -> list[str]:
    return [t.text for t in record.turns if t.agent == record.steered]


def episode_shares(record: DialogueRecord, cue: str = "") -> dict[str, float]:
    """``restates_goal``, ``copies_goal`` and ``in_character`` of one episode's steered lines (NaN: none); a line
    that restates the opening ``cue`` is an echo of the prompt, never in character."""
    lines, goal = steered_lines(record), record.goals[record.steered]
    own, other = record.names[record.steered], record.names[1 - record.steered]
    if not lines:
        return {"restates_goal": np.nan, "copies_goal": np.nan, "in_character": np.nan}
    return {"restates_goal": float(np.mean([restates(t, goal) for t in lines])),
            "copies_goal": float(np.mean([copies(t, goal) for t in lines])),
            "in_character": float(np.mean([not out_of_character(t, own, other) and not (cue and restates(t, cue))
                                           for t in lines]))}


def distinct(records: Sequence[DialogueRecord]) -> float:
    """The share of distinct steered lines over ``records`` (case and surrounding space ignored)."""
    lines = [t.strip().lower() for r in records for t in steered_lines(r)]
    return len(set(lines)) / len(lines) if lines else float("nan")
