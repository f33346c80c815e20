"""DialogueVectorEnv: N single envs in lockstep, Gymnasium's vector contract and autoreset modes."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import envs  # noqa: F401  (registers dat/Dialogue-v0)
from dat.dialogue.rules import EnvConfig
from dat.lm.frozen import SamplingConfig
from envs.dialogue_env import DialogueEnv
from envs.vector_env import DialogueVectorEnv
from tests.dialogue_tasks import GREEDY, NEVER, LengthJudge, make_tasks


def config(**overrides) -> EnvConfig:
    return EnvConfig(**{"max_turns": 3, "sampling": GREEDY, "leave_phrase": NEVER, **overrides})


def make_vec(lm, proj, n, judge=None, **kwargs):
    return gym.make_vec("dat/Dialogue-v0", num_envs=n, lm=lm, projection=proj, tasks=make_tasks(),
                        judge=judge or LengthJudge(), **kwargs)


def test_make_vec_returns_the_lockstep_env_with_batched_spaces(lm, proj):
    vec = make_vec(lm, proj, 3, cfg=config())
    assert isinstance(vec, DialogueVectorEnv) and vec.num_envs == 3
    assert vec.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert vec.action_space.shape == (3, 4) and vec.single_action_space.shape == (4,)
    assert vec.observation_space.shape == (3, lm.hidden_size)
    obs, infos = vec.reset(seed=5)
    assert obs.shape == (3, lm.hidden_size) and obs.dtype == np.float32 and infos["_task_id"].all()
    again, _ = vec.reset(seed=5)  # read again on top of the stored system text: equal up to float rounding
    np.testing.assert_allclose(obs, again, atol=1e-5)


SAMPLED = SamplingConfig(max_new_tokens=8, temperature=1.0, top_p=0.95)


@pytest.mark.parametrize(("per_turn", "sampling"), [(False, GREEDY), (True, GREEDY), (False, SAMPLED)])
def test_sub_envs_equal_single_envs_with_the_same_seeds(lm, proj, per_turn, sampling):
    """Sampled too: each dialogue draws its lines from a stream of its own, so its batch does not matter."""
    cfg = config(leave_phrase="Dea", reward_per_turn=per_turn, sampling=sampling)
    n, seed = 4, 21
    vec = make_vec(lm, proj, n, cfg=cfg, autoreset_mode="Disabled")
    rng = np.random.default_rng(0)
    actions = [rng.uniform(-1, 1, (n, 4)).astype(np.float32) for _ in range(cfg.max_turns)]
    obs, _ = vec.reset(seed=seed)
    vector = [[] for _ in range(n)]
    for a in actions:
        running = [d is not None and not d.done for d in vec.dialogues]
        obs, rewards, term, trunc, infos = vec.step(a)
        for i in range(n):
            if running[i]:
                vector[i].append((obs[i], rewards[i], term[i], trunc[i], infos["transcript"][i]))
    lengths = {len(v) for v in vector}
    for i in range(n):
        single = DialogueEnv(lm, proj, make_tasks(), LengthJudge(), cfg)
        single.reset(seed=seed + i)
        for t, (v_obs, v_reward, v_term, v_trunc, v_turns) in enumerate(vector[i]):
            s_obs, s_reward, s_term, s_trunc, s_info = single.step(actions[t][i])
            assert v_turns == s_info["transcript"]
            assert v_reward == pytest.approx(s_reward) and (v_term, v_trunc) == (s_term, s_trunc)
            np.testing.assert_allclose(v_obs, s_obs, atol=1e-4)
        assert single.dialogue.done
    assert len({tuple(v[-1][4]) for v in vector}) == n  # the sub-envs really played different dialogues
    assert len(lengths) > 1  # some ended early (leave phrase) while the others went on


def test_one_batched_call_per_half_round_and_one_judge_call_per_step(lm, proj):
    judge = LengthJudge()
    vec = make_vec(lm, proj, 3, judge=judge, cfg=config(max_turns=2, partner_opens=False))
    vec.reset(seed=0)
    before = dict(vec.counts)
    for _ in range(2):
        _, _, term, _, infos = vec.step(np.zeros((3, 4), np.float32))
    assert term.all() and judge.calls == [3]  # the three endings, judged in one call
    assert vec.counts["generate_calls"] - before["generate_calls"] == 4  # 2 rounds x (steered, partner)
    assert vec.counts["states_calls"] - before["states_calls"] == 2
    assert all(r is not None for r in infos["record"]) and infos["_episode_reward"].all()


def test_next_step_autoreset_starts_a_new_episode_after_the_end(lm, proj):
    vec = make_vec(lm, proj, 2, cfg=config(max_turns=1))
    vec.reset(seed=3)
    _, rewards, term, _, infos = vec.step(np.zeros((2, 4), np.float32))
    assert term.all() and (rewards > 0).all()
    obs, rewards, term, trunc, infos = vec.step(np.ones((2, 4), np.float32))  # the actions are ignored
    assert not term.any() and not trunc.any() and not rewards.any()
    assert all(len(t) <= 1 for t in infos["transcript"])  # fresh dialogues (at most the partner's opener)
    _, _, term, _, _ = vec.step(np.zeros((2, 4), np.float32))
    assert term.all()


def test_disabled_autoreset_leaves_ended_dialogues_and_resets_by_mask(lm, proj):
    vec = make_vec(lm, proj, 3, cfg=config(max_turns=1), autoreset_mode=AutoresetMode.DISABLED)
    vec.reset(seed=3, options={"task_id": ["s2/1", None, "s0/1"], "steered": 1})
    assert [d.task.id for d in vec.dialogues][::2] == ["s2/1", "s0/1"]
    assert all(d.steered == 1 for d in vec.dialogues)
    vec.step(np.zeros((3, 4), np.float32))
    ended = list(vec.dialogues)
    _, rewards, term, _, infos = vec.step(np.zeros((3, 4), np.float32))
    assert term.all() and not rewards.any() and vec.dialogues == ended and not infos
    vec.reset(seed=[None, 9, None], options={"reset_mask": np.array([False, True, False])})
    assert vec.dialogues[0] is ended[0] and vec.dialogues[1] is not ended[1]
    _, _, term, _, infos = vec.step(np.zeros((3, 4), np.float32))
    assert term.all() and infos["_record"].tolist() == [False, True, False]


def test_nan_actions_play_without_a_prefix(lm, proj):
    vec = make_vec(lm, proj, 2, cfg=config(max_turns=1))
    vec.reset(seed=0)
    lm.seen.clear()
    vec.step(np.array([[np.nan] * 4, [0.0] * 4], np.float32))
    steered = [prefixed for kind, _, prefixed in lm.seen if kind == "generate"]
    assert steered[:2] == [False, True]  # the steered lines: row 0 without a prefix, row 1 with one


def test_actions_at_the_null_point_play_as_the_unsteered_model(lm):
    """With prefix.null_action the action has one more entry; a row whose null logit is the largest gets no prefix,
    and its line is the one a NaN (unsteered) action gives."""
    import torch

    from dat.action.projection import PrefixConfig, UpProjection

    basis = torch.randn(2, 2, lm.hidden_size, generator=torch.Generator().manual_seed(0)) * 3
    proj = UpProjection(PrefixConfig(kind="behaviours", action_dim=2, tokens=2, position="before_reply",
                                     null_action=True),
                        lm.hidden_size, 1.0, basis)
    vec = make_vec(lm, proj, 3, cfg=config(max_turns=1))
    assert vec.single_action_space.shape == (3,)
    lines = []
    for actions in ([[-1, -1, 1], [1, -1, -1], [np.nan] * 3], [[np.nan] * 3, [1, -1, -1], [-1, -1, 1]]):
        vec.reset(seed=0, options={"task_index": 0, "steered": 0, "partner_opens": True})
        lm.seen.clear()
        _, _, _, _, infos = vec.step(np.array(actions, np.float32))
        assert [prefixed for kind, _, prefixed in lm.seen if kind == "generate"][:3] == [
            not (np.isnan(a).all() or np.argmax(a) == 2) for a in np.array(actions)]
        lines.append([r.turns[1].text for r in infos["record"]])
    assert lines[0][0] == lines[1][0] and lines[0][2] == lines[1][2]  # null == unsteered, in either row


def test_bad_arguments_are_explained(lm, proj):
    with pytest.raises(ValueError, match="autoreset_mode"):
        DialogueVectorEnv(lm, proj, make_tasks(), LengthJudge(), 2, autoreset_mode="SameStep")
    vec = make_vec(lm, proj, 2, cfg=config())
    with pytest.raises(RuntimeError, match="reset"):
        vec.step(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="3 seeds for 2 sub-envs"):
        vec.reset(seed=[1, 2, 3])
    with pytest.raises(ValueError, match="task_id"):
        vec.reset(seed=0, options={"task_id": "nope"})
    with pytest.raises(ValueError, match="Unknown reset options"):
        vec.reset(seed=0, options={"tasks": 1})
