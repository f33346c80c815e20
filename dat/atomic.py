"""Atomic files: what a crash or a kill leaves on disk is the old file or the new one, never half of either.

Every artefact the pipeline writes and later trusts (episodes, datasets, the replay buffer, projections,
bases, checkpoints, judge rescoring) goes through here: it is written to a temporary sibling, flushed to
disk, and moved onto its name with ``os.replace`` (atomic on POSIX within a folder). A reader therefore
sees a complete file or none, and a resume can trust any file it finds.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary sibling of ``path`` to write to (by any writer: ``save_file``, ``torch.save``, ``open``);
    when the block ends it is synced and moved onto ``path``; when the block raises it is removed and
    ``path`` is left as it was. The temporary name carries the process id, so two writers never share it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | Path, data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
