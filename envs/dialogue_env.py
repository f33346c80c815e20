"""``DialogueEnv``: one DAT dialogue as a Gymnasium environment (registered as ``dat/Dialogue-v0``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from dat.action.projection import UpProjection
from dat.dialogue.rules import Dialogue, DialogueTask, EnvConfig, Lockstep, draw_setup
from dat.dialogue.scoring import RewardFn, default_reward, pay, score
from dat.lm.frozen import FrozenLM

__all__ = ["DialogueEnv", "EnvConfig"]


class DialogueEnv(gym.Env):
    """A goal-directed two-party dialogue in which a planner steers one agent of a frozen chat LLM.

    ## Description

    Two characters of a task (a scenario, two profiles, a private goal each) talk; both are played
    by the same frozen LM. The planner controls one of them, the *steered* agent, only through
    *dialogue action tokens*: its action is projected to ``L`` prefix embeddings that the LM reads
    before the steered agent's chat (DAT, Li et al. 2024). The partner replies without any prefix. At
    the end a judge scores the dialogue, and the steered agent's score is the reward.

    Each agent reads only its own chat: the task's view for that agent (own profile and goal; the
    partner's background as far as their relationship allows; never the partner's goal or secret),
    then the turns so far (its own as ``assistant``, the partner's as ``user``). A generation becomes
    an utterance by keeping its first non-empty line, stripped (as DAT and Sotopia do).

    ## Action Space

    ``Box(-1, 1, (d,), float32)`` with ``d = projection.cfg.planner_dim``; actions are clipped to the
    box. The up-projection maps an action to ``L = projection.cfg.tokens`` prefix embeddings placed at
    ``projection.cfg.position`` ("start": after BOS; "before_reply": before the reply header).

    ## Observation Space

    ``Box(-inf, inf, (hidden,), float32)``: the LM's hidden state (layer ``cfg.state_layer``; the last
    token's, or with ``cfg.state_pool="mean"`` the mean over the chat) of the steered agent's own chat,
    without prefix, when it is about to speak.

    ## Rewards

    By default 0 on every step except the last, which pays ``reward_fn(judgement, steered)`` (by
    default ``dat.judges.reward``: the configured Sotopia dimensions, normalised). With
    ``cfg.reward_per_turn`` the transcript so far is judged after every step and the step pays the
    change of that reward, so the step rewards still sum to the final judged reward. A failed
    judgement pays 0.0 and sets ``info["judgement_failed"] = True``: it is not a score of 0, so
    training must skip the episode (the batched collector drops it).

    ## Starting State

    ``reset`` draws a task, the steered side (``cfg.steered``) and whether the partner opens
    (``cfg.partner_opens``) from ``self.np_random``; ``options`` may fix them with ``"task"`` (a task),
    ``"task_id"``, ``"steered"`` and ``"partner_opens"``; ``"prompted": True`` restates the steered agent's goal
    before each of its turns (the prompted baseline, ``EnvConfig.goal_reminder``). When the partner opens, its
    first line is generated during ``reset``.

    ## Episode End

    *Terminated* after ``cfg.max_turns`` rounds (``2 * max_turns`` utterances; the steered agent speaks
    ``max_turns`` times) or when either agent says ``cfg.leave_phrase`` (case-insensitive). *Truncated*
    only when the next turn would not fit in the LM's context (checked with ``lm.fits`` before
    generating, reserving the prefix and ``max_new_tokens``). ``info`` holds ``transcript`` (a list of
    ``Utterance``), ``task_id``, ``steered``, ``partner_opens``, ``round`` and ``judgement_failed``;
    at the end also ``judgement`` (a dict), ``episode_reward`` and ``left_by``.

    ## Arguments

    ``DialogueEnv(lm, projection, tasks, judge, cfg=EnvConfig(), reward_fn=default_reward,
    render_mode=None)``: ``judge`` is any callable from a list of ``DialogueRecord`` to one judgement
    per record (a ``dat.judges.Judge``); ``reward_fn(judgement, steered) -> float | None`` turns one
    into the reward (None: failed). ``render_mode="ansi"`` renders the transcript as text.

    >>> env = gym.make("dat/Dialogue-v0", lm=lm, projection=proj, tasks=tasks, judge=judge)  # doctest: +SKIP
    >>> obs, info = env.reset(seed=0)                                                        # doctest: +SKIP
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 1}

    def __init__(
        self,
        lm: FrozenLM,
        projection: UpProjection,
        tasks: Sequence[DialogueTask],
        judge: Callable,
        cfg: EnvConfig | None = None,
        reward_fn: RewardFn = default_reward,
        render_mode: str | None = None,
    ):
        if not tasks:
            raise ValueError("DialogueEnv needs at least one task.")
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode={render_mode!r} is not supported; use None or 'ansi'.")
        self.lm, self.projection, self.tasks, self.judge = lm, projection, list(tasks), judge
        self.cfg = (cfg or EnvConfig()).validate()
        self.reward_fn, self.render_mode = reward_fn, render_mode
        self._lockstep = Lockstep(lm, projection, self.cfg)
        self._by_id = {t.id: t for t in self.tasks}
        self.action_space = spaces.Box(-1.0, 1.0, (projection.cfg.planner_dim,), np.float32)
        self.observation_space = spaces.Box(-np.inf, np.inf, (lm.hidden_size,), np.float32)
        self.dialogue: Dialogue | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        index, steered, opens = draw_setup(self.np_random, len(self.tasks), self.cfg)
        stream = int(self.np_random.integers(2**31))  # the dialogue's own sampling stream, as a vector env's
        task = self._task(options, index)
        steered = int(options.get("steered", steered))
        opens = bool(options.get("partner_opens", opens))
        if steered not in (0, 1):
            raise ValueError(f"options['steered']={steered!r} must be 0 or 1.")
        self.dialogue = Dialogue.open(task, steered, opens, self.cfg, seed=stream,
                                      prompted=bool(options.get("prompted", False)))
        self._lockstep.start([self.dialogue], self._seed())
        return self._observe(), self._info()

    def step(self, action):
        d = self.dialogue
        if d is None or d.done:
            raise RuntimeError("The episode has ended (or never started); call reset() first.")
        a = np.clip(np.asarray(action, dtype=np.float32).reshape(self.action_space.shape), -1.0, 1.0)
        self._lockstep.step([d], torch.from_numpy(a)[None], (self._seed(), self._seed()))
        reward, failed, verdict = 0.0, False, None
        if d.done or self.cfg.reward_per_turn:
            verdict = score(self.judge, self.reward_fn, [d])[0]
            reward, failed = pay(d, verdict), verdict.reward is None
        info = self._info(judgement_failed=failed)
        if d.done:
            info.update(judgement=verdict.judgement if verdict else None,
                        episode_reward=verdict.reward if verdict else None, left_by=d.left_by)
        return self._observe(), float(reward), d.terminated, d.truncated, info

    def render(self) -> str | None:
        if self.render_mode != "ansi" or self.dialogue is None:
            return None
        return self.dialogue.record().transcript()

    # ------------------------------------------------------------------------------ internals
    def _task(self, options: dict[str, Any], index: int) -> DialogueTask:
        if "task" in options:
            return options["task"]
        if "task_id" in options:
            if options["task_id"] not in self._by_id:
                raise ValueError(f"options['task_id']={options['task_id']!r} is not one of this env's "
                                 f"{len(self.tasks)} tasks.")
            return self._by_id[options["task_id"]]
        return self.tasks[index]

    def _seed(self) -> int:
        """A generation seed from the env's stream (so reset(seed) fixes sampled dialogues too)."""
        return int(self.np_random.integers(2**31))

    def _observe(self) -> np.ndarray:
        assert self.dialogue is not None
        return self._lockstep.observe([self.dialogue])[0].numpy().astype(np.float32)

    def _info(self, judgement_failed: bool = False) -> dict[str, Any]:
        d = self.dialogue
        assert d is not None
        return {"transcript": list(d.turns), "task_id": d.task.id, "steered": d.steered,
                "partner_opens": d.partner_opens, "round": sum(t.agent == d.steered for t in d.turns),
                "judgement_failed": judgement_failed}
