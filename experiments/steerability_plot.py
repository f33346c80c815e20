"""The steerability study's pictures, redrawn from its JSON results (``dat.eval.gate_plot``; no model, nothing
re-run). One picture per split:

    python experiments/steerability_plot.py        # benchmarks/results/steerability*.json -> steerability.png (eval),
                                                  # steerability_train.png (train)

``experiments/steerability.py`` redraws them after every run.
"""

from __future__ import annotations

from dat_pipeline.measuring import RESULTS

import argparse
from pathlib import Path

from dat.eval.gate_plot import plot_all


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder with the steerability*.json files")
    for path in plot_all(parser.parse_args(argv).results):
        print(path)


if __name__ == "__main__":
    main()
