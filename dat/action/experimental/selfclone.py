"""Self-cloning (DAT stage 1): learn the up-projection so the frozen LM reads the prefix.

A planner head (MLP: state -> action in [-1, 1]^d) and a learned ``UpProjection`` are trained
together so that the frozen LM, given ``projection(planner(state))`` as prefix, reproduces replies
the model itself sampled: cross-entropy on the reply tokens only, gradients through the frozen LM,
whose weights never change (checked before and after).

What the planner sees decides what an action *means*:

* ``state="dialogue"``: the prompt's last token, as at RL time. The targets are samples of the
  unsteered model, so no prefix is already optimal in expectation; the best the planner can learn
  is one constant, and actions away from it are never trained to mean anything.
* ``state="dialogue+target"`` (DAT's code): the state is read at the EOS after the target reply, so
  the action becomes a d-dimensional code of that reply and the projection a decoder of codes into
  replies the model would give. Different actions then mean different replies, which is what an RL
  planner needs. Noise on the action during training makes neighbouring actions mean similar replies.

Training is resumable: a checkpoint (planner, projection, optimiser, step) is written atomically
to the output folder every ``checkpoint_every`` steps, and re-running continues from it. The chats it
clones on are built by the env's own rules (``dat.dialogue.openings``), so the cloning prompts look
exactly like the prompts the planner acts on later.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from tqdm.auto import tqdm

from dat.action import artefact
from dat.action.projection import PrefixConfig, UpProjection, build_projection
from dat.atomic import atomic_path, atomic_write
from dat.lm.frozen import FrozenLM, SamplingConfig
from dat.lm.promptcache import PromptCache
from dat.seeding import derive_seed

__all__ = ["Planner", "SelfCloneConfig", "SelfCloner", "ensure_projection", "projection_folder"]
STATES = ("dialogue", "dialogue+target")
RUN_FIELDS = ("steps", "checkpoint_every", "time_limit_min", "name")  # may change between resumed runs


@dataclass
class SelfCloneConfig:
    """How the learned up-projection (prefix.kind=learned) is trained."""

    state: str = "dialogue+target"
    """What the planner reads: dialogue (prompt only, as in RL) or dialogue+target (+ reply, DAT's code)."""
    steps: int = 300
    """Optimiser steps."""
    batch_size: int = 8
    """(dialogue, reply) pairs per step."""
    lr: float = 3e-3
    """Adam learning rate of the planner head."""
    projection_lr: float = 1e-2
    """Adam learning rate of the up-projection."""
    hidden_sizes: list[int] = field(default_factory=lambda: [256, 256])
    """Hidden layer widths of the planner MLP."""
    max_grad_norm: float = 1.0
    """Clip the global gradient norm to this value."""
    action_noise: float = 0.1
    """Std of Gaussian noise added to the action in training (then clipped to [-1, 1])."""
    code_prior: float = 0.0
    """Weight pulling the mean and covariance of all codes to those of uniform random actions (0, I/3)."""
    dialogues: int = 96
    """Use at most this many of the given dialogues (a seeded random subset when there are more)."""
    replies_per_dialogue: int = 2
    """Sampled replies per dialogue (the cloning targets)."""
    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(max_new_tokens=32))
    """How target replies are sampled from the unsteered model."""
    depth: float = 1.0
    """Relative depth of the hidden layer the state is read from: 1.0 = the last (as DAT), 0.5 = the middle."""
    pool: str = "last"
    """dialogue+target only: read the state at the EOS (last, DAT's code) or average the reply's tokens (mean)."""
    seed: int = 0
    """Seed of data sampling, initialisation, batch order and action noise."""
    name: str = "target"
    """Folder name of the trained projection under <model artefacts>/projections/ (reused when complete)."""
    checkpoint_every: int = 20
    """Write the resumable checkpoint every this many steps."""
    time_limit_min: float | None = None
    """Stop (and save) after this many minutes even if steps remain; None: no limit."""


Chat = Sequence[Mapping[str, str]]


@dataclass
class CloneData:
    """Cloning targets: reply ``i`` was sampled for dialogue ``index[i]``; ``ended[i]``: it ended with EOS."""

    dialogues: list[list[dict]]
    index: list[int]
    replies: list[str]
    ended: list[bool]


def sample_targets(cache: PromptCache, cfg: SelfCloneConfig, rows_per_call: int = 32) -> CloneData:
    """``replies_per_dialogue`` sampled replies per cached dialogue (replies without letters dropped)."""
    wanted = [i for i in range(len(cache)) for _ in range(cfg.replies_per_dialogue)]
    data = CloneData([], [], [], [])
    for start in tqdm(range(0, len(wanted), rows_per_call), desc="self-clone targets", leave=False):
        chunk = wanted[start : start + rows_per_call]
        out = cache.generate(chunk, None, cfg.sampling, seed=derive_seed(cfg.seed, "selfclone-targets", start))
        lengths = [len(t) for t in cache.targets(out, add_end=False)]
        for i, reply, n in zip(chunk, out, lengths, strict=True):
            if any(c.isalpha() for c in reply):
                data.index.append(i)
                data.replies.append(reply)
                data.ended.append(n < cfg.sampling.max_new_tokens)
    return data


class Planner(nn.Module):
    """MLP from a standardised LM state to an action in [-1, 1]^d (tanh)."""

    def __init__(self, state_dim: int, action_dim: int, hidden_sizes: Sequence[int] = (256, 256)):
        super().__init__()
        self.register_buffer("state_mean", torch.zeros(state_dim))
        self.register_buffer("state_std", torch.ones(state_dim))
        layers: list[nn.Module] = []
        width = state_dim
        for h in hidden_sizes:
            layers += [nn.Linear(width, h), nn.SiLU()]
            width = h
        layers.append(nn.Linear(width, action_dim))
        self.net = nn.Sequential(*layers)
        self.shape = {"state_dim": state_dim, "action_dim": action_dim, "hidden_sizes": list(hidden_sizes)}

    def fit_normaliser(self, states: Tensor) -> None:
        self.state_mean.copy_(states.mean(0))
        self.state_std.copy_(states.std(0).clamp(min=1e-3))

    def forward(self, states: Tensor) -> Tensor:
        return torch.tanh(self.net((states - self.state_mean) / self.state_std))

    def save(self, folder: str | Path, record: dict | None = None) -> Path:
        """Write ``planner.safetensors`` + ``planner.json`` (shape and how it was trained)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / "planner.safetensors") as tmp:
            save_file({k: v.detach().contiguous() for k, v in self.state_dict().items()}, str(tmp))
        _write_json(folder / "planner.json", {**self.shape, "record": record or {}})
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> Planner:
        meta = json.loads((Path(folder) / "planner.json").read_text())
        planner = cls(meta["state_dim"], meta["action_dim"], meta["hidden_sizes"])
        planner.load_state_dict(load_file(str(Path(folder) / "planner.safetensors")))
        return planner


def _write_json(path: Path, data: dict) -> None:
    atomic_write(path, json.dumps(data, indent=2))


def _lm_checksum(lm: FrozenLM) -> float:
    return float(sum(p.detach().double().sum() for p in lm.model.parameters()))


class SelfCloner:
    """Trains a planner head and a learned up-projection by self-cloning through a frozen LM.

    >>> cloner = SelfCloner(lm, dialogues, PrefixConfig(kind="learned", position="before_reply"),
    ...                     SelfCloneConfig(), "out/projection")              # doctest: +SKIP
    >>> record = cloner.train()                                              # doctest: +SKIP
    """

    def __init__(self, lm: FrozenLM, dialogues: Sequence[Chat], prefix: PrefixConfig, cfg: SelfCloneConfig,
                 folder: str | Path, cache_folder: Path | None = None):
        if prefix.kind != "learned":
            raise ValueError(f"Self-cloning trains a learned up-projection; got prefix.kind={prefix.kind!r}.")
        if cfg.state not in STATES:
            raise ValueError(f"selfclone.state={cfg.state!r} is not one of {STATES}.")
        if not 0.0 < cfg.depth <= 1.0:
            raise ValueError(f"selfclone.depth={cfg.depth} must be in (0, 1] (1.0 = the last layer).")
        if cfg.pool not in ("last", "mean"):
            raise ValueError(f"selfclone.pool={cfg.pool!r} is not one of: last, mean.")
        self.lm, self.prefix, self.cfg, self.folder = lm, prefix, cfg, Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.data = self._data(dialogues)
        self.dialogues = self.data.dialogues
        embedding = lm.model.get_input_embeddings().weight
        torch.manual_seed(derive_seed(cfg.seed, "selfclone-init"))
        self.projection = build_projection(embedding, PrefixConfig(**{**asdict(prefix), "path": None}), cache_folder)
        replies = self.data.replies if cfg.state != "dialogue" else None
        self.layer = round(cfg.depth * lm.model.config.num_hidden_layers)  # index into hidden_states (0: embeddings)
        self.states = self.cache.states(self.data.index, replies, layer=self.layer, pool=cfg.pool)
        self.planner = Planner(lm.hidden_size, prefix.action_dim, cfg.hidden_sizes)
        self.planner.fit_normaliser(self.states)
        self.optimizer = torch.optim.Adam([{"params": self.planner.net.parameters(), "lr": cfg.lr},
                                           {"params": self.projection.parameters(), "lr": cfg.projection_lr}])

    # ------------------------------------------------------------------------------------ data
    def _data(self, dialogues: Sequence[Chat]) -> CloneData:
        """Cloning targets, sampled once and kept in ``data.json``.

        A resumed run trains on the stored pairs (and their dialogues) whatever dialogues it is
        given, so resuming never depends on regenerating the same chats.
        """
        path = self.folder / "data.json"
        if path.is_file():
            data = CloneData(**json.loads(path.read_text()))
            self.cache = PromptCache(self.lm, data.dialogues)
            return data
        if not dialogues:
            raise ValueError("Self-cloning needs at least one dialogue.")
        chosen = np.random.default_rng(derive_seed(self.cfg.seed, "selfclone-dialogues")).permutation(len(dialogues))
        picked = [[dict(m) for m in dialogues[i]] for i in sorted(chosen[: self.cfg.dialogues].tolist())]
        self.cache = PromptCache(self.lm, picked)
        data = sample_targets(self.cache, self.cfg)
        data.dialogues = picked
        _write_json(path, asdict(data))
        return data

    # ------------------------------------------------------------------------------------ loss
    def loss(self, rows: Sequence[int], noise: float = 0.0, generator: torch.Generator | None = None,
             prefixed: bool = True) -> tuple[Tensor, Tensor]:
        """Summed NLL and token count of pairs ``rows`` (the cloning loss; no prefix if not ``prefixed``)."""
        index = [self.data.index[r] for r in rows]
        replies = [self.data.replies[r] for r in rows]
        ended = [self.data.ended[r] for r in rows]
        prefixes = None
        if prefixed:
            actions = self.planner(self.states[list(rows)])
            if noise > 0:
                jitter = torch.randn(actions.shape, generator=generator) * noise
                actions = (actions + jitter).clamp(-1.0, 1.0)
            prefixes = list(self.projection(actions))
        if self.prefix.position == "before_reply":
            total, count = self.cache.reply_logprobs(index, replies, prefixes, add_end=ended)
            return -total.sum(), count.sum()
        nll, tokens = torch.zeros(()), torch.zeros(())
        for end in (True, False):  # FrozenLM takes one add_end per call
            part = [j for j, e in enumerate(ended) if e == end]
            if part:
                total, count = self.lm.reply_logprobs(
                    [self.dialogues[index[j]] for j in part], [replies[j] for j in part],
                    None if prefixes is None else [prefixes[j] for j in part], self.prefix.position, add_end=end)
                nll, tokens = nll - total.sum(), tokens + count.sum()
        return nll, tokens

    def prior_gap(self) -> Tensor:
        """How far the codes of all pairs are from uniform random actions, in mean and covariance.

        Without it the planner's codes crowd into a few directions (saturated and correlated), and
        the projection learns to read only those: a random action from the RL's action box then
        barely moves the LM. Matching the first two moments of U[-1, 1]^d makes random actions look
        like codes. The planner is cheap, so this is computed over every pair at each step.
        """
        codes = self.planner(self.states)
        centred = codes - codes.mean(0)
        cov = centred.T @ centred / (codes.shape[0] - 1)
        target = torch.eye(codes.shape[1]) / 3.0
        return (codes.mean(0) ** 2).sum() + ((cov - target) ** 2).sum() / codes.shape[1]

    def evaluate(self, rows: Sequence[int], prefixed: bool = True) -> float:
        """Mean NLL per reply token over ``rows`` (planner actions without noise)."""
        nll, count = 0.0, 0.0
        with torch.no_grad():
            for s in range(0, len(rows), self.cfg.batch_size):
                a, b = self.loss(rows[s : s + self.cfg.batch_size], prefixed=prefixed)
                nll, count = nll + float(a), count + float(b)
        return nll / max(count, 1.0)

    # ------------------------------------------------------------------------------------ training
    def _order(self, step: int) -> list[int]:
        n = len(self.data.replies)
        per_epoch = max(1, n // self.cfg.batch_size)
        epoch, offset = divmod(step, per_epoch)
        perm = np.random.default_rng(derive_seed(self.cfg.seed, "selfclone-order", epoch)).permutation(n)
        return perm[offset * self.cfg.batch_size : (offset + 1) * self.cfg.batch_size].tolist()

    def _fingerprint(self) -> dict:
        keep = {k: v for k, v in asdict(self.cfg).items() if k not in RUN_FIELDS}
        return {"selfclone": keep, "prefix": {k: v for k, v in asdict(self.prefix).items() if k != "path"}}

    def _checkpoint(self, step: int, history: list[float], seconds: float) -> None:
        with atomic_path(self.folder / "checkpoint.pt") as tmp:
            torch.save({"step": step, "history": history, "seconds": seconds, "config": self._fingerprint(),
                        "planner": self.planner.state_dict(), "projection": self.projection.state_dict(),
                        "optimizer": self.optimizer.state_dict()}, tmp)

    def _resume(self) -> tuple[int, list[float], float]:
        path = self.folder / "checkpoint.pt"
        if not path.is_file():
            return 0, [], 0.0
        state = torch.load(path, weights_only=False)
        if state["config"] != self._fingerprint():
            raise ValueError(
                f"{path} was written with another self-cloning config; delete the folder "
                "or choose another output folder."
            )
        self.planner.load_state_dict(state["planner"])
        self.projection.load_state_dict(state["projection"])
        self.optimizer.load_state_dict(state["optimizer"])
        return int(state["step"]), list(state["history"]), float(state.get("seconds", 0.0))

    def train(self, progress: bool = True, on_step: Callable[[int, float], None] | None = None) -> dict:
        """Run (or resume) training; save projection and planner; return the training record."""
        cfg, started = self.cfg, time.time()
        checksum = _lm_checksum(self.lm)
        assert not any(p.requires_grad for p in self.lm.model.parameters()), "the LM must stay frozen"
        probe = list(range(min(len(self.data.replies), 4 * cfg.batch_size)))
        step, history, before = self._resume()
        elapsed = lambda: before + time.time() - started  # noqa: E731
        record_path = self.folder / "baseline.json"
        if record_path.is_file():
            baseline = json.loads(record_path.read_text())
        else:
            baseline = {"loss_unsteered": self.evaluate(probe, prefixed=False), "loss_init": self.evaluate(probe)}
            _write_json(record_path, baseline)
        bar = tqdm(total=cfg.steps, initial=step, desc="self-clone", disable=not progress)
        while step < cfg.steps:
            if cfg.time_limit_min is not None and time.time() - started > 60 * cfg.time_limit_min:
                break
            generator = torch.Generator().manual_seed(derive_seed(cfg.seed, "selfclone-noise", step))
            nll, count = self.loss(self._order(step), cfg.action_noise, generator)
            loss = nll / count
            if cfg.code_prior > 0:
                loss = loss + cfg.code_prior * self.prior_gap()
            self.optimizer.zero_grad()
            loss.backward()
            params = list(self.planner.parameters()) + list(self.projection.parameters())
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            self.optimizer.step()
            step += 1
            history.append(float((nll / count).detach()))  # the cloning loss alone
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(history[-10:]):.3f}")
            if on_step is not None:
                on_step(step, history[-1])
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                self._checkpoint(step, history, elapsed())
        bar.close()
        self._checkpoint(step, history, elapsed())
        if _lm_checksum(self.lm) != checksum:
            raise RuntimeError("The frozen LM's weights changed during self-cloning.")
        with torch.no_grad():
            actions = self.planner(self.states)
        record = {
            "settings": settings(cfg, self.prefix),
            "model": self.lm.name, "selfclone": asdict(cfg), "prefix": asdict(self.prefix),
            "dialogues": len(self.data.dialogues), "pairs": len(self.data.replies), "steps": step, **baseline,
            "loss_final": self.evaluate(probe), "loss_last10": float(np.mean(history[-10:] or [0.0])),
            "action_abs_mean": float(actions.abs().mean()), "action_spread": float(actions.std(0).mean()),
            "code_prior_gap": float(self.prior_gap().detach()),
            "minutes": round(elapsed() / 60, 2), "complete": step >= cfg.steps,
        }
        self.projection.save(self.folder, record=record)
        self.planner.save(self.folder, record={"state": cfg.state, "layer": self.layer, "model": self.lm.name})
        return record


def settings(cfg: SelfCloneConfig, prefix: PrefixConfig) -> dict:
    """The settings a trained projection depends on (not run length, paths or the RL-time scale): its
    fingerprint in the stage-1 record (``dat.action.artefact``)."""
    out = {f"selfclone.{k}": v for k, v in asdict(cfg).items() if k not in RUN_FIELDS}
    out.update({f"prefix.{k}": v for k, v in asdict(prefix).items() if k not in ("path", "norm")})
    return out


def projection_folder(artefacts: str | Path, cfg: SelfCloneConfig) -> Path:
    """Where the projection trained with ``cfg`` is cached: ``<model artefacts>/projections/<name>``."""
    return Path(artefacts) / "projections" / cfg.name


def ensure_projection(lm: FrozenLM, dialogues: Sequence[Chat] | Callable[[], Sequence[Chat]], prefix: PrefixConfig,
                      cfg: SelfCloneConfig, artefacts: str | Path, progress: bool = True) -> UpProjection:
    """The learned projection for ``cfg``: loaded when a complete one is cached, else trained (or resumed).

    ``artefacts`` is ``dat.lm.loading.artefact_folder(model_cfg)``; the PCA basis that initialises the
    projection is cached there too. ``dialogues`` may be a callable, called only when training is
    needed (building first-turn chats costs generation).
    """
    folder = projection_folder(artefacts, cfg)
    if artefact.reusable(folder, settings(cfg, prefix), "self-cloned projection", "selfclone.name") \
            and artefact.record_of(folder).get("steps", 0) >= cfg.steps:  # more steps asked: training resumes
        return UpProjection.load(folder, position=prefix.position)
    stored = (folder / "data.json").is_file()  # a resumed run reuses its stored dialogues
    chats = [] if stored else dialogues() if callable(dialogues) else dialogues
    SelfCloner(lm, chats, prefix, cfg, folder, cache_folder=Path(artefacts)).train(progress=progress)
    return UpProjection.load(folder, position=prefix.position)
