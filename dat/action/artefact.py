"""Stage 1's cached artefacts, and the one rule for when a cached one may be reused.

Every artefact stage 1 makes once per model and setting (a behaviour basis, a PCA basis, a self-cloned
projection) lives in a folder of its own under the model's artefact folder, written by ``UpProjection.save``:
``projection.safetensors``, then ``projection.json``, whose record holds the artefact's ``settings`` (everything
it depends on, its fingerprint) and ``complete`` (true once it is finished; the record is written last, atomically).

The rule, the same for every kind: a complete folder whose settings equal the wanted ones is reused; a complete
folder made with other settings is refused with the settings that differ (a changed config never reuses a stale
artefact in silence, nor overwrites one another run relies on); an absent or incomplete one is made (resumed
where its kind keeps checkpoints).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

RECORD = "projection.json"
"""The file whose record says what an artefact was made with and whether it is finished."""


def record_of(folder: str | Path) -> dict[str, Any]:
    """The record saved with the artefact at ``folder`` (empty when there is none)."""
    path = Path(folder) / RECORD
    return json.loads(path.read_text()).get("record", {}) if path.is_file() else {}


def complete(folder: str | Path) -> bool:
    """Whether ``folder`` holds a finished artefact."""
    return bool(record_of(folder).get("complete"))


def differences(folder: str | Path, wanted: Mapping[str, Any], recorded: tuple[str, ...] = ()) -> list[str]:
    """The top-level settings in which the artefact at ``folder`` differs from ``wanted`` (a key either side
    lacks counts as different), leaving out the ``recorded`` ones: kept for the reader, known only once made."""
    saved = record_of(folder).get("settings", {})
    return sorted(k for k in {*saved, *wanted} - set(recorded) if saved.get(k) != wanted.get(k))


def reusable(folder: str | Path, wanted: Mapping[str, Any], what: str, rename: str,
             recorded: tuple[str, ...] = ()) -> bool:
    """True when ``folder`` holds a complete artefact made with ``wanted``; False when it holds none (or an
    unfinished one). Raises a ValueError naming the differing settings, ``what`` it is and the field to
    ``rename`` to keep both, when the complete artefact there was made with other settings."""
    if not complete(folder):
        return False
    changed = differences(folder, wanted, recorded)
    if changed:
        raise ValueError(f"The {what} cached at {folder} was made with other settings ({', '.join(changed)}). "
                         f"Give this setting its own {rename}, or delete that folder to make it again.")
    return True
