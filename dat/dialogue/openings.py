"""The first-turn chats stage 1 trains on (self-cloning, behaviour bases), built by the env's own rules.

An up-projection is trained on prompts before any planner exists, but it must steer the prompts
the planner will act on. So they are made exactly as an episode starts (``Dialogue.open`` and the
lockstep runner's opening line), here in the dialogue layer, and handed to ``dat.action`` as data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from functools import partial

from dat.action.behaviours import PromptInfo, rule_pattern
from dat.dialogue.rules import Dialogue, DialogueTask, EnvConfig, Lockstep
from dat.judges.probe import find_probe, run_test
from dat.lm.frozen import FrozenLM
from dat.records import DialogueRecord


def opening_chats(
    lm: FrozenLM,
    tasks: Sequence[DialogueTask],
    env: EnvConfig,
    seed: int,
    sides: Sequence[int] = (0, 1),
    partner_opens: Sequence[bool] = (True, False),
) -> list[list[dict]]:
    """The steered agent's first-turn chats, built by the env's own rules (``dat.dialogue.rules``).

    One chat per task, side and opening: when the partner opens, its opening line is generated
    (unsteered, one batched call) exactly as an episode starts.
    """
    dialogues = [Dialogue.open(t, side, opens, env) for t in tasks for side in sides for opens in partner_opens]
    Lockstep(lm, None, env).start(dialogues, seed)
    return [d.view(d.steered) for d in dialogues]


def behaviour_prompts(lm: FrozenLM, tasks: Sequence[DialogueTask], env: EnvConfig, seed: int,
                      limit: int | None = None) -> tuple[list, list[PromptInfo]]:
    """The train prompts a basis is made on: the steered agent's first turn, one task per scenario.

    Built by the env's own rules (side 0, the partner opens with a greedy line), as the steerability
    benchmark builds its prompts, so the basis is trained on what it is measured on, in other scenarios.
    """
    picked, seen = [], set()
    for task in tasks:
        record = task.record([], 0)
        if record.scenario not in seen:
            seen.add(record.scenario)
            picked.append(task)
    picked = picked[:limit]
    greedy = replace(env, sampling=replace(env.sampling, do_sample=False))
    chats = opening_chats(lm, picked, greedy, seed, sides=(0,), partner_opens=(True,))
    return chats, [prompt_info(t.record([], 0)) for t in picked]


def prompt_settings(env: EnvConfig, scenarios: str, ids: str | None = None) -> dict:
    """What the prompts ``behaviour_prompts`` builds depend on besides the model and the seed: the training task
    set, the system text's wording, the leave phrase it names, the opening cue the partner reads before its first
    line and how that line is decoded (greedy, ``max_new_tokens`` and ``repetition_penalty``).

    A basis records these (``dat.action.basis.ensure_basis``'s ``dialogue``), so one made on other prompts (an older
    cue, say) is refused instead of reused in silence: a prefix steers the prompts it was trained on."""
    return {"scenarios": scenarios, **({"ids": ids} if ids else {}), "system_wording": env.system_wording,
            "leave_phrase": env.leave_phrase, "opening_cue": env.opening_cue,
            "opening_line": {"max_new_tokens": env.sampling.max_new_tokens,
                             "repetition_penalty": env.sampling.repetition_penalty}}


def prompt_info(record: DialogueRecord) -> PromptInfo:
    """What the behaviour scorers know of side 0 of a task: its goal, rule pattern, the two names (the in-character
    test's) and probe test, if any."""
    probe = find_probe(record, 0)
    return PromptInfo(goal=record.goals[0], rules=rule_pattern(record, 0), names=tuple(record.names),
                      test=partial(run_test, probe.test) if probe else None)
