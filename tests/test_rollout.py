"""collect(): dialogues in lockstep give the env's transcripts, one LM call per half-round, paired seeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dat.dialogue.rollout import collect as collect_on
from dat.dialogue.rules import Dialogue, EnvConfig
from dat.dialogue.scoring import Verdict, default_reward, pay, score
from dat.lm.frozen import SamplingConfig
from dat.records import Utterance
from envs.dialogue_env import DialogueEnv
from envs.vector_env import collector_envs
from tests.dialogue_tasks import GREEDY, NEVER, LengthJudge, make_tasks


def collect(lm, proj, tasks, policy, n, cfg, judge, seed, batch_size=None, **kwargs):
    """``dat.dialogue.rollout.collect`` on a fresh collector env of these tasks (``batch_size`` at a time)."""
    envs = collector_envs(lm, proj, tasks, judge, cfg, episodes=n, batch_size=batch_size)
    return collect_on(envs, policy, n, seed, **kwargs)


def replay_alone(lm, proj, cfg, judge, episode):
    """The episode's seed and actions, played alone through DialogueEnv."""
    env = DialogueEnv(lm, proj, make_tasks(), judge, cfg)
    env.reset(seed=episode.seed)
    out = []
    for action in episode.actions:
        out.append(env.step(action))
    return out


@pytest.mark.parametrize("per_turn", [False, True])
def test_batched_transcripts_equal_each_dialogue_alone(lm, proj, per_turn):
    cfg = EnvConfig(max_turns=3, sampling=GREEDY, leave_phrase="Dea", reward_per_turn=per_turn)
    episodes = collect(lm, proj, make_tasks(), "random", 6, cfg, LengthJudge(), seed=11)
    assert len({(e.task_id, e.steered, e.partner_opens) for e in episodes}) > 2  # a mixed batch
    assert len({len(e) for e in episodes}) > 1  # some end early (leave phrase), the rest keep going
    for e in episodes:
        alone = replay_alone(lm, proj, cfg, LengthJudge(), e)
        assert alone[-1][4]["transcript"] == list(e.record.turns)
        assert [s[1] for s in alone] == pytest.approx(e.rewards.tolist())
        assert [s[2] for s in alone] == e.dones.tolist() and [s[3] for s in alone] == e.truncated.tolist()
        np.testing.assert_allclose(np.stack([s[0] for s in alone]), e.next_states, atol=1e-4)
        np.testing.assert_allclose(e.states[1:], e.next_states[:-1])
        said = sum(len(u.text) for u in e.record.turns if u.agent == e.steered)
        assert e.reward == pytest.approx(said / 100)


def test_sampled_episodes_do_not_depend_on_the_batch_size(lm, proj):
    """Each dialogue samples from its own stream: loop.batch_size changes the speed, not the dialogues."""
    cfg = EnvConfig(max_turns=2, sampling=SamplingConfig(max_new_tokens=8, temperature=1.0), leave_phrase=NEVER)
    wide, narrow = (collect(lm, proj, make_tasks(), "random", 5, cfg, LengthJudge(), seed=3, batch_size=b)
                    for b in (5, 2))
    assert [e.record.turns for e in wide] == [e.record.turns for e in narrow]
    assert len({e.record.turns[-1].text for e in wide}) == 5  # sampled, different dialogues
    np.testing.assert_allclose(np.stack([e.next_states for e in wide]), np.stack([e.next_states for e in narrow]),
                               atol=1e-4)


def test_batched_equals_alone_with_repetition_penalty(lm, proj):
    greedy = SamplingConfig(do_sample=False, max_new_tokens=8)  # the default repetition penalty (1.2)
    cfg = EnvConfig(max_turns=2, sampling=greedy, leave_phrase=NEVER)
    for e in collect(lm, proj, make_tasks(), "random", 4, cfg, LengthJudge(), seed=2):
        assert replay_alone(lm, proj, cfg, LengthJudge(), e)[-1][4]["transcript"] == list(e.record.turns)


def test_one_batched_call_per_half_round(lm, proj):
    cfg = EnvConfig(max_turns=2, sampling=GREEDY, leave_phrase=NEVER, partner_opens=False)
    judge, stats = LengthJudge(), {}
    lm.seen.clear()
    episodes = collect(lm, proj, make_tasks(), "zero", 4, cfg, judge, seed=0, stats=stats)
    assert [len(e) for e in episodes] == [2, 2, 2, 2]
    assert stats["perf/generate_calls"] == 4 and stats["perf/states_calls"] == 3  # 2 rounds x 2 halves; 1 + 2
    assert judge.calls == [4]  # one judge call for the whole batch
    assert stats["perf/utterances"] == 16 and stats["rollout/episodes"] == 4
    assert sum(kind == "generate" for kind, _, _ in lm.seen) == 16
    # where the LM time went: both parts timed, and together no more than the rollout
    assert 0 < stats["perf/states_seconds"] and 0 < stats["perf/generate_seconds"]
    assert stats["perf/states_seconds"] + stats["perf/generate_seconds"] <= stats["perf/rollout_seconds"]


def test_same_seed_same_episodes_across_conditions(lm, proj):
    cfg = EnvConfig(max_turns=1, sampling=GREEDY, leave_phrase=NEVER)
    runs = {p: collect(lm, proj, make_tasks(), p, 5, cfg, LengthJudge(), seed=4, batch_size=2)
            for p in (None, "zero", "random")}
    setups = {p: [(e.seed, e.task_id, e.steered, e.partner_opens) for e in eps] for p, eps in runs.items()}
    assert setups[None] == setups["zero"] == setups["random"]
    assert [e.seed for e in runs[None]] != [e.seed for e in collect(lm, proj, make_tasks(), None, 5, cfg,
                                                                    LengthJudge(), seed=5)]
    again = collect(lm, proj, make_tasks(), "random", 5, cfg, LengthJudge(), seed=4)  # other batch size
    assert [e.record for e in again] == [e.record for e in runs["random"]]
    assert np.isnan(runs[None][0].actions).all() and not runs["zero"][0].actions.any()
    assert runs[None][0].policy == "none" and runs["random"][0].policy == "random"


def test_unsteered_runs_without_any_prefix(lm, proj):
    cfg = EnvConfig(max_turns=1, sampling=GREEDY, leave_phrase=NEVER)
    lm.seen.clear()
    collect(lm, proj, make_tasks(), None, 3, cfg, LengthJudge(), seed=0)
    assert lm.seen and not any(prefixed for _, _, prefixed in lm.seen)
    lm.seen.clear()
    collect(lm, proj, make_tasks(), "zero", 3, cfg, LengthJudge(), seed=0)
    assert sum(prefixed for _, _, prefixed in lm.seen) == 3


def test_policy_sees_states_of_the_unfinished_dialogues(lm, proj):
    cfg = EnvConfig(max_turns=3, sampling=GREEDY, leave_phrase="Dea")
    shapes = []

    def policy(states: torch.Tensor) -> torch.Tensor:
        shapes.append(tuple(states.shape))
        return torch.tanh(states[:, :4])

    episodes = collect(lm, proj, make_tasks(), policy, 6, cfg, LengthJudge(), seed=11, noise=0.1)
    active = [sum(len(e) > t for e in episodes) for t in range(3)]
    assert shapes == [(n, 64) for n in active if n]
    assert all(np.abs(e.actions).max() <= 1.0 for e in episodes) and episodes[0].policy == "policy"
    with pytest.raises(ValueError, match="shape"):
        collect(lm, proj, make_tasks(), lambda s: np.zeros((1, 3)), 2, cfg, LengthJudge(), seed=0)


def test_failed_judgements_are_dropped_unless_kept(lm, proj):
    cfg = EnvConfig(max_turns=2, sampling=GREEDY, leave_phrase=NEVER)

    class FailsOnOneTask(LengthJudge):
        def __call__(self, records):
            values = super().__call__(records)
            return [None if r.task_id == "s1/1" else v for r, v in zip(records, values, strict=True)]

    stats = {}
    kept = collect(lm, proj, make_tasks(), "zero", 6, cfg, FailsOnOneTask(), seed=0, keep_failed=True)
    failed = [e for e in kept if e.judgement_failed]
    assert failed and all(e.task_id == "s1/1" and e.reward is None and not e.rewards.any() for e in failed)
    dropped = collect(lm, proj, make_tasks(), "zero", 6, cfg, FailsOnOneTask(), seed=0, stats=stats)
    assert [e.seed for e in dropped] == [e.seed for e in kept if not e.judgement_failed]
    assert stats["rollout/dropped_failed_judgements"] == len(failed)


def test_an_outage_is_failed_judgements_in_a_row_and_stops_with_the_episodes_it_finished(lm, proj):
    from dat.dialogue.scoring import JudgeOutage, OutageWatch
    from dat.judges import Judgement

    class Down(LengthJudge):
        def __call__(self, records):
            self.calls.append(len(records))
            return [Judgement.failed("HTTP 401 from http://127.0.0.1:9/v1", "api", "m")] * len(records)

    judge = Down()
    cfg = EnvConfig(max_turns=2, sampling=GREEDY, leave_phrase=NEVER)
    with pytest.raises(JudgeOutage, match="failed 4 judgements in a row \\(HTTP 401") as stopped:
        collect(lm, proj, make_tasks(), "zero", 8, cfg, judge, seed=0, batch_size=2, keep_failed=True,
                indices=list(range(10, 18)), watch=OutageWatch(4))
    assert judge.calls == [2, 2]  # stopped after the second batch, not at the end of the round
    numbers = [g for g, _ in stopped.value.episodes]
    assert numbers == [10, 11, 12, 13] and all(e.judgement_failed for _, e in stopped.value.episodes)

    watch = OutageWatch(3)  # one watch spans calls: two failures, then one more in the next call
    assert len(collect(lm, proj, make_tasks(), "zero", 2, cfg, Down(), seed=0, batch_size=2, keep_failed=True,
                       watch=watch)) == 2
    with pytest.raises(JudgeOutage, match="failed 3 judgements in a row"):
        collect(lm, proj, make_tasks(), "zero", 1, cfg, Down(), seed=0, batch_size=1, keep_failed=True, watch=watch)


def test_one_failed_judgement_in_a_batch_of_one_does_not_stop_collection(lm, proj):
    class FailsOnce(LengthJudge):
        def __call__(self, records):
            judged = super().__call__(records)
            return [None] * len(records) if len(self.calls) == 3 else judged

    judge = FailsOnce()
    cfg = EnvConfig(max_turns=2, sampling=GREEDY, leave_phrase=NEVER)
    played = collect(lm, proj, make_tasks(), "zero", 5, cfg, judge, seed=0, batch_size=1, keep_failed=True)
    assert judge.calls == [1] * 5
    assert [e.judgement_failed for e in played] == [False, False, True, False, False]


def test_per_turn_failure_mid_episode_flags_the_episode(lm, proj):
    cfg = EnvConfig(max_turns=3, sampling=GREEDY, leave_phrase=NEVER, reward_per_turn=True,
                    partner_opens=False)
    # fails only while the transcript has 3 or 4 utterances: the second step of each episode
    class Flaky(LengthJudge):
        def __call__(self, records):
            values = super().__call__(records)
            return [None if len(r.turns) in (3, 4) else v for r, v in zip(records, values, strict=True)]

    (e,) = collect(lm, proj, make_tasks(), "zero", 1, cfg, Flaky(), seed=0, keep_failed=True)
    assert e.judgement_failed and e.rewards[1] == 0.0
    assert e.reward == pytest.approx(e.rewards.sum())  # the last payment catches up with the final reward


def test_score_and_pay_helpers():
    cfg = EnvConfig()
    d = Dialogue.open(make_tasks(1)[0], 0, False, cfg)
    d.turns += [Utterance(0, "abcd"), Utterance(1, "xy")]
    assert default_reward(0.25, 0) == 0.25 and default_reward(None, 1) is None
    (verdict,) = score(LengthJudge(), default_reward, [d])
    assert verdict == Verdict(0.04, {"value": 0.04})
    assert pay(d, verdict) == pytest.approx(0.04) and pay(d, Verdict(0.1, None)) == pytest.approx(0.06)
    assert pay(d, Verdict(None, None)) == 0.0 and d.paid == pytest.approx(0.1)
    with pytest.raises(ValueError, match="judgements"):
        score(lambda recs: [], default_reward, [d])
    assert score(LengthJudge(), default_reward, []) == []


def test_conditions_played_together_equal_each_played_alone(lm, proj):
    from dat.dialogue.rollout import collect_conditions

    cfg = EnvConfig(max_turns=2, sampling=GREEDY, leave_phrase=NEVER)
    envs = collector_envs(lm, proj, make_tasks(), LengthJudge(), cfg, episodes=4, batch_size=4)
    order = [0, 1, 2, 0]
    together = collect_conditions(envs, {"unsteered": None, "zero": "zero", "random": "random"}, 4, seed=9,
                                  task_order=order)
    for name, policy in (("unsteered", None), ("zero", "zero"), ("random", "random")):
        alone = collect(lm, proj, make_tasks(), policy, 4, cfg, LengthJudge(), seed=9, task_order=order,
                        keep_failed=True)
        assert [e.record for e in together[name]] == [e.record for e in alone], name
        assert [e.seed for e in together[name]] == [e.seed for e in alone]
        np.testing.assert_array_equal(together[name][0].actions, alone[0].actions)
