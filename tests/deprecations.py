"""Find deprecations that the project's own code triggers, wherever the library reports them.

Libraries announce deprecations three ways: ``warnings.warn`` with ``DeprecationWarning`` or
``FutureWarning`` (attributed to whatever frame their ``stacklevel`` picks, often a decorator or
``nn.Module.__call__``, not the caller), C extensions calling ``PyErr_WarnEx``, and log lines
(transformers' ``logger.warning_once("... deprecated ...")``). Filtering by the warning's module
therefore misses most of them. Instead, every warning is shown (``simplefilter("always")``) and
every log record is seen, and at that moment, still inside the call that caused it, the Python
stack is read: the deprecation is ours when a frame of the stack lies in one of our source roots.
A library deprecating something inside its own code, with none of our frames on the stack, is
not ours and is not reported.
"""

from __future__ import annotations

import logging
import traceback
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OWN_ROOTS = (ROOT / "dat", ROOT / "envs", ROOT / "dat_pipeline")
DEPRECATIONS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)


@dataclass
class Deprecation:
    """One deprecation: its text and the innermost frame of our code that led to it."""

    message: str
    caller: str

    def __str__(self) -> str:
        return f"{self.caller}: {self.message}"


@dataclass
class Recorder:
    """Deprecations seen so far (each distinct message and caller once)."""

    roots: Sequence[Path]
    found: list[Deprecation] = field(default_factory=list)

    def note(self, message: str) -> None:
        caller = self._own_frame()
        if caller is None:
            return
        entry = Deprecation(message.strip().splitlines()[0][:300], caller)
        if all((d.message, d.caller) != (entry.message, entry.caller) for d in self.found):
            self.found.append(entry)

    def _own_frame(self) -> str | None:
        for frame in reversed(traceback.extract_stack()):
            path = Path(frame.filename)
            if any(path == r or r in path.parents for r in self.roots):
                shown = path.relative_to(ROOT) if ROOT in path.parents else path.name
                return f"{shown}:{frame.lineno}"
        return None


class _LogHandler(logging.Handler):
    def __init__(self, recorder: Recorder) -> None:
        super().__init__(logging.WARNING)
        self.recorder = recorder

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "deprecat" in message.lower():
            self.recorder.note(message)


@contextmanager
def own_deprecations(roots: Sequence[Path] = OWN_ROOTS) -> Iterator[list[Deprecation]]:
    """Collect, into the yielded list, every deprecation raised while one of ``roots`` is on the stack."""
    recorder = Recorder(roots)
    handler = _LogHandler(recorder)
    logging.getLogger().addHandler(handler)
    loggers = [logging.getLogger(name) for name in ("transformers", "huggingface_hub", "torch")]
    for logger in loggers:
        logger.addHandler(handler)  # some libraries stop propagation to the root logger
    with warnings.catch_warnings():
        warnings.simplefilter("always")

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, DEPRECATIONS):
                recorder.note(str(message))

        warnings.showwarning = show
        try:
            yield recorder.found
        finally:
            logging.getLogger().removeHandler(handler)
            for logger in loggers:
                logger.removeHandler(handler)
