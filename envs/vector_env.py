"""``DialogueVectorEnv``: N DAT dialogues advanced in lockstep, as a Gymnasium ``VectorEnv``.

``gym.make_vec("dat/Dialogue-v0", num_envs=N, ...)`` returns it. It is what training collects
with (``dat.dialogue.rollout.collect`` is a plain loop over it) and what another RL library plugs in: one
batched ``lm.generate`` call per half-round for all sub-environments together (each steered line
with its own prefix; the partners' replies without), one batched ``lm.states`` call for the next
observations, one batched judge call for the dialogues that end in a step; each dialogue keeps
its KV caches between rounds. The rules are :class:`dat.dialogue.rules.Lockstep`'s, the same that
:class:`envs.dialogue_env.DialogueEnv` runs with a batch of one, and each dialogue samples its lines
from a stream of its own (``Dialogue.seed``, drawn from its sub-env's seed), so sub-env i after
``reset(seed=s)`` plays the dialogue ``DialogueEnv`` plays after ``reset(seed=s + i)`` with the same
actions, greedy or sampled, whatever the batch around it (``tests/test_vector_env.py``; up to the float
rounding by which a batched row differs from the same row alone, which moves a sampled token only when
the draw falls within it of a boundary).

Autoreset follows Gymnasium's modes (``metadata["autoreset_mode"]``):

* ``NEXT_STEP`` (default): the step after a sub-env's episode ended resets it (its action is
  ignored, reward 0, a fresh first observation).
* ``DISABLED``: nothing resets by itself; ``reset(options={"reset_mask": mask})`` starts new
  episodes in the masked sub-envs, and a step leaves ended sub-envs as they are (reward 0, their
  final flags). A collector that needs an exact set of episodes (``dat.dialogue.rollout``) uses this.

``reset`` seeds sub-env i with ``seed + i`` (an int) or ``seed[i]`` (a list): its task, steered
side and opener are drawn from that stream as ``DialogueEnv.reset`` draws them. ``options`` may
fix them per sub-env: ``"task_id"``, ``"task_index"``, ``"steered"``, ``"partner_opens"``, each a
value for all or a list with one entry per sub-env (None: drawn); ``"prompted"`` opens the prompted baseline's
dialogue (the steered agent's goal restated before each of its turns, ``EnvConfig.goal_reminder``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from dat.action.projection import UpProjection
from dat.dialogue.rules import Dialogue, DialogueTask, EnvConfig, Lockstep, draw_setup
from dat.dialogue.scoring import RewardFn, default_reward, pay, score
from dat.lm.frozen import FrozenLM
from dat.seeding import derive_seed

__all__ = ["DialogueVectorEnv"]

SETUP_OPTIONS = ("task_id", "task_index", "steered", "partner_opens", "prompted")
MODES = (AutoresetMode.NEXT_STEP, AutoresetMode.DISABLED)


class DialogueVectorEnv(VectorEnv):
    """``num_envs`` goal-directed dialogues of a frozen chat LLM, each steered by its own action.

    Spaces, rewards and episode ends are those of :class:`envs.dialogue_env.DialogueEnv` (its
    docstring), batched: actions ``(num_envs, d)``, observations ``(num_envs, hidden)``. ``infos``
    follow Gymnasium's vector convention (``infos[key][i]`` with the mask ``infos["_" + key]``) and
    hold, per sub-env, what ``DialogueEnv`` puts in its info; a step that ends a dialogue adds
    ``judgement``, ``episode_reward``, ``left_by`` and ``record`` (the judged ``DialogueRecord``).

    >>> envs = gym.make_vec("dat/Dialogue-v0", num_envs=8, lm=lm, projection=proj, tasks=tasks,
    ...                     judge=judge)                                               # doctest: +SKIP
    >>> obs, infos = envs.reset(seed=0)                                                # doctest: +SKIP
    >>> obs, rewards, terminated, truncated, infos = envs.step(envs.action_space.sample())  # doctest: +SKIP
    """

    metadata = {"render_modes": ["ansi"], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        lm: FrozenLM,
        projection: UpProjection | None,
        tasks: Sequence[DialogueTask],
        judge: Callable,
        num_envs: int = 1,
        cfg: EnvConfig | None = None,
        reward_fn: RewardFn = default_reward,
        render_mode: str | None = None,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
    ):
        if not tasks:
            raise ValueError("DialogueVectorEnv needs at least one task (check the scenarios you passed).")
        if num_envs < 1:
            raise ValueError(f"num_envs={num_envs} must be at least 1.")
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode={render_mode!r} is not supported; use None or 'ansi'.")
        mode = AutoresetMode(autoreset_mode)
        if mode not in MODES:
            raise ValueError(f"autoreset_mode={mode.value!r} is not supported; use NextStep or Disabled.")
        self.lm, self.projection, self.tasks, self.judge = lm, projection, list(tasks), judge
        self.cfg = (cfg or EnvConfig()).validate()
        self.reward_fn, self.render_mode, self.num_envs = reward_fn, render_mode, num_envs
        self.metadata = {**self.metadata, "autoreset_mode": mode}
        self.lockstep = Lockstep(lm, projection, self.cfg)
        self.action_dim = projection.cfg.planner_dim if projection is not None else 0
        self.single_action_space = spaces.Box(-1.0, 1.0, (self.action_dim,), np.float32)
        self.single_observation_space = spaces.Box(-np.inf, np.inf, (lm.hidden_size,), np.float32)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.dialogues: list[Dialogue | None] = [None] * num_envs
        self._rngs: list[np.random.Generator | None] = [None] * num_envs
        self._obs = np.zeros((num_envs, lm.hidden_size), np.float32)
        self._ended = np.zeros(num_envs, bool)
        self._by_id = {t.id: i for i, t in enumerate(self.tasks)}
        self._stream, self._calls = 0, 0

    # ------------------------------------------------------------------------------ Gymnasium API
    def reset(self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None):
        options = dict(options or {})
        mask = np.asarray(options.pop("reset_mask", np.ones(self.num_envs, bool)), bool)
        if mask.shape != (self.num_envs,):
            raise ValueError(f"options['reset_mask'] needs {self.num_envs} booleans; got shape {mask.shape}.")
        unknown = set(options) - set(SETUP_OPTIONS)
        if unknown:
            raise ValueError(f"Unknown reset options {sorted(unknown)}; use reset_mask, {', '.join(SETUP_OPTIONS)}.")
        seeds = self._seeds(seed)
        known = [s for s in seeds if s is not None]
        if known:  # generation streams follow the reset seeds
            self._stream, self._calls = derive_seed(*known), 0
        chosen = [i for i in range(self.num_envs) if mask[i]]
        for i in chosen:
            if seeds[i] is not None or self._rngs[i] is None:
                self._rngs[i], _ = seeding.np_random(seeds[i])
        infos: dict[str, Any] = {}
        for i, d in zip(chosen, self._open(chosen, options), strict=True):
            infos = self._add_info(infos, self._info(d), i)
        return self._obs.copy(), infos

    def step(self, actions):
        n, d = self.num_envs, self.single_action_space.shape[0]
        actions = np.clip(np.asarray(actions, dtype=np.float32).reshape(n, d), -1.0, 1.0)
        rewards = np.zeros(n, np.float64)
        infos: dict[str, Any] = {}
        autoreset = self.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
        restart = [i for i in range(n) if autoreset and self._ended[i]]
        live = [i for i in range(n) if self.dialogues[i] is not None and not self._ended[i]]
        if all(x is None for x in self.dialogues):
            raise RuntimeError("Call reset() before step().")
        batch = [self.dialogues[i] for i in live]
        if batch:
            steer = None if self.projection is None else torch.from_numpy(actions[live, : self.action_dim])
            self.lockstep.step(batch, steer, (self._seed("steered"), self._seed("partner")))
        judged = [i for i in live if self.dialogues[i].done or self.cfg.reward_per_turn]
        verdicts = dict(zip(judged, score(self.judge, self.reward_fn, [self.dialogues[i] for i in judged]),
                            strict=True))
        if batch:
            self._obs[live] = self.lockstep.observe(batch).numpy()
        for i in live:
            dialogue, verdict = self.dialogues[i], verdicts.get(i)
            info = self._info(dialogue, judgement_failed=verdict is not None and verdict.reward is None)
            if verdict is not None:
                rewards[i] = pay(dialogue, verdict)
            if dialogue.done:
                self._ended[i] = True
                info.update(judgement=verdict.judgement, episode_reward=verdict.reward, left_by=dialogue.left_by,
                            record=dialogue.record())
            infos = self._add_info(infos, info, i)
        for i, dialogue in zip(restart, self._open(restart, {}), strict=True):
            infos = self._add_info(infos, self._info(dialogue), i)
        terminated = np.array([bool(x is not None and x.terminated) and i not in restart
                               for i, x in enumerate(self.dialogues)])
        truncated = np.array([bool(x is not None and x.truncated) and i not in restart
                              for i, x in enumerate(self.dialogues)])
        return self._obs.copy(), rewards, terminated, truncated, infos

    def render(self) -> list[str] | None:
        if self.render_mode != "ansi":
            return None
        return [d.record().transcript() if d is not None else "" for d in self.dialogues]

    # ------------------------------------------------------------------------------ internals
    @property
    def counts(self) -> dict[str, float]:
        """LM calls, utterances, generated tokens and LM seconds so far (``Lockstep.counts``)."""
        return self.lockstep.counts

    def _seeds(self, seed) -> list[int | None]:
        if seed is None:
            return [None] * self.num_envs
        if isinstance(seed, (int, np.integer)):
            return [int(seed) + i for i in range(self.num_envs)]
        seeds = list(seed)
        if len(seeds) != self.num_envs:
            raise ValueError(f"reset(seed=...) got {len(seeds)} seeds for {self.num_envs} sub-envs.")
        return seeds

    def _open(self, envs: Sequence[int], options: dict[str, Any]) -> list[Dialogue]:
        """New dialogues in sub-envs ``envs`` (setups drawn from their streams), opened in one LM call."""
        opened = []
        for i in envs:
            index, steered, opens = draw_setup(self._rngs[i], len(self.tasks), self.cfg)
            stream = int(self._rngs[i].integers(2**31))  # the dialogue's own sampling stream
            fixed = {k: self._option(options, k, i) for k in SETUP_OPTIONS}
            if fixed["task_id"] is not None:
                if fixed["task_id"] not in self._by_id:
                    raise ValueError(f"options['task_id']={fixed['task_id']!r} is not one of this env's "
                                     f"{len(self.tasks)} tasks.")
                index = self._by_id[fixed["task_id"]]
            if fixed["task_index"] is not None:
                index = int(fixed["task_index"])
                if not 0 <= index < len(self.tasks):
                    raise ValueError(f"options['task_index']={index} is outside 0..{len(self.tasks) - 1}.")
            steered = steered if fixed["steered"] is None else int(fixed["steered"])
            if steered not in (0, 1):
                raise ValueError(f"options['steered']={steered!r} must be 0 or 1.")
            opens = opens if fixed["partner_opens"] is None else bool(fixed["partner_opens"])
            self.dialogues[i] = Dialogue.open(self.tasks[index], steered, opens, self.cfg, seed=stream,
                                              prompted=bool(fixed["prompted"]))
            self._ended[i] = False
            opened.append(self.dialogues[i])
        if opened:
            self.lockstep.start(opened, self._seed("open"))
            self._obs[list(envs)] = self.lockstep.observe(opened).numpy()
        return opened

    def _option(self, options: dict[str, Any], key: str, env: int):
        value = options.get(key)
        if isinstance(value, (list, tuple, np.ndarray)):
            if len(value) != self.num_envs:
                raise ValueError(f"options[{key!r}] has {len(value)} entries for {self.num_envs} sub-envs.")
            return value[env]
        return value

    def _seed(self, purpose: str) -> int:
        """A seed for one batched generation call: the reset seed's stream, the call's index and purpose."""
        self._calls += 1
        return derive_seed(self._stream, "generate", self._calls, purpose)

    def _add_info(self, infos: dict[str, Any], info: dict[str, Any], env: int) -> dict[str, Any]:
        """Gymnasium's vector layout (``infos[key][env]``, mask ``infos["_" + key]``); a judgement dict stays
        whole (one object per sub-env) instead of being split by key."""
        for key, value in info.items():
            if key not in infos:
                typed = type(value) in (bool, int) and key not in ("left_by",)
                infos[key] = np.zeros(self.num_envs, type(value)) if typed else np.full(self.num_envs, None, object)
                infos[f"_{key}"] = np.zeros(self.num_envs, bool)
            infos[key][env] = value
            infos[f"_{key}"][env] = True
        return infos

    @staticmethod
    def _info(d: Dialogue, judgement_failed: bool = False) -> dict[str, Any]:
        return {"transcript": list(d.turns), "task_id": d.task.id, "steered": d.steered,
                "partner_opens": d.partner_opens, "round": sum(t.agent == d.steered for t in d.turns),
                "judgement_failed": judgement_failed}


def collector_envs(lm: FrozenLM, projection: UpProjection | None, tasks: Sequence[DialogueTask], judge: Callable,
                   cfg: EnvConfig, reward_fn: RewardFn = default_reward, episodes: int = 1,
                   batch_size: int | None = None) -> DialogueVectorEnv:
    """The vector env ``dat.dialogue.rollout.collect`` plays on: ``batch_size`` dialogues in lockstep (default: all
    ``episodes`` of a call at once), autoreset disabled, made through ``gym.make_vec("dat/Dialogue-v0")``."""
    import gymnasium as gym

    import envs  # noqa: F401  (registers dat/Dialogue-v0)

    return gym.make_vec("dat/Dialogue-v0", num_envs=max(1, min(batch_size or episodes, episodes)), lm=lm,
                        projection=projection, tasks=tasks, judge=judge, cfg=cfg, reward_fn=reward_fn,
                        autoreset_mode=AutoresetMode.DISABLED)
