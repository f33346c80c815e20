"""Entry point: ``python gate.py [overrides]`` (or ``dat gate``): does an action space steer the model?

Stage 1 prepares the action space exactly as training would (a saved projection, a cached or prebuilt basis, or
one made now on ``env.scenarios.train``); the gate's protocol (``dat.eval.gate``) then measures it on the first
turns of ``gate.scenarios`` at seed ``seed``. Prints the verdict with each criterion and writes ``gate.json``
(every measurement, the prompts and the settings) in the run folder. Exit status 0 either way: a failed gate is
a result, not an error.
"""

from __future__ import annotations

from dat_pipeline import runtime  # process settings before torch (see runtime.py)
from dat_pipeline.entry import hydra_entry

import json
import logging
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from dat.config import GateRunConfig, validate
from dat.eval import gate as protocol
from dat.judges.embedding import EmbeddingJudge
from dat.lm.frozen import FrozenLM
from dat.seeding import seed_everything
from dat.stage1 import prepare_projection
from envs.scenarios import load_scenarios

LOG = logging.getLogger("gate")


def gate(cfg: GateRunConfig) -> dict:
    """Measure the action space ``cfg`` describes; return the gate's result (also written to ``gate.json``)."""
    validate(cfg)
    cfg.gate.validate()
    out = Path(cfg.output_dir or HydraConfig.get().runtime.output_dir)
    seed_everything(cfg.seed)
    torch.set_num_threads(cfg.model.threads or torch.get_num_threads())
    scenarios = cfg.env.scenarios
    train_tasks = load_scenarios(scenarios.train, ids=scenarios.ids, root=scenarios.root)
    tasks = load_scenarios(cfg.gate.scenarios, root=scenarios.root)
    lm = FrozenLM.load(cfg.model)
    projection = prepare_projection(cfg, lm, train_tasks, out)
    held_out = not {t.scenario.id for t in tasks} & {t.scenario.id for t in train_tasks}
    with torch.no_grad():
        prompts = protocol.Prompts(lm, tasks, cfg.gate, cfg.seed, cfg.env)
        own = cfg.behaviours.behaviours if cfg.prefix.kind == "behaviours" else ()
        scorer = protocol.Scorer(lm, prompts, EmbeddingJudge(), believability=cfg.gate.believability, behaviours=own)
        runtime.say(LOG, f"gate: {len(prompts)} prompts of {cfg.gate.scenarios}, {cfg.gate.actions} random actions, "
                         f"seed {cfg.seed}; the unsteered baseline first")
        base = protocol.baseline(lm, prompts, scorer, cfg.gate, cfg.seed)
        label = _label()
        result = protocol.measure(lm, projection, prompts, scorer, base, cfg.gate, cfg.seed, label, held_out,
                                  progress=lambda line: runtime.say(LOG, line))
    record = {"model": lm.name, "seed": cfg.seed, "gate_settings": OmegaConf.to_container(
                  OmegaConf.structured(cfg.gate)), "prefix": OmegaConf.to_container(OmegaConf.structured(cfg.prefix)),
              "behaviours": OmegaConf.to_container(OmegaConf.structured(cfg.behaviours))
              if cfg.prefix.kind == "behaviours" else None,
              "baseline": base["summary"], "prompts": prompts.describe(), "result": result}
    out.mkdir(parents=True, exist_ok=True)
    (out / "gate.json").write_text(json.dumps(record, indent=2))
    print(protocol.verdict(result))
    print(f"\nwrote {out / 'gate.json'}")
    return result


def _label() -> str:
    """The action space's name in the results and the sample seeds: the prefix preset Hydra chose."""
    try:
        return HydraConfig.get().runtime.choices.get("prefix", "prefix") or "prefix"
    except ValueError:  # not under Hydra (a test calling gate() directly)
        return "prefix"


def passed(cfg: GateRunConfig) -> float:
    """Run the gate; 1.0 when it passes (what a sweep over presets or seeds reports), else 0.0."""
    return float(gate(cfg)["gate"])


main = hydra_entry("gate", GateRunConfig, passed)

if __name__ == "__main__":
    main()
