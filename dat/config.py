"""Typed schemas for every config group, registered in Hydra's ConfigStore.

The YAML files under ``dat_pipeline/conf/`` fill these in; Hydra validates every key and type against them, so a
typo (``algo.alpah=1``) or a wrong type (``seed=abc``) fails at start with a message naming the key.
``main()`` turns the composed config into these dataclasses once; each component gets its own part.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from dat.action.behaviours import BehaviourConfig
from dat.action.experimental.selfclone import SelfCloneConfig
from dat.action.projection import PrefixConfig
from dat.dialogue.rules import EnvConfig
from dat.eval.gate import GateConfig
from dat.judges.config import JudgeConfig
from dat.lm.loading import BACKENDS, DTYPES, ModelConfig, check_name, resolve_device
from dat.rl.td3bc import AlgoConfig


@dataclass
class LoggerConfig:
    """Where metrics go: Weights & Biases (offline by default) or nowhere."""

    backend: str = "wandb"
    """wandb or none."""
    mode: str = "offline"
    """W&B mode: offline (no account, no network), online, or disabled."""
    project: str = "dat"
    """W&B project name."""
    entity: str | None = None
    """W&B entity (team or user); None uses the default."""
    group: str | None = None
    """W&B group; None in a sweep (-m) groups its jobs under the sweep folder's name."""
    tags: list[str] = field(default_factory=list)
    """W&B tags for the run."""
    system_stats: bool = False
    """W&B's CPU, GPU and memory charts. Off by default: its sampling thread competes with generation on a
    small CPU; turn it on for GPU runs."""


@dataclass
class ScenarioConfig:
    """Which tasks the planner trains on and which held-out tasks it is evaluated on."""

    train: str = "bundled:train"
    """Training tasks: bundled[:train|:eval], moods[:train|:eval], sotopia, sotopia-hard, or a folder
    (see envs.scenarios)."""
    eval: str = "bundled:eval"
    """Held-out evaluation tasks, same syntax."""
    root: str | None = None
    """Folder of the official Sotopia profiles (for sotopia*), else $DAT_SOTOPIA_DIR."""
    ids: str | None = None
    """Optional id list (file path) restricting the training tasks."""


@dataclass
class EnvGroupConfig(EnvConfig):
    """The dialogue rules (``dat.dialogue.rules.EnvConfig``) plus the task sets they are played on."""

    scenarios: ScenarioConfig = field(default_factory=ScenarioConfig)
    """Training and evaluation task sets."""


@dataclass
class LoopConfig:
    """The collect -> train -> evaluate rounds of stage 2."""

    rounds: int = 3
    """Collection rounds (round 0 uses random actions, later rounds the policy plus noise)."""
    episodes_per_round: int = 16
    """Dialogues collected per round."""
    eval_per_task: int = 1
    """Held-out dialogues per evaluation task and condition (dat.eval.conditions.EVALUATED)."""
    constant_per_task: int = 1
    """Dialogues per training task each candidate of the best constant action plays when it is chosen
    (dat.eval.constant; once per model, action space, judge and tasks, then cached); 0 leaves that baseline out."""
    constant_tasks: int | None = None
    """Choose the best constant action on the first N training tasks only (None: all of them)."""
    eval_tasks: int | None = 8
    """Evaluate on the first N held-out tasks only (None: all of them)."""
    held_out_judges: list[str] = field(default_factory=list)
    """Judge presets (dat_pipeline/conf/judge: rule, local, ...) that score every evaluation's episodes again,
    reported beside the run's judge as ``reward@<name>`` (never trained on): a gain only the training judge sees
    stands out. Empty by default: a held-out judge adds its judging time to every evaluation."""
    eval_every: int = 1
    """Evaluate every this many rounds (the last round is always evaluated)."""
    batch_size: int = 40
    """Dialogues advanced together in one batched generation call (at most: a round's collection plays
    ``episodes_per_round``). 40 plays the default evaluation (8 tasks x 5 conditions) in one wave: decoding
    reads every weight once per step whatever the width, so 40 rows cost little more than 16."""
    random_first_round: bool = True
    """Collect round 0 with uniform random actions (DAT's collection) instead of the initial policy."""
    max_failed_share: float = 0.5
    """Stop the run when more than this share of a round's judgements fail (a judge that fails every
    judgement of a batch stops it at once). Failed episodes are kept on disk with their cause and judged
    again at the start of every later round (and on resume); those that succeed then enter training."""

    def validate(self) -> LoopConfig:
        """Raise a ValueError naming the field when a count is unusable."""
        if self.constant_per_task < 0:
            raise ValueError(f"loop.constant_per_task={self.constant_per_task} must be 0 (no best constant) or more.")
        if self.constant_tasks is not None and self.constant_tasks < 1:
            raise ValueError(f"loop.constant_tasks={self.constant_tasks} must be at least 1 (or null for all).")
        for name in ("rounds", "episodes_per_round", "eval_per_task", "eval_every", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"loop.{name}={getattr(self, name)} must be at least 1.")
        if not 0 <= self.max_failed_share <= 1:
            raise ValueError(f"loop.max_failed_share={self.max_failed_share} must be in [0, 1].")
        if self.eval_tasks is not None and self.eval_tasks < 1:
            raise ValueError(f"loop.eval_tasks={self.eval_tasks} must be at least 1 (or null for all).")
        return self


@dataclass
class SharedConfig:
    """What training and evaluation share: the model, the action space and how it is made, the dialogue
    rules and tasks, the judge and the logger (evaluate.py's schema adds its own settings to these)."""

    seed: int = 0
    """The run seed; every random stream derives from it."""
    name: str = "dat"
    """Run name (W&B run name, export model card)."""
    output_dir: str | None = None
    """Where outputs go; None uses Hydra's run directory."""
    model: ModelConfig = field(default_factory=ModelConfig)
    prefix: PrefixConfig = field(default_factory=PrefixConfig)
    selfclone: SelfCloneConfig = field(default_factory=SelfCloneConfig)
    behaviours: BehaviourConfig = field(default_factory=BehaviourConfig)
    env: EnvGroupConfig = field(default_factory=EnvGroupConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)


@dataclass
class TrainConfig(SharedConfig):
    """The whole run: one object, built from the composed Hydra config in ``main()``."""

    dataset: Any = None
    """Train fully offline from datasets written by ``dat collect`` (a folder or a list of them) instead of
    collecting in rounds: each round then makes ``algo.gradient_steps_per_round`` updates on their transitions
    (``loop.rounds`` x that in all) and evaluates as usual. None: online rounds (collect -> train -> evaluate)."""
    resume: bool = True
    """Resume from the output directory's last complete checkpoint when there is one (and its settings match)."""
    force_resume: bool = False
    """Resume even when the checkpoint was made with other settings (``identity``): the run then mixes them."""
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)


@dataclass
class CollectConfig:
    """A dataset of episodes (``dat collect``): how many, with which behaviour policy and decoding, where."""

    episodes: int = 1000
    """N: the dataset's episodes, all shards together (a larger N on a re-run adds only the missing ones)."""
    out: str = "outputs/datasets/default"
    """The dataset folder (with collect.shards > 1, each shard writes <out>/shards/shard-i-of-k; merge them with
    ``dat dataset merge <out>``)."""
    shard: int = 0
    """Which shard this process collects: the episode indices g with g % shards == shard."""
    shards: int = 1
    """How many shards the dataset is split into (a multirun over collect.shard=0,...,k-1)."""
    policy: str | None = None
    """An exported planner (a run's export/ folder) whose actions, plus ``noise``, are played; None plays
    uniformly random actions, as DAT collects."""
    noise: float = 0.3
    """Gaussian exploration noise (sd) around ``policy``'s actions (unused for random actions)."""
    do_sample: bool = False
    """Decode every utterance by sampling (env.sampling's temperature and top-p); false decodes greedily, as
    DAT collects "for a less noisy signal": the reward is then a function of the task, side and action."""
    batch_size: int = 64
    """Dialogues played in lockstep, and the episodes committed at a time (a kill loses at most one batch)."""

    def validate(self) -> CollectConfig:
        """Raise a ValueError naming the field when a setting is unusable."""
        for name in ("episodes", "shards", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"collect.{name}={getattr(self, name)} must be at least 1.")
        if not 0 <= self.shard < self.shards:
            raise ValueError(f"collect.shard={self.shard} must be in 0..{self.shards - 1} "
                             f"(collect.shards={self.shards}).")
        if self.noise < 0:
            raise ValueError(f"collect.noise={self.noise} must be >= 0.")
        if self.policy is not None and not (Path(self.policy) / "config.json").is_file():
            raise ValueError(f"collect.policy={self.policy!r} holds no exported planner (config.json); give a run's "
                             "export/ folder, or collect.policy=null for random actions.")
        return self


@dataclass
class CollectRunConfig(TrainConfig):
    """``dat collect``: the training config's groups (model, action space, dialogue rules, judge) and ``collect``."""

    collect: CollectConfig = field(default_factory=CollectConfig)


@dataclass
class GateRunConfig(TrainConfig):
    """``dat gate``: the training config's groups (the action space and how stage 1 makes it, on
    ``env.scenarios.train``) and how the steerability gate measures it (``gate``); ``seed`` seeds every sample."""

    gate: GateConfig = field(default_factory=GateConfig)


GROUPS = {
    "model": ModelConfig, "prefix": PrefixConfig, "env": EnvGroupConfig, "judge": JudgeConfig,
    "algo": AlgoConfig, "logger": LoggerConfig, "selfclone": SelfCloneConfig, "loop": LoopConfig,
    "behaviours": BehaviourConfig, "collect": CollectConfig,
}


def register_configs() -> None:
    """Register the schemas so ``dat_pipeline/conf/*.yaml`` files are validated against them."""
    store = ConfigStore.instance()
    store.store(name="train_schema", node=TrainConfig)
    store.store(name="collect_schema", node=CollectRunConfig)
    store.store(name="gate_schema", node=GateRunConfig)
    for group, node in GROUPS.items():
        store.store(group=group, name=f"{group}_schema", node=node)


LOGGERS = {"backend": ("wandb", "none"), "mode": ("offline", "online", "disabled")}


def validate(cfg: Any) -> Any:
    """Check every group of a composed config before any work starts (no model loaded, nothing written).

    Each group's own ``validate`` names the field and its valid values; the ones without run here.
    Returns ``cfg``. Works for the training config and for configs that share its groups (evaluate.py).
    """
    cfg.env.validate()
    cfg.judge.validate()
    cfg.prefix.validate()
    if isinstance(getattr(cfg, "loop", None), LoopConfig):
        cfg.loop.validate()
    if isinstance(getattr(cfg, "collect", None), CollectConfig):
        cfg.collect.validate()
    for folder in datasets(cfg):
        if not (Path(folder) / "card.json").is_file():
            shards = (Path(folder) / "shards").is_dir()
            raise ValueError(f"dataset={folder!r} holds no dataset (card.json missing)"
                             + (f"; merge its shards first: dat dataset merge {folder}." if shards else
                                "; give a folder written by dat collect (its collect.out)."))
    if cfg.prefix.kind == "behaviours" and not cfg.prefix.path:
        from dat.action.behaviours import check_config

        check_config(cfg.prefix, cfg.behaviours)
        cfg.behaviours.sampling.validate("behaviours.sampling")
    if cfg.prefix.kind == "learned" and not cfg.prefix.path and hasattr(cfg, "selfclone"):
        cfg.selfclone.sampling.validate("selfclone.sampling")
    if cfg.model.dtype not in DTYPES:
        raise ValueError(f"model.dtype={cfg.model.dtype!r} is not one of: {', '.join(DTYPES)}.")
    if cfg.model.backend not in BACKENDS:
        raise ValueError(f"model.backend={cfg.model.backend!r} is not one of: {', '.join(BACKENDS)}.")
    if cfg.model.backend == "vllm" and cfg.prefix.depth != "input":
        raise ValueError(f"model.backend=vllm takes input prefixes only, but prefix.depth={cfg.prefix.depth}: "
                         "per-layer vectors act inside the decoder layers, which prompt embeddings cannot express. Use "
                         "model.backend=hf, or an input-depth prefix (e.g. prefix=behaviours_goal_hint).")
    if cfg.model.backend == "vllm" and not cfg.model.vllm.url:
        from dat.lm.vllmengine import python_for

        python_for(cfg.model.vllm)  # names `make vllm` before any work when the vLLM environment is missing
    if cfg.model.vllm.dtype is not None and cfg.model.vllm.dtype not in DTYPES:
        raise ValueError(f"model.vllm.dtype={cfg.model.vllm.dtype!r} is not one of: {', '.join(DTYPES)} (or null).")
    resolve_device(cfg.model.device)  # a device torch does not have here fails now, not after stage 1
    check_name(cfg.model)  # a model folder that is not there, too
    if cfg.model.kv_store_mib < 0:
        raise ValueError(f"model.kv_store_mib={cfg.model.kv_store_mib} must be >= 0 (0 turns the store off).")
    if cfg.model.memo_entries < 0:
        raise ValueError(f"model.memo_entries={cfg.model.memo_entries} must be >= 0 (0 turns the memo off).")
    for name, valid in LOGGERS.items():
        if getattr(cfg.logger, name) not in valid:
            raise ValueError(f"logger.{name}={getattr(cfg.logger, name)!r} is not one of: {', '.join(valid)}.")
    return cfg


def datasets(cfg: Any) -> list[str]:
    """The dataset folders a training config names (``dataset``: none, one, or a list)."""
    value = getattr(cfg, "dataset", None)
    if value is None or value == "":
        return []
    return [str(value)] if isinstance(value, str | Path) else [str(v) for v in value]


def data_settings(cfg: Any, projection, lm) -> dict[str, Any]:
    """What a dataset's transitions mean, as its card records it: the model and dtype, the state the planner
    reads, the action space (its fingerprint), the judge and reward; training from a dataset needs the same.
    The dialogue rules and scenarios are recorded too but may differ (another task set is another dataset)."""
    from dataclasses import asdict

    from dat.dialogue.dataset import fingerprint

    return json.loads(json.dumps({
        "model": lm.name, "dtype": cfg.model.dtype,
        "state": {"layer": cfg.env.state_layer, "pool": cfg.env.state_pool, "hidden": lm.hidden_size},
        "action_space": {"fingerprint": fingerprint(projection),
                         "prefix": {k: v for k, v in asdict(projection.cfg).items() if k != "path"}},
        "reward": {"judge": cfg.judge.backend, "weights": asdict(cfg.judge.weights)},
    }, default=str))


def identity(cfg: TrainConfig) -> dict[str, Any]:
    """The settings that make a run what it is, as flat ``group.field`` keys: a checkpoint resumes only
    under the same ones. Seed, model, action space (prefix and how it was made), what the planner reads
    (state layer and pooling), the networks' shapes and the judge's reward; not the budget (rounds,
    episodes, gradient steps), which a user extends by re-running."""
    from dataclasses import asdict

    made = {"behaviours": asdict(cfg.behaviours), "learned": asdict(cfg.selfclone)}.get(cfg.prefix.kind, {})
    flat = {"seed": cfg.seed, "model.name": cfg.model.name, "model.dtype": cfg.model.dtype,
            "env.state_layer": cfg.env.state_layer, "env.state_pool": cfg.env.state_pool,
            "algo.net_arch": asdict(cfg.algo.net_arch), "algo.activation": cfg.algo.activation,
            "algo.normalize_states": cfg.algo.normalize_states, "judge.backend": cfg.judge.backend,
            "judge.weights": asdict(cfg.judge.weights)}
    flat.update({f"prefix.{k}": v for k, v in asdict(cfg.prefix).items() if k != "path"})
    group = "behaviours" if cfg.prefix.kind == "behaviours" else "selfclone"
    flat.update({f"{group}.{k}": v for k, v in made.items() if k not in ("name", "checkpoint_every")})
    if datasets(cfg):  # recorded only offline, so the identity of online runs is what it was
        flat["dataset"] = sorted(str(Path(d).resolve()) for d in datasets(cfg))
    return json.loads(json.dumps(flat))  # as state.json will hold it (tuples become lists)


def to_config(cfg: DictConfig | dict[str, Any], schema: type = TrainConfig) -> Any:
    """The composed config as typed dataclasses (validating it once more against ``schema``)."""
    merged = OmegaConf.merge(OmegaConf.structured(schema), cfg)
    return OmegaConf.to_object(merged)
