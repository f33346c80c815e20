"""The baselines a planner is measured against (the best constant action, the prompted model), the signs of reward
hacking every evaluation reports, and held-out judges' scores beside the run's."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dat import restating
from dat.dialogue.episodes import Episode
from dat.dialogue.rollout import PROMPTED, collect_conditions
from dat.dialogue.rules import Dialogue, EnvConfig
from dat.eval import constant, parroting
from dat.eval.conditions import summarize
from dat.records import DialogueRecord, Utterance
from envs.vector_env import collector_envs
from tests.dialogue_tasks import GREEDY, NEVER, LengthJudge, make_tasks

CFG = EnvConfig(max_turns=2, sampling=GREEDY, leave_phrase=NEVER, partner_opens=True)


def test_the_candidates_are_the_zero_action_and_the_corners_or_the_axis_points():
    assert constant.candidates(2) == {"zero": (0.0, 0.0), "++": (1.0, 1.0), "+-": (1.0, -1.0), "-+": (-1.0, 1.0),
                                      "--": (-1.0, -1.0)}
    many = constant.candidates(8)  # 256 corners: 16 of them, the same every time
    assert len(many) == 17 and many == constant.candidates(8)
    assert all(set(a) <= {1.0, -1.0} and len(a) == 8 for label, a in many.items() if label != "zero")
    assert constant.one_hot(8).items() <= many.items()  # every behaviour alone is among them
    assert list(constant.candidates(5))[:6] == list(constant.one_hot(5))  # 32 corners: the one-hot ones first


def test_the_best_constant_is_played_on_the_tasks_given_and_reused_only_for_the_same_settings(lm, proj, tmp_path):
    judge = LengthJudge()
    tasks = make_tasks(2)
    envs = collector_envs(lm, proj, tasks, judge, CFG, episodes=34, batch_size=34)
    told = []
    record = constant.choose(envs, 1, 5, {"judge": "length", "basis": "a"}, tmp_path, announce=told.append)
    assert len(told) == 1 and "17 candidates x 2 training tasks x 1 (34 dialogues" in told[0]
    assert record["episodes"] == 2 and len(record["means"]) == 17  # the zero action and 16 corners, each task once
    assert record["label"] == max(record["means"], key=record["means"].get)
    assert tuple(record["action"]) == constant.candidates(4)[record["label"]]
    played = [call for call in judge.calls]
    assert sum(played) == 34
    again = constant.choose(envs, 1, 5, {"judge": "length", "basis": "a"}, tmp_path, announce=told.append)
    assert again == record and judge.calls == played and len(told) == 1  # read back: nothing played or announced
    other_judge = constant.choose(envs, 1, 5, {"judge": "other", "basis": "a"}, tmp_path)
    other_basis = constant.choose(envs, 1, 5, {"judge": "length", "basis": "b"}, tmp_path)
    assert sum(judge.calls) == 3 * 34  # another judge, another basis: each played anew...
    assert len(list(tmp_path.glob("*.json"))) == 3  # ...and kept apart
    assert other_judge["settings"]["judge"] == "other" and other_basis["settings"]["basis"] == "b"
    policy = constant.policy(record)
    assert policy.__name__ == "best_constant"
    np.testing.assert_array_equal(policy(np.zeros((3, 8))), np.tile(np.float32(record["action"]), (3, 1)))


def test_the_headroom_measurement_plays_every_candidate_on_every_task(lm, proj):
    tasks = make_tasks(3)
    envs = collector_envs(lm, proj, tasks, LengthJudge(), CFG, episodes=17 * 6, batch_size=34)
    options, played = constant.play(envs, 2, seed=3)
    assert list(played) == list(options) and len(options) == 17
    for label, episodes in played.items():
        assert [e.task_id for e in episodes] == [t.id for t in tasks for _ in range(2)]
        assert all(np.allclose(e.actions, np.float32(options[label])) for e in episodes)  # the candidate's action
    assert [e.seed for e in played["zero"]] == [e.seed for e in played["--++"]]  # the same episodes


def test_each_behaviour_alone_is_played_when_asked_instead_of_every_corner(lm, proj):
    options = constant.one_hot(4)
    assert options == {"zero": (0.0,) * 4, "+---": (1.0, -1.0, -1.0, -1.0), "-+--": (-1.0, 1.0, -1.0, -1.0),
                       "--+-": (-1.0, -1.0, 1.0, -1.0), "---+": (-1.0, -1.0, -1.0, 1.0)}
    envs = collector_envs(lm, proj, make_tasks(2), LengthJudge(), CFG, episodes=5 * 2, batch_size=10)
    played_options, played = constant.play(envs, 1, seed=3, options=options)
    assert played_options == options and list(played) == list(options)
    assert all(np.allclose(e.actions, np.float32(options[label])) for label, eps in played.items() for e in eps)


def test_the_oracle_against_the_best_constant_matches_a_hand_computed_example():
    from dat.eval.headroom import headroom

    tasks = ["A", "A", "B", "B"]
    rewards = {"zero": [0.48, 0.48, 0.48, 0.48], "+": [1.0, 0.8, 0.0, 0.2], "-": [0.0, 0.2, 0.9, 0.3]}
    found = headroom(rewards, tasks)
    assert found["candidates"] == pytest.approx({"zero": 0.48, "+": 0.5, "-": 0.35})
    assert found["best_constant"] == "+" and found["task_best"] == {"A": "+", "B": "-"}
    assert found["tasks_where_best_differs"] == 1
    assert found["oracle_in_sample"] == pytest.approx((0.9 + 0.6) / 2)
    # task B: "-" wins its first episode and scores 0.3 on the second; "zero" wins the second, scores 0.48
    assert found["oracle_cross_fitted"] == pytest.approx((0.9 + (0.3 + 0.48) / 2) / 2)
    assert found["headroom"]["diff"] == pytest.approx(((0.9 - 0.9) + (0.39 - 0.1)) / 2)
    assert found["headroom"]["oracle"] == "cross-fitted"
    alone = headroom({k: v[::2] for k, v in rewards.items()}, tasks[::2])  # one episode per task
    assert alone["oracle_cross_fitted"] is None and alone["headroom"]["oracle"].startswith("in-sample")
    with pytest.raises(ValueError, match="one reward per episode"):
        headroom({"zero": [0.1]}, tasks)


def test_the_prompted_model_differs_from_the_unsteered_one_only_by_the_restated_goal(lm, proj):
    task = make_tasks(1)[0]
    plain = Dialogue.open(task, 0, True, CFG)
    prompted = Dialogue.open(task, 0, True, CFG, prompted=True)
    reminder = "(Remember your goal: Buy the bike for $80. GOAL-0-0)"
    assert prompted.reminder == reminder and plain.reminder == ""
    for d in (plain, prompted):
        d.turns += [Utterance(1, "Hi."), Utterance(0, "Hello."), Utterance(1, "So?")]
    steered, partner = prompted.view(0), prompted.view(1)
    assert [m["content"] for m in steered if m["role"] == "user"] == [f"Hi.\n\n{reminder}", f"So?\n\n{reminder}"]
    assert partner == plain.view(1)  # the partner reads no reminder
    undone = [{**m, "content": m["content"].replace(f"\n\n{reminder}", "")} for m in steered]
    assert undone == plain.view(0)
    with pytest.raises(ValueError, match="env.goal_reminder"):
        EnvConfig(goal_reminder="Remember it.").validate()
    # Played as a condition: no prefix (like unsteered), the same episodes, the goal read before each turn.
    envs = collector_envs(lm, None, make_tasks(2), LengthJudge(), CFG, episodes=4, batch_size=4)
    lm.seen.clear()
    runs = collect_conditions(envs, {"unsteered": None, PROMPTED: PROMPTED}, 2, seed=3)
    assert [e.seed for e in runs["unsteered"]] == [e.seed for e in runs[PROMPTED]]
    assert all(e.policy == PROMPTED for e in runs[PROMPTED]) and not any(steer for _, _, steer in lm.seen)
    reminded = [chat for kind, chat, _ in lm.seen if kind == "generate" and "Remember your goal" in chat[-1]["content"]]
    assert len(reminded) == 2 * 2  # each steered turn of the two prompted episodes


def test_parroting_scores_a_copied_goal_1_and_an_unrelated_line_0():
    goal = "To raise the rent to $1250 a month and keep the tenant happy."
    assert restating.overlap(goal, goal) == 1.0 and restating.restates(goal, goal) and restating.copies(goal, goal)
    copied = "Dave's goal: to raise the rent to $1250 a month."
    assert restating.restates(copied, goal) and restating.copies(copied, goal)
    unrelated = "Could we talk about the broken heater first?"
    assert restating.overlap(unrelated, goal) == 0.0 and not restating.restates(unrelated, goal)
    record = DialogueRecord("t/1", "s", ("Ann Doe", "Bea Roe"), ("", ""), (goal, "Keep the rent low."),
                            (Utterance(1, "Hi."), Utterance(0, goal), Utterance(1, "No."), Utterance(0, unrelated)), 0)
    assert parroting.episode_shares(record) == {"restates_goal": 0.5, "copies_goal": 0.5, "in_character": 1.0}
    echo = DialogueRecord("t/1", "s", ("Ann Doe", "Bea Roe"), ("", ""), (goal, ""),
                          (Utterance(0, "(The conversation starts. You speak first.)"),), 0)
    assert parroting.episode_shares(echo)["in_character"] == 0.0
    hello = DialogueRecord("t/1", "s", ("Ann Doe", "Bea Roe"), ("", ""), (goal, ""),
                           (Utterance(0, "Hello! Please start."), Utterance(1, "Hi."), Utterance(0, "I'm Ann.")), 0)
    assert parroting.episode_shares(hello)["in_character"] == 1.0  # the rule knows only the default cue's words
    assert parroting.episode_shares(hello, cue="Hello! Please start.")["in_character"] == 0.5
    assert parroting.distinct([record, record]) == 0.5


def _episode(seed: int, task: str, reward: float) -> Episode:
    record = DialogueRecord(task, "s", ("Ann", "Bea"), ("", ""), ("Sell it.", "Buy it."),
                            (Utterance(0, f"Line {seed}."),), 0)
    empty = np.zeros((1, 2), np.float32)
    judgement = {"status": "ok", "scores": [{"goal": reward * 10}, {}]}
    return Episode(record, empty, empty, np.zeros(1, np.float32), empty, np.ones(1, bool), np.zeros(1, bool),
                   judgement, reward, task, 0, seed, False)


def test_a_held_out_judge_is_reported_beside_the_training_reward_without_changing_it():
    rng = np.random.default_rng(0)
    runs = {name: [_episode(s, f"t{s % 4}", float(rng.uniform())) for s in range(12)]
            for name in ("unsteered", "policy", "zero", "best_constant", "prompted")}
    plain = summarize(runs)
    held = {name: {"reward@rule": np.linspace(0, 1, 12)} for name in runs}
    both = summarize(runs, extra=held)
    assert both["results"]["policy"]["reward"] == plain["results"]["policy"]["reward"]
    assert both["results"]["policy"]["reward@rule"]["mean"] == pytest.approx(0.5)
    assert "reward@rule" not in plain["results"]["policy"]
    # the first comparison is with the strongest baseline by the run's reward
    means = {c: np.mean([e.reward for e in runs[c]]) for c in runs if c != "policy"}
    assert both["versus"]["control"] == max(means, key=means.get)
    assert json.loads(json.dumps(both["policy_vs"]))  # plain data
