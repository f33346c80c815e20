"""The rules of one DAT dialogue, shared by the Gymnasium env and the batched runner so they cannot drift.

Who sees what. Each agent reads its own chat: ``system`` = the task's view for that agent (its own
profile and goal, the partner's background as the relationship allows, never the partner's goal or
secret), then the turns so far, its own as ``assistant`` and the partner's as ``user``. The agent that
opens the dialogue first reads a short ``user`` cue (``EnvConfig.opening_cue``), so every chat starts
with a user message and alternates, as strict chat templates require.

One round is one steered utterance and (unless the dialogue ended) one partner reply; an episode
has at most ``max_turns`` rounds, i.e. ``2 * max_turns`` utterances, and the steered agent always
speaks ``max_turns`` times if nobody leaves (when the partner opens, its opening line is the first
of the ``2 * max_turns`` utterances and the steered agent has the last word, as in DAT).

Scripted partner lines. A task may fix some of the partner's lines in advance (``Dialogue.scripted``):
its opening line (``task.opening_line(steered)``, e.g. a probe set's topic) and, with ``EnvConfig.probe``,
its last line, the task's probe question (``task.probe_question(steered)``), which the steered agent
answers with the episode's last utterance (``judge=probe`` scores that answer). A scripted line is
used as it is, in place of a generated one; everything else follows the same rules.

A generation becomes an utterance by keeping its first non-empty line, stripped (DAT and Sotopia
keep the first line: small models tend to continue with the partner's lines or stage directions).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from dat.action.projection import UpProjection
from dat.lm.frozen import ContextOverflowError, FrozenLM, SamplingConfig
from dat.lm.kvcache import Cached
from dat.records import DialogueRecord, Utterance, clean_utterance
from dat.seeding import derive_seed


class DialogueTask(Protocol):
    """What the env and the runner need from a task (``envs.scenarios.Task`` is one)."""

    id: str

    def agent_view(self, i: int, leave_phrase: str | None = ..., wording: str = ...) -> str: ...

    def record(self, turns: Iterable[Utterance], steered: int) -> DialogueRecord: ...


STATE_POOLS = ("last", "mean")
SYSTEM_WORDINGS = ("sheet", "sotopia")
"""How a task words an agent's system text (``EnvConfig.system_wording``): "sheet", labelled lines (scenario,
participants, background, goal, one instruction); "sotopia", the same facts as a second-person brief in the style
of Sotopia's agent prompt (imagine you are..., a private goal, stay in character, natural, no repeats)."""


@dataclass
class EnvConfig:
    """The dialogue rules: episode length, who is steered, who opens, how utterances are decoded."""

    max_turns: int = 2
    """Rounds per episode (one steered utterance + one partner reply each); DAT uses 3 (experiment=dat_paper).
    Two keep the default run inside 20 minutes on 2 CPU cores."""
    leave_phrase: str = "left the conversation"
    """Saying this (case-insensitive substring) ends the episode; agents are told about it."""
    reward_per_turn: bool = False
    """Judge after every step and pay the change in reward (False: one terminal reward, as DAT)."""
    steered: Any = "random"
    """Which agent the planner steers: "random" (drawn per episode), 0 or 1."""
    partner_opens: Any = "random"
    """Whether the partner speaks first: "random" (drawn per episode), true or false."""
    opening_cue: str = "Hello! Please start."
    """User message the opening agent reads before its first line; "" leaves it out. A plain greeting: a stage
    direction such as "(The conversation starts. You speak first.)" is what a small model repeats instead of
    speaking in character (docs/results/prompt-formats.md)."""
    system_wording: str = "sheet"
    """How each agent's system text is worded, one of ``SYSTEM_WORDINGS`` (the facts are the same in each;
    docs/results/prompt-formats.md compares them)."""
    goal_reminder: str = "(Remember your goal: {goal})"
    """How the prompted baseline restates the steered agent's goal (``{goal}``: the goal as that agent reads it in
    its system text): appended to every user message of its chat, so it reads the goal again before each of its
    turns. Only dialogues opened as prompted use it (an evaluation condition), never training's."""
    probe: bool = False
    """End every episode with the task's probe question as the partner's last line, answered by the steered
    agent's last utterance (probe sets such as ``probes``; ``judge=probe`` scores the answer). Needs
    partner_opens=true, so that the steered agent has the last word."""
    state_layer: int = -1
    """Hidden layer whose vector is the RL state (-1: the last, as DAT)."""
    state_pool: str = "last"
    """How that layer's vectors become the state: "last" (the last token, as DAT) or "mean" (the mean over
    every token of the steered agent's chat), read from the key/value cache's pass like the last token's."""
    kv_cache: bool = True
    """Keep each agent's keys/values between turns so a call reads only the new tokens (same results,
    less compute; a prefix at ``start`` still makes the steered line re-read its whole chat)."""
    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(max_new_tokens=32))
    """Decoding of every utterance (both agents); do_sample=false for greedy. 32 tokens hold a short
    first line, which is all an utterance keeps."""

    def validate(self) -> EnvConfig:
        """Raise a ValueError naming the field when a setting is unusable."""
        if not isinstance(self.max_turns, int) or self.max_turns < 1:
            raise ValueError(f"env.max_turns={self.max_turns!r} must be a positive integer (rounds).")
        if self.steered not in ("random", 0, 1) or isinstance(self.steered, bool):
            raise ValueError(f"env.steered={self.steered!r} must be 'random', 0 or 1.")
        if self.partner_opens != "random" and not isinstance(self.partner_opens, bool):
            raise ValueError(f"env.partner_opens={self.partner_opens!r} must be 'random', true or false.")
        if not self.leave_phrase.strip():
            raise ValueError("env.leave_phrase is empty; give the phrase that ends a dialogue.")
        self.sampling.validate("env.sampling")
        if self.probe and self.partner_opens is not True:
            raise ValueError(f"env.probe=true needs env.partner_opens=true (got {self.partner_opens!r}): the probe "
                             "question is the partner's last line, and the steered agent must answer it.")
        if self.system_wording not in SYSTEM_WORDINGS:
            raise ValueError(f"env.system_wording={self.system_wording!r} must be one of {', '.join(SYSTEM_WORDINGS)}.")
        if self.state_pool not in STATE_POOLS:
            raise ValueError(f"env.state_pool={self.state_pool!r} must be one of {', '.join(STATE_POOLS)}.")
        if "{goal}" not in self.goal_reminder:
            raise ValueError(f"env.goal_reminder={self.goal_reminder!r} must hold {{goal}}, where the goal goes.")
        return self


def says_leave(text: str, phrase: str) -> bool:
    return phrase.strip().lower() in text.lower()


def agent_messages(system: str, turns: Sequence[Utterance], agent: int, opening_cue: str = "",
                   reminder: str = "") -> list[dict]:
    """Agent ``agent``'s chat: its system text, the opening cue if it opens, then the turns; a ``reminder``
    closes every user message (each precedes one of the agent's turns), so the chat only ever grows at its end."""
    messages = [{"role": "system", "content": system}]
    if opening_cue and (not turns or turns[0].agent == agent):
        messages.append({"role": "user", "content": opening_cue})
    messages += [{"role": "assistant" if t.agent == agent else "user", "content": t.text} for t in turns]
    if reminder:
        messages = [{**m, "content": f"{m['content']}\n\n{reminder}"} if m["role"] == "user" else m for m in messages]
    return messages


def draw_setup(rng: np.random.Generator, n_tasks: int, cfg: EnvConfig) -> tuple[int, int, bool]:
    """(task index, steered side, partner opens) for one episode; always three draws, in this order."""
    index = int(rng.integers(n_tasks))
    side = int(rng.integers(2))
    opens = bool(rng.integers(2))
    steered = side if cfg.steered == "random" else int(cfg.steered)
    partner_opens = opens if cfg.partner_opens == "random" else bool(cfg.partner_opens)
    return index, steered, partner_opens


@dataclass
class Dialogue:
    """One running dialogue: its task, sides, turns so far, and how it ended."""

    task: DialogueTask
    steered: int
    partner_opens: bool
    systems: tuple[str, str]
    opening_cue: str = ""
    turns: list[Utterance] = field(default_factory=list)
    terminated: bool = False
    truncated: bool = False
    left_by: int | None = None
    state: Tensor | None = None
    """The latest observation (kept so a dialogue too long to encode repeats its last state)."""
    paid: float = 0.0
    """Reward paid so far (per-turn rewards pay the change of the judged reward)."""
    caches: dict[int, Cached] = field(default_factory=dict, repr=False, compare=False)
    """Per agent: keys and values of its chat as last read (the partner's dropped when the dialogue ends, the
    steered agent's once its final state is read)."""
    scripted: dict[int, str] = field(default_factory=dict)
    """Partner lines fixed in advance, by their index in ``turns`` (an opening topic, a probe question)."""
    seed: int | None = None
    """The dialogue's own sampling stream: its line number ``k`` is drawn with ``derive_seed(seed, "line", k)``
    alone, so the dialogue is the same in any batch. None: its lines draw from the batched call's seed."""
    reminder: str = ""
    """The steered agent's goal restated after every user message of its chat (the prompted baseline,
    ``EnvConfig.goal_reminder``); "" for every other dialogue."""

    @classmethod
    def open(cls, task: DialogueTask, steered: int, partner_opens: bool, cfg: EnvConfig,
             seed: int | None = None, prompted: bool = False) -> Dialogue:
        systems = tuple(task.agent_view(i, leave_phrase=cfg.leave_phrase, wording=cfg.system_wording) for i in (0, 1))
        reminder = cfg.goal_reminder.format(goal=task.record([], steered).goals[steered]) if prompted else ""
        return cls(task, steered, partner_opens, systems, cfg.opening_cue,
                   scripted=script(task, steered, partner_opens, cfg), seed=seed, reminder=reminder)

    def line_seed(self) -> int | None:
        """The seed of the line this dialogue generates next (None without a stream of its own)."""
        return None if self.seed is None else derive_seed(self.seed, "line", len(self.turns))

    @property
    def partner(self) -> int:
        return 1 - self.steered

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated

    def view(self, agent: int) -> list[dict]:
        return agent_messages(self.systems[agent], self.turns, agent, self.opening_cue,
                              self.reminder if agent == self.steered else "")

    def record(self) -> DialogueRecord:
        return self.task.record(list(self.turns), self.steered)

    def cache(self, agent: int) -> Cached:
        return self.caches.setdefault(agent, Cached())


def script(task: DialogueTask, steered: int, partner_opens: bool, cfg: EnvConfig) -> dict[int, str]:
    """The partner lines ``task`` fixes for a dialogue (see the module docstring), by index in the turns."""
    lines: dict[int, str] = {}
    opening = getattr(task, "opening_line", None)
    if partner_opens and opening is not None:
        lines[0] = opening(steered)
    if cfg.probe:
        question = getattr(task, "probe_question", None)
        if question is None:
            raise ValueError(f"env.probe=true needs tasks with a probe question (a probe set such as 'probes'); "
                             f"task {task.id!r} has none.")
        lines[2 * cfg.max_turns - 2] = question(steered)
    return lines


class Lockstep:
    """Advances a batch of dialogues together: one batched LM call per half-round.

    The env is this with a batch of one, so env and runner share every rule.
    """

    def __init__(self, lm: FrozenLM, projection: UpProjection | None, cfg: EnvConfig):
        self.lm, self.projection, self.cfg = lm, projection, cfg.validate()
        # The prefix budget is reserved even for unsteered runs, so every condition truncates alike.
        self.prefix_tokens = projection.cfg.tokens if projection is not None else 0
        self.position = projection.cfg.position if projection is not None else "start"
        self.counts: dict[str, float] = {"generate_calls": 0, "states_calls": 0, "generated_tokens": 0,
                                         "utterances": 0, "states_seconds": 0.0, "generate_seconds": 0.0,
                                         "kv_store_reused_tokens": 0}
        """LM calls, utterances, generated tokens, the seconds spent reading states and generating, and the
        tokens a first read took over from the key/value store instead of reading them."""

    def start(self, dialogues: Sequence[Dialogue], seed: int) -> None:
        """Generate the partner's opening lines (one call); fail early if a task cannot fit at all.

        The opening line is never read as leaving: the steered agent always gets its first turn. ``seed``
        (like ``step``'s ``seeds``) is the call's, for dialogues without a stream of their own (``Dialogue.seed``).
        """
        budget = self.cfg.sampling.max_new_tokens
        openers = [d for d in dialogues if d.partner_opens]
        for d in openers:
            self._require(d, d.partner, 0, budget)
        texts = self._partner_lines(openers, seed)
        for d, text in zip(openers, texts, strict=True):
            d.turns.append(Utterance(d.partner, text))
        for d in dialogues:
            self._require(d, d.steered, self.prefix_tokens, budget)

    def observe(self, dialogues: Sequence[Dialogue]) -> Tensor:
        """States ``(B, hidden)`` of each steered agent's own chat, without prefix (``state_layer``, ``state_pool``)."""
        fit = [d for d in dialogues if self.lm.fits(d.view(d.steered))]
        if fit:
            self.counts["states_calls"] += 1
            with self._counted("states_seconds"):
                states = self.lm.states([d.view(d.steered) for d in fit], layer=self.cfg.state_layer,
                                        caches=self._caches(fit, [d.steered for d in fit]), pool=self.cfg.state_pool)
            for d, s in zip(fit, states, strict=True):
                d.state = s
        for d in dialogues:
            if d.state is None:
                self._require(d, d.steered, 0, 0)
            if d.done:  # that was its final state
                d.caches.clear()
        return torch.stack([d.state for d in dialogues])  # type: ignore[misc]

    def step(self, dialogues: Sequence[Dialogue], actions: Tensor | None, seeds: tuple[int, int]) -> None:
        """One round for each (unfinished) dialogue: the steered line, then the partner's reply.

        ``actions`` ``(B, d)`` become per-sample prefixes; None generates without any prefix, and so
        does a row of NaNs for its own dialogue (the unsteered baseline in a batch of steered ones).
        """
        if any(d.done for d in dialogues):
            raise RuntimeError("A finished dialogue was stepped; reset it first.")
        prefixes = None
        unsteered = torch.isnan(actions).all(dim=-1) if actions is not None else None
        if actions is not None and self.projection is not None:  # rows at the null point: no prefix either
            unsteered = unsteered | self.projection.unsteered(torch.nan_to_num(actions.float()))
        if actions is not None and not bool(unsteered.all()):
            if self.projection is None:
                raise ValueError("Actions were given but there is no up-projection to make prefixes of them.")
            with torch.no_grad():
                made = self.projection(torch.nan_to_num(actions.float()))
            prefixes = [None if skip else p for p, skip in zip(made, unsteered.tolist(), strict=True)]
        texts = self._generate(dialogues, [d.steered for d in dialogues], prefixes, seeds[0])
        budget = self.cfg.sampling.max_new_tokens
        replying = []
        for d, text in zip(dialogues, texts, strict=True):
            if self._add(d, d.steered, text):
                continue
            if not self.lm.fits(d.view(d.partner), 0, budget):
                d.truncated = True
                continue
            replying.append(d)
        texts = self._partner_lines(replying, seeds[1])
        for d, text in zip(replying, texts, strict=True):
            if not self._add(d, d.partner, text) and not self.lm.fits(
                    d.view(d.steered), self.prefix_tokens, budget):
                d.truncated = True
        for d in dialogues:
            if d.done:  # the steered agent's cache still serves the final state (observe)
                d.caches.pop(d.partner, None)

    def _add(self, d: Dialogue, agent: int, text: str) -> bool:
        """Append an utterance; return whether it ended the dialogue (leave phrase or last turn)."""
        d.turns.append(Utterance(agent, text))
        if says_leave(text, self.cfg.leave_phrase):
            d.terminated, d.left_by = True, agent
        elif len(d.turns) >= 2 * self.cfg.max_turns:
            d.terminated = True
        return d.terminated

    def _partner_lines(self, dialogues: Sequence[Dialogue], seed: int) -> list[str]:
        """The partners' next lines: scripted ones as written, the others in one generation call."""
        free = [d for d in dialogues if len(d.turns) not in d.scripted]
        made = iter(self._generate(free, [d.partner for d in free], None, seed))
        return [d.scripted[len(d.turns)] if len(d.turns) in d.scripted else next(made) for d in dialogues]

    @contextmanager
    def _counted(self, seconds: str) -> Iterator[None]:
        """Add an LM call's seconds to ``counts[seconds]`` and the tokens it took from the key/value store."""
        began, reused = time.perf_counter(), self.lm.kv_store.reused_tokens
        yield
        self.counts[seconds] += time.perf_counter() - began
        self.counts["kv_store_reused_tokens"] += self.lm.kv_store.reused_tokens - reused

    def _caches(self, dialogues: Sequence[Dialogue], agents: Sequence[int]) -> list[Cached] | None:
        if not self.cfg.kv_cache:
            return None
        return [d.cache(agent) for d, agent in zip(dialogues, agents, strict=True)]

    def _generate(self, dialogues: Sequence[Dialogue], agents: Sequence[int], prefixes: list[Tensor] | None,
                  seed: int) -> list[str]:
        if not dialogues:
            return []
        sampling = replace(self.cfg.sampling, seed=int(seed))
        chats = [d.view(agent) for d, agent in zip(dialogues, agents, strict=True)]
        own = [d.line_seed() for d in dialogues]  # every dialogue with its own stream: draws that ignore the batch
        with self._counted("generate_seconds"):
            raw = self.lm.generate(chats, prefixes, sampling, position=self.position,
                                   seed=own if None not in own else None, caches=self._caches(dialogues, agents))
        self.counts["generate_calls"] += 1
        self.counts["utterances"] += len(raw)
        lengths = [len(ids) for ids in self.lm.tokenizer(raw, add_special_tokens=False)["input_ids"]]
        self.counts["generated_tokens"] += sum(lengths)
        return [clean_utterance(r) for r in raw]

    def _require(self, d: Dialogue, agent: int, prefix_tokens: int, new_tokens: int) -> None:
        if not self.lm.fits(d.view(agent), prefix_tokens, new_tokens):
            n = self.lm.count_tokens(d.view(agent))
            raise ContextOverflowError(
                f"Task {d.task.id!r}: agent {agent}'s chat has {n} tokens; with {prefix_tokens} prefix and "
                f"{new_tokens} new tokens it exceeds the {self.lm.max_context}-token context of "
                f"{self.lm.name!r}. Drop this task, lower env.sampling.max_new_tokens, or use a model with a "
                "longer context."
            )
