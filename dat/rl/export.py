"""The minimal, shareable artefact of a run: the planner and everything needed to steer with it.

``DATPolicy`` holds the actor MLP, the state normaliser, the up-projection, the base model's name,
the prefix settings and the state layer. It saves as ``model.safetensors`` + ``config.json``
through huggingface_hub's ``PyTorchModelHubMixin`` (``save_pretrained`` / ``from_pretrained`` /
``push_to_hub``): no pickle, loadable anywhere torch is. Critics, targets, optimisers and the buffer
belong to the resumable training checkpoint (``dat.rl.checkpoint``), not here.

>>> policy = DATPolicy.from_pretrained("outputs/train/default/export")   # doctest: +SKIP
>>> prefixes = policy.prefixes(lm.states([chat]))                        # doctest: +SKIP
>>> lm.generate([chat], prefixes, position=policy.position)              # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import Tensor, nn

from dat.action.projection import PrefixConfig, UpProjection

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh}
"""The actor's hidden activations by config name (``algo.activation``); the trainer builds its networks from this
table and the export rebuilds the actor from it, so the two cannot disagree."""


def actor_mlp(state_dim: int, action_dim: int, hidden: list[int], activation: str) -> nn.Sequential:
    """The same layer layout as SB3's TD3 actor (``mu``): Linear/activation blocks, then tanh."""
    layers: list[nn.Module] = []
    width = state_dim
    for size in hidden:
        layers += [nn.Linear(width, size), ACTIVATIONS[activation]()]
        width = size
    layers += [nn.Linear(width, action_dim), nn.Tanh()]
    return nn.Sequential(*layers)


class DATPolicy(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="dat-pipeline",
    tags=["dialogue-action-tokens", "td3-bc", "steering"],
):
    """A trained DAT planner: state ``(batch, hidden)`` -> action -> prefix ``(batch, L, hidden)``
    (``(batch, prefix_layers, L, hidden)`` for a deep prefix, ``prefix.depth=layers``)."""

    def __init__(
        self,
        state_dim: int,
        action_dim: int,
        actor_hidden: list[int],
        activation: str,
        prefix: dict,
        base_model: str,
        state_layer: int = -1,
        norm_eps: float = 1e-3,
        state_pool: str = "last",
        prefix_layers: int | None = None,
    ):
        super().__init__()
        self.settings = {
            "state_dim": state_dim, "action_dim": action_dim, "actor_hidden": list(actor_hidden),
            "activation": activation, "prefix": dict(prefix), "base_model": base_model,
            "state_layer": state_layer, "norm_eps": norm_eps, "state_pool": state_pool,
        }
        if prefix_layers is not None:  # only deep prefixes record it, so earlier exports keep their config
            self.settings["prefix_layers"] = prefix_layers
        self.base_model = base_model
        self.state_layer = state_layer
        self.state_pool = state_pool
        self.norm_eps = norm_eps
        self.register_buffer("state_mean", torch.zeros(state_dim))
        self.register_buffer("state_std", torch.ones(state_dim))
        self.mu = actor_mlp(state_dim, action_dim, list(actor_hidden), activation)
        prefix_cfg = PrefixConfig(**prefix)
        chunk = prefix_cfg.action_dim if prefix_cfg.tied else prefix_cfg.action_dim // prefix_cfg.tokens
        placeholder = torch.zeros(chunk, state_dim) if prefix_cfg.kind in ("pca", "anchors") else None
        if prefix_cfg.kind == "behaviours":
            deep = (prefix_layers,) if prefix_cfg.depth == "layers" and prefix_layers else ()
            placeholder = torch.zeros(prefix_cfg.action_dim, *deep, prefix_cfg.tokens, state_dim)
        self.projection = UpProjection(prefix_cfg, state_dim, 1.0, placeholder)

    @staticmethod
    def check_source(source: str | Path) -> None:
        """Fail with the fix when ``source`` cannot be an export: a run folder (its planner is in export/),
        a folder without ``config.json``, or a missing path that is no Hub id (``owner/name``)."""
        folder = Path(source)
        if folder.is_dir():
            if (folder / "config.json").is_file():
                return
            if (folder / "export" / "config.json").is_file():
                raise ValueError(f"policy={source} is a training run; its planner is in {folder / 'export'}: "
                                 f"pass policy={folder / 'export'}.")
            raise ValueError(f"policy={source} holds no DATPolicy export (no config.json); pass the export/ "
                             "folder that train.py writes in its run folder.")
        hub_id = len(str(source).split("/")) == 2 and not str(source).startswith((".", "/", "~"))
        if not hub_id:
            raise FileNotFoundError(f"policy={source}: no such folder. Pass a run's export/ folder (train.py prints "
                                    "it at the end) or a Hub id such as you/dat-planner.")

    @property
    def position(self) -> str:
        return self.projection.cfg.position

    @torch.no_grad()
    def act(self, states: Tensor) -> Tensor:
        """Deterministic action in [-1, 1]^d for float32 states."""
        normalised = (states.float() - self.state_mean) / (self.state_std + self.norm_eps)
        return self.mu(normalised)

    @torch.no_grad()
    def forward(self, states: Tensor) -> Tensor:
        """Prefix embeddings for the given states (rows that choose not to steer included: see ``prefixes``)."""
        return self.projection(self.act(states))

    @torch.no_grad()
    def prefixes(self, states: Tensor) -> list[Tensor | None]:
        """One prefix per state for ``FrozenLM.generate``: None where the planner chooses the "do not steer"
        point (``prefix.null_action``), so that line is generated as the unsteered model's."""
        actions = self.act(states)
        made = self.projection(actions)
        return [None if skip else p for p, skip in zip(made, self.projection.unsteered(actions).tolist(), strict=True)]

    @classmethod
    def from_trained(cls, algo, projection: UpProjection, base_model: str, state_layer: int = -1,
                     state_pool: str = "last") -> DATPolicy:
        """Build the export from a trained ``dat.rl.td3bc.TD3BC`` and the run's up-projection."""
        actor = algo.actor
        arch = algo.policy_kwargs  # what the actor was built from (SB3 keeps it with the model)
        hidden = list(arch["net_arch"]["pi"])
        activation = next(name for name, kind in ACTIVATIONS.items() if kind is arch["activation_fn"])
        extractor = actor.features_extractor
        mean = getattr(extractor, "mean", None)
        state_dim = int(algo.observation_space.shape[0])
        policy = cls(
            state_dim=state_dim, action_dim=int(algo.action_space.shape[0]), actor_hidden=hidden,
            activation=activation, prefix=asdict(projection.cfg), base_model=base_model,
            state_layer=state_layer, norm_eps=float(getattr(extractor, "eps", 0.0)), state_pool=state_pool,
            prefix_layers=int(projection.basis.shape[1]) if projection.cfg.depth == "layers" else None,
        )
        with torch.no_grad():
            if mean is not None:
                policy.state_mean.copy_(extractor.mean)
                policy.state_std.copy_(extractor.std)
            else:  # no normaliser: identity
                policy.norm_eps = 0.0
                policy.settings["norm_eps"] = 0.0
            policy.mu.load_state_dict(actor.mu.state_dict())
            policy.projection.load_state_dict(projection.state_dict())
        return policy.eval()


PAPER = "https://arxiv.org/abs/2406.11978"
"""Li, Wang, Viégas, Wattenberg: Dialogue Action Tokens (2024)."""
HUB_IDS = {"smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct"}
"""Bundled model aliases and the Hub models they are (the card's ``base_model`` must be loadable)."""


USAGE = """```python
from dat.lm.frozen import FrozenLM
from dat.lm.loading import ModelConfig
from dat.rl.export import DATPolicy

policy = DATPolicy.from_pretrained("<this folder or repo>")
lm = FrozenLM.load(ModelConfig(name=policy.base_model))
prefixes = policy.prefixes(lm.states([chat], layer=policy.state_layer, pool=policy.state_pool))
reply = lm.generate([chat], prefixes, position=policy.position)
```"""


def model_card(policy: DATPolicy, facts: dict[str, str], evaluation: str | None = None) -> str:
    """The export's README.md: a card that stands alone (what the planner steers, how it was made, how well
    it did on held-out tasks). ``facts``: name -> value lines (judge, scenarios, rounds, ...);
    ``evaluation``: the held-out evaluation table in markdown, with its intervals."""
    base = HUB_IDS.get(policy.base_model, policy.base_model)
    hub = len(base.split("/")) == 2 and not base.startswith((".", "/", "~"))
    prefix = policy.settings["prefix"]
    shape = ", ".join(f"{k}={prefix[k]}" for k in ("kind", "position", "tokens", "action_dim", "norm", "depth")
                      if k in prefix)
    model = f"`{policy.base_model}`" + (f" ([{base}](https://huggingface.co/{base}))" if hub else "")
    front = ["---", "library_name: dat-pipeline", "tags: [dialogue-action-tokens, td3-bc, steering]",
             *([f"base_model: {base}"] if hub else []), "---"]
    return "\n".join([
        *front, "", "# DAT planner", "",
        f"A Dialogue Action Tokens planner ([paper]({PAPER})): it reads the frozen chat model's state of the dialogue "
        f"so far and outputs a {policy.settings['action_dim']}-d action that becomes {prefix['tokens']} prefix "
        "token(s) steering the model's next reply. The model itself is not changed.",
        "", "## Use", "", USAGE, "", "## How it was made", "",
        f"- base model: {model}", f"- state: layer {policy.state_layer}, {policy.state_pool} pooling",
        f"- action space: {shape}", *(f"- {name}: {value}" for name, value in facts.items()),
        "", "## Held-out evaluation", "", evaluation.strip() if evaluation else "Not evaluated.", ""])
