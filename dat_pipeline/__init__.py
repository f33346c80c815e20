"""The entry points and what they share: ``dat train|evaluate|stability|collect|chat|dataset`` (``cli``), one
module per Hydra entry (``train``, ``evaluate``, ``stability``, ``collect``), their configs (``conf/``), the one
helper that makes a Hydra entry (``entry``) and the process settings every entry applies before torch loads
(``runtime``). ``python train.py`` (and the other scripts at a checkout's root) call the same modules.

This is wiring: it may import both ``dat`` (the library) and ``envs`` (its Gymnasium face); nothing imports it
but the scripts, the benchmarks and the tests. Importing it applies ``runtime`` first, so any entry module,
imported in any order, starts torch with the right settings.
"""

from dat_pipeline import runtime  # noqa: F401  (process settings before torch: see runtime.py)

from pathlib import Path

CONF = Path(__file__).resolve().parent / "conf"
"""The Hydra configs of every entry point (one copy, in a checkout and in an installed package alike)."""
