"""DialogueEnv: the Gymnasium contract, who sees what, how episodes end, and how rewards are paid."""

from __future__ import annotations

import os
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import envs  # noqa: F401  (registers dat/Dialogue-v0)
from dat.dialogue.rules import EnvConfig
from dat.judges.rule import RuleJudge
from dat.lm.frozen import ContextOverflowError, FrozenLM
from dat.lm.loading import ModelConfig
from envs.dialogue_env import DialogueEnv
from tests.dialogue_tasks import GREEDY, NEVER, LengthJudge, make_tasks


def make_env(lm, proj, judge=None, **cfg) -> DialogueEnv:
    cfg.setdefault("sampling", GREEDY)
    cfg.setdefault("leave_phrase", NEVER)
    return DialogueEnv(lm, proj, make_tasks(), judge or LengthJudge(), EnvConfig(**cfg))


def run(env: DialogueEnv, seed: int = 0, options=None, action=None):
    obs, info = env.reset(seed=seed, options=options)
    steps = []
    done = False
    while not done:
        a = np.full(env.action_space.shape, 0.5, np.float32) if action is None else action
        obs, r, term, trunc, info = env.step(a)
        steps.append((obs, r, term, trunc, info))
        done = term or trunc
    return steps


def test_spaces(lm, proj):
    env = make_env(lm, proj)
    assert env.action_space == gym.spaces.Box(-1, 1, (4,), np.float32)
    assert env.observation_space.shape == (lm.hidden_size,) and env.observation_space.dtype == np.float32
    obs, info = env.reset(seed=3)
    assert obs.dtype == np.float32 and obs.shape == (64,)
    assert set(info) >= {"transcript", "task_id", "steered", "partner_opens", "round", "judgement_failed"}


def test_mean_pooled_observation_is_the_mean_over_the_steered_agents_chat(lm, proj):
    env = make_env(lm, proj, state_pool="mean", kv_cache=True)
    obs, info = env.reset(seed=3)
    view = env.dialogue.view(info["steered"])
    expected = lm.states([view], layer=-1, pool="mean")[0].numpy()
    assert np.allclose(obs, expected, atol=1e-5)
    assert not np.allclose(obs, lm.states([view])[0].numpy(), atol=1e-3)


CHECKERS = ("gymnasium", "stable_baselines3")


def test_gymnasium_and_sb3_checkers_pass(lm, proj):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gym_check_env(make_env(lm, proj), skip_render_check=True)
        sb3_check_env(make_env(lm, proj), warn=True)
    # What the checkers say (warnings raised from their own packages), not unrelated library warnings.
    # Hidden states are unbounded by nature; that is the only thing the checkers may remark on.
    said = [w for w in caught if any(f"{os.sep}{pkg}{os.sep}" in w.filename for pkg in CHECKERS)]
    complaints = [str(w.message) for w in said if "infinity" not in str(w.message)]
    assert complaints == []
    assert any("infinity" in str(w.message) for w in said)  # the filter does hear the checkers


def test_registered_and_made_through_gym(lm, proj):
    env = gym.make("dat/Dialogue-v0", lm=lm, projection=proj, tasks=make_tasks(), judge=LengthJudge(),
                   cfg=EnvConfig(sampling=GREEDY, leave_phrase=NEVER, max_turns=1), render_mode="ansi")
    env.reset(seed=0)
    _, _, term, _, info = env.step(env.action_space.sample())
    assert term and env.render().startswith("Turn #0:")
    assert isinstance(env.unwrapped, DialogueEnv)


@pytest.mark.parametrize("opens", [True, False])
def test_max_turns_terminates_with_two_utterances_per_round(lm, proj, opens):
    env = make_env(lm, proj, max_turns=3, partner_opens=opens, steered=1)
    steps = run(env)
    assert len(steps) == 3
    assert [s[2] for s in steps] == [False, False, True] and not any(s[3] for s in steps)
    transcript = steps[-1][4]["transcript"]
    assert len(transcript) == 6 and sum(u.agent == 1 for u in transcript) == 3
    assert transcript[0].agent == (0 if opens else 1) and transcript[-1].agent == (1 if opens else 0)
    assert [u.agent for u in transcript] == [transcript[0].agent, 1 - transcript[0].agent] * 3


def test_leave_phrase_ends_the_episode_case_insensitively(lm, proj):
    ended_early = 0
    for phrase in ("E", "a", "o", "s"):  # single letters: some utterance soon contains one
        steps = run(make_env(lm, proj, max_turns=4, leave_phrase=phrase))
        transcript = steps[-1][4]["transcript"]
        hits = [i for i, u in enumerate(transcript) if i > 0 and phrase.lower() in u.text.lower()]
        assert steps[-1][2] and not steps[-1][3]
        if hits:  # the episode stops right after the first utterance that says it (the opening line excepted)
            assert len(transcript) == hits[0] + 1
            assert steps[-1][4]["left_by"] == transcript[hits[0]].agent
            ended_early += len(steps) < 4
        else:
            assert len(transcript) == 8 and steps[-1][4]["left_by"] is None
    assert ended_early >= 1


def test_truncated_when_the_next_turn_would_not_fit(tiny_model_dir, proj):
    lm = FrozenLM.load(ModelConfig(name=str(tiny_model_dir), memo_entries=0))
    env = make_env(lm, proj, max_turns=5, partner_opens=False, steered=0)
    env.reset(seed=0, options={"task_id": "s0/1"})
    first = lm.count_tokens(env.dialogue.view(0))
    lm.max_context = first + 2 + GREEDY.max_new_tokens + 4  # room for one steered turn, not for two
    steps = run(env, options={"task_id": "s0/1"})
    assert len(steps) == 1 and steps[0][3] and not steps[0][2]
    assert np.isfinite(steps[0][0]).all() and steps[0][1] == pytest.approx(
        sum(len(u.text) for u in steps[0][4]["transcript"] if u.agent == 0) / 100)
    lm.max_context = first + 2 + GREEDY.max_new_tokens - 1  # not even the first turn fits
    with pytest.raises(ContextOverflowError, match="s0/1"):
        env.reset(seed=0, options={"task_id": "s0/1"})


def test_steered_agent_never_reads_the_partners_goal_or_secret(lm, proj):
    for steered in (0, 1):
        lm.seen.clear()
        env = make_env(lm, proj, max_turns=3, steered=steered, partner_opens=True)
        run(env, options={"task_id": "s1/1"})
        steered_chats = partner_chats = 0
        for _kind, chat, prefixed in lm.seen:
            system = chat[0]["content"]
            reader = 0 if "SECRET-1-0" in system else 1
            other = 1 - reader
            text = "\n".join(m["content"] for m in chat)
            assert f"GOAL-1-{other}" not in text and f"SECRET-1-{other}" not in text
            assert f"GOAL-1-{reader}" in system
            if reader == steered:
                steered_chats += 1
            else:
                partner_chats += 1
                assert not prefixed, "the partner must never receive a prefix"
            if prefixed:
                assert reader == steered
        assert steered_chats == 3 + 4 and partner_chats == 3  # 3 generations + 4 observations; 3 replies


def test_terminal_reward_by_default(lm, proj):
    steps = run(make_env(lm, proj, max_turns=3, steered=0))
    rewards = [s[1] for s in steps]
    transcript = steps[-1][4]["transcript"]
    assert rewards[:-1] == [0.0, 0.0]
    assert rewards[-1] == pytest.approx(sum(len(u.text) for u in transcript if u.agent == 0) / 100)
    assert steps[-1][4]["judgement"] == {"value": rewards[-1]}
    assert steps[-1][4]["episode_reward"] == rewards[-1]


def test_per_turn_reward_pays_the_change_and_sums_to_the_final_one(lm, proj):
    judge = LengthJudge()
    steps = run(make_env(lm, proj, judge, max_turns=3, steered=1, reward_per_turn=True))
    assert judge.calls == [1, 1, 1]
    cumulative = [sum(len(u.text) for u in s[4]["transcript"] if u.agent == 1) / 100 for s in steps]
    assert [s[1] for s in steps] == pytest.approx(np.diff([0.0] + cumulative).tolist())
    assert sum(s[1] for s in steps) == pytest.approx(steps[-1][4]["episode_reward"])


def test_failed_judgement_pays_zero_and_is_flagged(lm, proj):
    steps = run(make_env(lm, proj, LengthJudge(fail_after=0), max_turns=2))
    assert steps[-1][1] == 0.0 and steps[-1][4]["judgement_failed"]
    assert steps[-1][4]["episode_reward"] is None
    assert not steps[0][4]["judgement_failed"]


def test_real_judge_objects_flow_through_the_default_reward(lm, proj):
    judge = RuleJudge(checks=[{"kind": "regex", "pattern": "."}])
    steps = run(make_env(lm, proj, judge, max_turns=1))
    assert steps[-1][1] == pytest.approx(1.0)  # every rule satisfied: goal 10 -> normalised 1.0
    assert steps[-1][4]["judgement"]["status"] == "ok"


def test_reset_is_seeded_and_options_fix_the_setup(lm, proj):
    env = make_env(lm, proj)
    a, ia = env.reset(seed=5)
    b, ib = env.reset(seed=5)
    assert np.array_equal(a, b) and ia == ib
    draws = {(env.reset(seed=s)[1]["task_id"], env.dialogue.steered, env.dialogue.partner_opens)
             for s in range(12)}
    assert len(draws) > 3  # tasks, sides and openers vary with the seed
    _, info = env.reset(seed=0, options={"task_id": "s2/1", "steered": 1, "partner_opens": False})
    assert (info["task_id"], info["steered"], info["transcript"]) == ("s2/1", 1, [])
    with pytest.raises(ValueError, match="task_id"):
        env.reset(options={"task_id": "nope"})


def test_step_after_the_end_is_an_error_and_actions_are_clipped(lm, proj):
    env = make_env(lm, proj, max_turns=1)
    env.reset(seed=1)
    env.step(np.full(4, 1.0, np.float32))
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(4, np.float32))
    first = run(make_env(lm, proj, max_turns=1), seed=1, action=np.full(4, 1.0, np.float32))
    clipped = run(make_env(lm, proj, max_turns=1), seed=1, action=np.full(4, 7.0, np.float32))
    assert first[-1][4]["transcript"] == clipped[-1][4]["transcript"]


def test_bad_config_is_explained():
    with pytest.raises(ValueError, match="max_turns"):
        EnvConfig(max_turns=0).validate()
    with pytest.raises(ValueError, match="steered"):
        EnvConfig(steered=2).validate()
    with pytest.raises(ValueError, match="partner_opens"):
        EnvConfig(partner_opens="sometimes").validate()
