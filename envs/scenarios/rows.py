"""Typed access to JSONL rows, with errors that point at file, line and field.

Every reader goes through :class:`Row`, so a malformed scenario file fails in one consistent way:
``ScenarioError`` naming the file, the 1-based line, the field, what is wrong and how to fix it.
Nothing is skipped or coerced silently.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .schema import RelationshipType

REQUIRED: Any = object()
"""Default of the Row getters: the field must be present."""


class ScenarioError(ValueError):
    """A scenario, character or task file is malformed; the message says where and how to fix it."""

    def __init__(self, path: Path | str, line: int | None, field: str | None, problem: str, fix: str):
        self.path, self.line, self.field = str(path), line, field
        where = self.path if line is None else f"{self.path}, line {line}"
        what = f"field '{field}': " if field else ""
        super().__init__(f"{where}: {what}{problem}. Fix: {fix}")


def read_jsonl(path: Path) -> list[Row]:
    """All non-blank lines of a JSONL file as rows; a line that is not a JSON object raises."""
    if not path.is_file():
        raise ScenarioError(path, None, None, "file not found", "check the folder, or the file name")
    rows = []
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ScenarioError(path, number, None, f"not UTF-8 text (byte 0x{raw[err.start]:02x} at column "
                                    f"{err.start + 1})", "save the file as UTF-8") from None
            if not text.strip():
                continue
            try:
                data = json.loads(text)
            except json.JSONDecodeError as err:
                raise ScenarioError(
                    path,
                    number,
                    None,
                    f"invalid JSON ({err.msg} at column {err.colno})",
                    "write one complete JSON object per line",
                ) from None
            if not isinstance(data, dict):
                raise ScenarioError(
                    path,
                    number,
                    None,
                    f"expected a JSON object, got {type(data).__name__}",
                    "write one JSON object ({...}) per line",
                )
            rows.append(Row(path, number, data))
    if not rows:
        raise ScenarioError(path, None, None, "the file holds no rows (it is empty)",
                            "write one JSON object per line, or point at another folder")
    return rows


class Row:
    """One JSON object from line ``line`` of ``path``, read field by field with type checks."""

    def __init__(self, path: Path, line: int, data: dict[str, Any]):
        self.path, self.line, self.data = path, line, data

    def error(self, field: str | None, problem: str, fix: str) -> ScenarioError:
        return ScenarioError(self.path, self.line, field, problem, fix)

    def _get(self, field: str, default: Any) -> Any:
        if field in self.data:
            return self.data[field]
        if default is REQUIRED:
            raise self.error(field, "missing", f'add "{field}" to this object')
        return default

    def text(self, field: str, default: Any = REQUIRED, nonempty: bool = False) -> str:
        """A string field; ``nonempty``: blank text is an error too (ids, names, the scenario itself)."""
        value = self._get(field, default)
        if not isinstance(value, str):
            raise self.error(
                field, f"expected a string, got {type(value).__name__} {value!r}", "quote the value"
            )
        if nonempty and not value.strip():
            raise self.error(field, "empty", "write the text this field needs")
        return value

    def integer(self, field: str) -> int:
        value = self._get(field, REQUIRED)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(
                field,
                f"expected an integer, got {type(value).__name__} {value!r}",
                "write a whole number without quotes",
            )
        return value

    def texts(self, field: str, length: int | None = None, default: Any = REQUIRED) -> tuple[str, ...]:
        value = self._get(field, default)
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise self.error(field, f"expected a list of strings, got {value!r}", 'write ["…", "…"]')
        if length is not None and len(value) != length:
            raise self.error(
                field,
                f"expected exactly {length} entries, got {len(value)}",
                f"give one entry per agent ({length})",
            )
        return tuple(v.strip() for v in value)

    def pair(self, field: str) -> tuple[str, str]:
        """Exactly two non-empty strings, one per agent (goals, agent ids)."""
        first, second = self.texts(field, length=2)
        if not first or not second:
            raise self.error(field, f"entry {1 if not first else 2} is empty", "give both agents' text")
        return first, second

    def dicts(self, field: str) -> tuple[dict[str, Any], ...]:
        value = self._get(field, [])
        if not isinstance(value, list):
            raise self.error(
                field, f"expected a list of objects, got {type(value).__name__}", "write [{…}, …]"
            )
        return tuple(value)

    def mapping(self, field: str) -> dict[str, Any]:
        """A JSON object field (e.g. a probe's ``test``)."""
        value = self._get(field, REQUIRED)
        if not isinstance(value, dict):
            raise self.error(field, f"expected an object, got {type(value).__name__} {value!r}", 'write {"kind": …}')
        return value

    def relationship(self, field: str = "relationship") -> RelationshipType:
        """Accepts Sotopia's "0".."5", an integer 0..5, or a name such as "friend"."""
        value = self._get(field, REQUIRED)
        names = [r.name for r in RelationshipType]
        if isinstance(value, str) and value.strip() in names:
            return RelationshipType[value.strip()]
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 5:
            return RelationshipType(value)
        raise self.error(field, f"unknown relationship {value!r}", f"use 0..5 or one of {names}")

    def reject_unknown(self, allowed: set[str]) -> None:
        """Fail on fields this format does not define, so that a typo is never ignored."""
        extra = sorted(set(self.data) - allowed)
        if extra:
            raise self.error(extra[0], "unknown field", f"remove it or rename it to one of {sorted(allowed)}")
