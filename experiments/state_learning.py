"""Does an offline planner read its state? A learning curve against dataset size on the moods task.

    python collect.py experiment=mood collect.episodes=1500 collect.out=outputs/datasets/mood-greedy
    python experiments/state_learning.py --data outputs/datasets/mood-greedy --sizes 150 500 1500 --seeds 0 1 2
    python collect.py experiment=mood collect.do_sample=true collect.episodes=1500 \
        collect.out=outputs/datasets/mood-sampled
    python experiments/state_learning.py --data outputs/datasets/mood-sampled --label sampled --sizes 150 500 1500

On ``experiment=mood`` each steered agent's goal asks for warmth or anger; the basis has a positive and a negative
prefix and a "do not steer" point (``prefix.null_action``). For each dataset size N (the first N episodes by index) and
seed, TD3 is trained fully offline (alpha 0, lr 3e-4, batch 64, 1,500 steps, states normalised from the data) and
its actions are played, greedily, on every (held-out task, side). Reported per run, on the held-out goals:

* the share of warm goals for which the planner picks the positive prefix, and of angry goals the negative one;
* its reward against the unsteered model and against the best constant action (the corner of the action space
  with the highest mean reward in the training data), paired by goal, 95 % bootstrap intervals clustered by task;
* the critic's fit: how often Q(s, a) orders the two tone corners as the played rewards do on held-out goals.

Every corner is also played on every held-out goal (the oracle picks each goal's best corner): the headroom.
Writes ``results/state_learning.json`` and ``docs/state-learning.md`` (``--markdown-only`` rewrites the page).
"""

from __future__ import annotations

from dat_pipeline import CONF, measuring

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from gymnasium import spaces
from hydra import compose, initialize_config_dir
from steerability import gather

from dat.action.projection import UpProjection
from dat.config import TrainConfig, register_configs, to_config
from dat.dialogue.dataset import Dataset
from dat.eval.stats import paired_difference
from dat.judges import make_judge
from dat.judges.reward import reward as judged_reward
from dat.lm.frozen import FrozenLM
from dat.rl.buffer import add_episode
from dat.rl.td3bc import TD3BC, AlgoConfig, NetArch
from dat.seeding import seed_everything
from envs.scenarios import load_scenarios
from envs.vector_env import collector_envs

ROOT = Path(__file__).resolve().parents[1]
OUT = measuring.RESULTS / "state_learning.json"
STRENGTH = measuring.RESULTS / "prefix_strength.json"
GATES = measuring.RESULTS / "gate_moods.json"
"""``dat gate`` runs on the moods prompts (``--gates`` gathers their ``gate.json`` files here)."""
PAGE = ROOT / "docs" / "state-learning.md"
CORNERS = {"positive": [1.0, -1.0, -1.0], "negative": [-1.0, 1.0, -1.0], "null": [-1.0, -1.0, 1.0]}
MATCH = {"positive": "positive", "negative": "negative"}
"""The corner a goal's tone asks for (its sentiment check's target)."""


def setting(data: Path | None, overrides: tuple[str, ...] = ()) -> TrainConfig:
    """The moods experiment, greedy, with the null point, acting through ``data``'s action space and under its
    dialogue rules (None: the action space ``overrides`` describe, made by stage 1)."""
    register_configs()
    path = [f"prefix.path={data / 'projection'}"] if data is not None else []
    if data is not None:  # the dialogue rules the dataset was collected under (its opening cue may be an older one)
        cue = json.loads((data / "card.json").read_text())["rules"]["opening_cue"]
        path.append(f"env.opening_cue={json.dumps(cue)}")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=mood", "prefix.null_action=true", "env.sampling.do_sample=false",
                                          *path, "logger=none", *overrides])
    return to_config(cfg)


def tone(record) -> str | None:
    return next((c["target"] for c in record.checks if c.get("kind") == "sentiment"
                 and c.get("agent", record.steered) == record.steered), None)


def picked(action: np.ndarray) -> str:
    return list(CORNERS)[int(np.argmax(action))]


class Goals:
    """Every (held-out task, side), played one turn at a time in wide batches (greedy: one episode each)."""

    def __init__(self, cfg: TrainConfig, lm: FrozenLM, projection: UpProjection):
        tasks = load_scenarios(cfg.env.scenarios.eval)
        judge = make_judge(cfg.judge, lm=lm)
        self.envs = collector_envs(lm, projection, tasks, judge, cfg.env,
                                   lambda j, side: judged_reward(j, side, cfg.judge.weights), 64, 64)
        self.goals = [(t, s) for t in range(len(tasks)) for s in (0, 1)]
        self.task_ids = [tasks[t].id for t, _ in self.goals]
        self.states, self.tones, self.dialogues = None, None, []

    def play(self, actions: np.ndarray, prompted: bool = False) -> np.ndarray:
        """Rewards of every goal played with its row of ``actions`` (NaN rows: unsteered; with ``prompted``, the
        prompted baseline: the goal restated in the steered agent's context); the goals' first states, tones and
        finished dialogues stay in ``states``, ``tones`` and ``dialogues``."""
        rewards, states, tones, dialogues = [], [], [], []
        width = self.envs.num_envs
        for start in range(0, len(self.goals), width):
            chunk = self.goals[start:start + width]
            pad = width - len(chunk)
            options = {"task_index": [t for t, _ in chunk] + [0] * pad, "steered": [s for _, s in chunk] + [0] * pad,
                       "partner_opens": True, "prompted": prompted}
            obs, _ = self.envs.reset(seed=0, options=options)
            rows = np.concatenate([actions[start:start + len(chunk)], np.full((pad, actions.shape[1]), np.nan)])
            _, r, _, _, infos = self.envs.step(rows.astype(np.float32))
            rewards += list(r[: len(chunk)])
            states.append(obs[: len(chunk)])
            tones += [tone(rec) for rec in infos["record"][: len(chunk)]]
            dialogues += self.envs.dialogues[: len(chunk)]
        self.states, self.tones, self.dialogues = np.concatenate(states), tones, dialogues
        return np.array(rewards)


def train_planner(transitions: tuple[np.ndarray, ...], n: int, seed: int, steps: int, obs_dim: int, act_dim: int,
                  hidden: list[int] | None = None, state_noise: float = 0.0) -> TD3BC:
    """TD3 (alpha 0) on the first ``n`` episodes of a dataset's ``transitions``, with the state-and-data
    measurement's settings."""
    seed_everything(seed)
    hidden = hidden or [256, 256]
    cfg = AlgoConfig(alpha=0.0, actor_lr=3e-4, critic_lr=3e-4, batch_size=64, net_arch=NetArch(actor=hidden,
                     critic=hidden), buffer_size=max(n, 1) * 4)
    algo = TD3BC.from_config(cfg, observation_space=spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32),
                             action_space=spaces.Box(-1.0, 1.0, (act_dim,), np.float32), seed=seed)
    states, actions, rewards, next_states, dones, _, lengths = transitions
    if state_noise > 0:  # each transition's state jittered by state_noise x each feature's sd across the data
        rng = np.random.default_rng(seed)
        spread = states.std(0, keepdims=True)
        states = states + state_noise * spread * rng.standard_normal(states.shape).astype(np.float32)
        next_states = next_states + state_noise * spread * rng.standard_normal(states.shape).astype(np.float32)
    start = 0
    for k, length in enumerate(lengths[:n]):
        end = start + int(length)
        add_episode(algo.replay_buffer, states[start:end], next_states[start:end], actions[start:end],
                    rewards[start:end], terminated=bool(dones[end - 1]))
        start = end
        if k + 1 == n:
            break
    algo.fit_normalizer()
    algo.learn_offline(steps)
    return algo


def corner_values(algo: TD3BC, states: np.ndarray) -> dict[str, np.ndarray]:
    """Q(s, corner) of every corner at every state (the critic's first head, as the actor's loss reads it)."""
    with torch.no_grad():
        obs = algo.policy.obs_to_tensor(states)[0]
        return {k: algo.critic.q1_forward(obs, torch.tensor(np.tile(v, (len(states), 1)), dtype=torch.float32)
                                          ).squeeze(-1).numpy() for k, v in CORNERS.items()}


def critic_order(algo: TD3BC, states: np.ndarray, corners: dict[str, np.ndarray], tones: list) -> float:
    """Share of held-out toned goals where Q ranks the two tone corners as the played rewards do."""
    right = []
    q = corner_values(algo, states)
    for i, t in enumerate(tones):
        if t in MATCH:
            played = corners["positive"][i] - corners["negative"][i]
            if played != 0:
                right.append(np.sign(q["positive"][i] - q["negative"][i]) == np.sign(played))
    return float(np.mean(right)) if right else float("nan")


def best_constant(transitions: tuple[np.ndarray, ...], n: int) -> str:
    """The corner with the highest mean reward among the first ``n`` training episodes that picked it."""
    _, actions, rewards, _, _, _, lengths = transitions
    ends = np.cumsum(lengths)[:n] - 1
    chosen = [picked(actions[e]) for e in ends]
    means = {k: float(np.mean([rewards[e] for e, c in zip(ends, chosen, strict=True) if c == k]))
             for k in CORNERS if k in chosen}
    return max(means, key=means.get)


def state_probe(data: Dataset, transitions: tuple[np.ndarray, ...], states: np.ndarray, tones: list) -> dict:
    """How well a linear reading of the state tells a goal's tone: a ridge classifier fitted on the training
    (task, side) setups' first states (standardised), scored on the held-out goals' states."""
    rows = sorted((r for r in data.rows if not r.failed), key=lambda r: r.index)
    lengths = transitions[-1]
    firsts = transitions[0][np.cumsum(lengths) - lengths]
    seen: dict[tuple[str, int], tuple[np.ndarray, float]] = {}
    for row, state in zip(rows, firsts, strict=True):
        record = row.line["record"]
        target = next((c["target"] for c in record["checks"] if c.get("kind") == "sentiment"
                       and c.get("agent", record["steered"]) == record["steered"]), None)
        if target in MATCH:
            seen.setdefault((record["task_id"], record["steered"]), (state, 1.0 if target == "positive" else -1.0))
    x, y = np.stack([s for s, _ in seen.values()]).astype(np.float64), np.array([t for _, t in seen.values()])
    mean, scale = x.mean(0), x.std(0) + 1e-6
    z = (x - mean) / scale
    w = np.linalg.solve(z.T @ z + 10.0 * np.eye(z.shape[1]), z.T @ y)
    held = [i for i, t in enumerate(tones) if t in MATCH]
    guess = ((states[held] - mean) / scale) @ w > 0
    truth = np.array([tones[i] == "positive" for i in held])
    return {"train_setups": len(seen), "held_out_goals": len(held), "accuracy": float(np.mean(guess == truth))}


def compare(a: np.ndarray, b: np.ndarray, groups: list[str]) -> dict:
    r = paired_difference(a, b, groups=groups)
    return {"diff": r.mean_diff, "low": r.ci_low, "high": r.ci_high, "p": r.p_value}


def open_goals(folder: str) -> tuple[Dataset, FrozenLM, UpProjection, Goals]:
    """A dataset, the model, the action space it was collected through, and its held-out goals ready to play."""
    data = Dataset(folder)
    cfg = setting(Path(folder))
    lm = FrozenLM.load(cfg.model)
    projection = UpProjection.load(Path(folder) / "projection")
    return data, lm, projection, Goals(cfg, lm, projection)


def measure(args) -> dict:
    data, lm, projection, goals = open_goals(args.data)
    d = projection.cfg.planner_dim
    unsteered = goals.play(np.full((len(goals.goals), d), np.nan))
    corners = {k: goals.play(np.tile(np.array(v, np.float32), (len(goals.goals), 1))) for k, v in CORNERS.items()}
    states, tones = goals.states, goals.tones
    prompted = goals.play(np.full((len(goals.goals), d), np.nan), prompted=True)
    oracle = np.max(np.stack(list(corners.values())), axis=0)
    best_corner = [max(CORNERS, key=lambda k, i=i: corners[k][i]) for i in range(len(goals.goals))]
    played = {"unsteered": unsteered, "prompted": prompted, **corners}
    per_tone = {t: {k: float(np.mean([v[i] for i in range(len(tones)) if tones[i] == t])) for k, v in played.items()}
                for t in ("positive", "negative")}
    runs = []
    transitions = data.transitions()
    probe = state_probe(data, transitions, states, tones)
    for n in args.sizes:
        if n > len(data):
            continue
        constant = best_constant(transitions, n)
        for seed in args.seeds:
            began = time.perf_counter()
            algo = train_planner(transitions, n, seed, args.steps, lm.hidden_size, d, args.hidden, args.state_noise)
            actions, _ = algo.predict(states.astype(np.float32), deterministic=True)
            rewards = goals.play(actions)
            chosen = [picked(a) for a in actions]
            match = {t: float(np.mean([chosen[i] == MATCH[t] for i in range(len(tones)) if tones[i] == t]))
                     for t in MATCH}
            # the critic's own choice: the corner of highest Q, played (greedy: its reward is that corner's)
            q = corner_values(algo, states)
            argmax = [max(CORNERS, key=lambda k, i=i: q[k][i]) for i in range(len(states))]
            argmax_rewards = np.array([corners[k][i] for i, k in enumerate(argmax)])
            runs.append({"n": n, "seed": seed, "best_constant": constant, "reward": float(rewards.mean()),
                         "pick": match, "choices": {k: chosen.count(k) for k in CORNERS},
                         "critic_order": critic_order(algo, states, corners, tones),
                         "vs_unsteered": compare(rewards, unsteered, goals.task_ids),
                         "vs_best_constant": compare(rewards, corners[constant], goals.task_ids),
                         "vs_prompted": compare(rewards, prompted, goals.task_ids),
                         "critic_argmax": {
                             "reward": float(argmax_rewards.mean()),
                             "pick": {t: float(np.mean([argmax[i] == MATCH[t] for i in range(len(tones))
                                                        if tones[i] == t])) for t in MATCH},
                             "choices": {k: argmax.count(k) for k in CORNERS},
                             "vs_unsteered": compare(argmax_rewards, unsteered, goals.task_ids),
                             "vs_best_constant": compare(argmax_rewards, corners[constant], goals.task_ids)},
                         "seconds": time.perf_counter() - began})
            print(json.dumps(runs[-1]))
    return {"data": str(args.data), "card": {k: data.card[k] for k in ("episodes", "behaviour", "decoding", "seed")},
            "held_out_goals": len(goals.goals), "steps": args.steps, "hidden": args.hidden,
            "state_noise": args.state_noise,
            "unsteered": float(unsteered.mean()), "prompted": float(prompted.mean()),
            "corners": {k: float(v.mean()) for k, v in corners.items()}, "oracle": float(oracle.mean()),
            "oracle_vs_unsteered": compare(oracle, unsteered, goals.task_ids), "per_tone": per_tone,
            "oracle_pick": {t: float(np.mean([best_corner[i] == MATCH[t] for i in range(len(tones)) if tones[i] == t]))
                            for t in MATCH},
            "null_equals_unsteered": bool(np.allclose(corners["null"], unsteered)), "state_probe": probe, "runs": runs,
            "machine": measuring.machine()}


def probe_line(result: dict) -> list[str]:
    probe = result.get("state_probe")
    if probe is None:
        return []
    return [f"A linear reading of the state (ridge, fitted on the first states of the {probe['train_setups']} training "
            f"(task, side) setups) tells the tone of {probe['accuracy']:.0%} of the {probe['held_out_goals']} held-out "
            "goals.", ""]


def probe_only(args) -> dict:
    """The state probe alone, added to a dataset's measured section (no planner is trained again)."""
    data, _, projection, goals = open_goals(args.data)
    goals.play(np.full((len(goals.goals), projection.cfg.planner_dim), np.nan))
    return state_probe(data, data.transitions(), goals.states, goals.tones)


def _ci(c: dict) -> str:
    return f"{c['diff']:+.3f} [{c['low']:+.3f}, {c['high']:+.3f}]"


def markdown(results: dict) -> str:
    lines = ["# Does an offline planner read its state? (moods, learning curve)", "",
             "Generated by `python experiments/state_learning.py` from `benchmarks/results/state_learning.json`; "
             "method in the script's docstring. One section per dataset and planner setting.", ""]
    for label, result in results["datasets"].items():
        lines += study(label, result)
    if STRENGTH.is_file():
        lines += strengths(json.loads(STRENGTH.read_text()))
    if GATES.is_file():
        lines += gates(json.loads(GATES.read_text()))
    return "\n".join(lines)


def gates(results: dict) -> list[str]:
    """The table of the moods gate runs: each basis and scale, the sentiment criteria and the cost."""
    lines = ["## The gate on the moods prompts", "",
             "`dat gate experiment=mood gate.scenarios=moods:eval [prefix=...] [prefix.norm=...]` (gathered into "
             "`benchmarks/results/gate_moods.json` by `python experiments/state_learning.py --gates <run folders>`): "
             "the held-out moods prompts, 16 random actions over the action space with its null point, seed 0.", "",
             "| run | basis | strength | sentiment correlation | best-of-K (SE) | log-prob cost | gate | failing |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, run in results["runs"].items():
        r = run["result"]
        sentiment = r["rewards"]["sentiment"]
        failing = "; ".join(x.removeprefix("FAIL: ") for x in r["gate_reasons"] if x.startswith("FAIL")) or "-"
        lines.append(f"| {name} | {r['name']} | {run['prefix']['norm']:g} | {sentiment['corr']['corr']:.2f} | "
                     f"{sentiment['best_of_k']['z']:+.1f} | {r['fluency']['cost']:.3f} | "
                     f"{'pass' if r['gate'] else 'fail'} | {failing} |")
    return lines + [""]


def strengths(results: dict) -> list[str]:
    """The tables of ``experiments/prefix_strength.py``: each behaviour at several prefix lengths, per goal type, one
    table per basis."""
    lines = ["## Each behaviour at several strengths", "",
             "Written from `benchmarks/results/prefix_strength.json` (`python experiments/prefix_strength.py`; method "
             "in its docstring), greedy, every held-out goal. Strength: times the trained prefix length. Fluency: the "
             "steered lines' mean token log-probability under the unsteered model, minus the unsteered lines' own.", ""]
    for label, result in results["bases"].items():
        made = " ".join(f"`{o}`" for o in result["basis"]) or "the dataset's own action space"
        lines += [f"### {label[:1].upper() + label[1:]}", "",
                  f"Basis: {made}. {result['held_out_goals']} held-out goals; unsteered: warm goals "
                  f"{result['unsteered']['positive']:.3f}, angry goals {result['unsteered']['negative']:.3f}.", "",
                  "| strength | behaviour | warm goals | − unsteered | angry goals | − unsteered "
                  "| fluency − unsteered |", "| --- | --- | --- | --- | --- | --- | --- |"]
        for r in result["rows"]:
            lines.append(f"| {r['norm']:g} | {r['behaviour']} | {r['positive']['reward']:.3f} | "
                         f"{_ci(r['positive']['vs_unsteered'])} | {r['negative']['reward']:.3f} | "
                         f"{_ci(r['negative']['vs_unsteered'])} | {r['fluency_vs_unsteered']:+.2f} |")
        lines.append("")
    return lines


def study(label: str, result: dict) -> list[str]:
    lines = [f"## {label[:1].upper() + label[1:]}", "",
             f"Dataset: `{result['data']}`, {result['card']['episodes']} episodes, behaviour "
             f"{result['card']['behaviour']}, decoding do_sample={result['card']['decoding']['do_sample']}. "
             f"Held-out goals: {result['held_out_goals']} (every held-out task, both sides), played greedily. "
             f"TD3 offline, {result['steps']} gradient steps, actor and critic layers "
             f"{result.get('hidden', [256, 256])}, training states jittered by {result.get('state_noise', 0.0):g} "
             "feature sd.", "",
             "### Every constant action on the held-out goals", "",
             "| condition | mean reward | warm goals | angry goals |", "| --- | --- | --- | --- |"]
    for k in ("unsteered", *(["prompted"] if "prompted" in result else []), *CORNERS):
        mean = result[k] if k in ("unsteered", "prompted") else result["corners"][k]
        lines.append(f"| {k} | {mean:.3f} | {result['per_tone']['positive'][k]:.3f} | "
                     f"{result['per_tone']['negative'][k]:.3f} |")
    lines += ["", f"Oracle (each goal's best corner): {result['oracle']:.3f}, against unsteered "
              f"{_ci(result['oracle_vs_unsteered'])}: the headroom a perfect reader of the state has with this basis. "
              f"The null corner equals the unsteered model on every goal: {result['null_equals_unsteered']}."
              + (f" The oracle itself picks the positive corner for {result['oracle_pick']['positive']:.0%} of warm "
                 f"goals and the negative one for {result['oracle_pick']['negative']:.0%} of angry ones."
                 if "oracle_pick" in result else ""), "",
              *probe_line(result), "### Planners by dataset size", ""]
    prompted = "prompted" in result
    lines += ["| N | seed | warm → positive | angry → negative | critic orders tones | reward | − unsteered | "
              "best constant | − best constant |" + (" − prompted |" if prompted else ""),
              "| --- " * (10 if prompted else 9) + "|"]
    for r in result["runs"]:
        lines.append(f"| {r['n']} | {r['seed']} | {r['pick']['positive']:.2f} | {r['pick']['negative']:.2f} | "
                     f"{r['critic_order']:.2f} | {r['reward']:.3f} | {_ci(r['vs_unsteered'])} | {r['best_constant']} | "
                     f"{_ci(r['vs_best_constant'])} |" + (f" {_ci(r['vs_prompted'])} |" if prompted else ""))
    lines += ["", "Intervals: 95 % paired bootstrap over goals, clustered by task. The bar: at some N in 3 of 3 seeds, "
              "at least 80 % matching picks for each tone and both lower ends above 0.", ""]
    argmax = [r for r in result["runs"] if "critic_argmax" in r]
    if argmax:
        lines += ["The critic's own choice (the corner of highest Q(s, a) among positive, negative and null, played: "
                  "what a planner that searches the critic over the corners instead of following the actor would do):",
                  "", "| N | seed | warm → positive | angry → negative | null picks | reward | − unsteered | "
                  "− best constant |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in argmax:
            c = r["critic_argmax"]
            lines.append(f"| {r['n']} | {r['seed']} | {c['pick']['positive']:.2f} | {c['pick']['negative']:.2f} | "
                         f"{c['choices']['null']} | {c['reward']:.3f} | {_ci(c['vs_unsteered'])} | "
                         f"{_ci(c['vs_best_constant'])} |")
        lines.append("")
    bar = {}
    for r in result["runs"]:
        bar.setdefault(r["n"], []).append(passes(r))
    lines += ["Bar met (per N, seeds passing): " + ", ".join(f"N={n}: {sum(v)}/{len(v)}" for n, v in bar.items()), ""]
    return lines + diagnosis(result)


def passes(run: dict) -> bool:
    """The bar for one planner: at least 80 % matching picks for each tone, both lower ends above 0."""
    return (min(run["pick"].values()) >= 0.8 and run["vs_unsteered"]["low"] > 0
            and run["vs_best_constant"]["low"] > 0)


def diagnosis(result: dict) -> list[str]:
    """Where the planner stands at the largest N, part by part (state, critic, actor, behaviours), in the measured
    numbers; which part holds it back when the bar is not met."""
    n = max(r["n"] for r in result["runs"])
    last = [r for r in result["runs"] if r["n"] == n]
    order = [r["critic_order"] for r in last]
    picks = {t: [r["pick"][t] for r in last] for t in MATCH}
    tone = result["per_tone"]
    probe = result.get("state_probe")
    met = sum(passes(r) for r in last)
    parts = [f"**At N = {n:,} the bar is met at {met} of {len(last)} seeds.**"]
    if probe:
        parts.append(f"The state: a linear probe reads the tone of {probe['accuracy']:.0%} of the held-out goals.")
    parts.append(f"The critic: Q(s, a) orders the two tone corners as the played rewards do on "
                 f"{min(order):.0%}-{max(order):.0%} of the held-out goals (over seeds).")
    parts.append(f"The actor: it picks the matching corner for {min(picks['positive']):.0%}-"
                 f"{max(picks['positive']):.0%} of warm goals and {min(picks['negative']):.0%}-"
                 f"{max(picks['negative']):.0%} of angry ones.")
    gain = {t: tone[t][t] - tone[t]["unsteered"] for t in MATCH}
    behaviours = (f"The behaviours: on warm goals the positive corner scores {tone['positive']['positive']:.3f} "
                  f"against the unsteered model's {tone['positive']['unsteered']:.3f}, on angry goals the negative "
                  f"corner "
                  f"{tone['negative']['negative']:.3f} against {tone['negative']['unsteered']:.3f}")
    if min(gain.values()) > 0:
        behaviours += ": each tone has a prefix that adds to the unsteered model, so every matching pick gains."
    else:
        lacking = "angry" if gain["negative"] <= 0 else "warm"
        behaviours += (f": {lacking} goals have no prefix to gain from, so a planner gains over the unsteered model "
                       f"only on the other tone and loses whenever it picks the wrong corner for one of them.")
    parts.append(behaviours)
    rewards = sum(r["vs_unsteered"]["low"] > 0 and r["vs_best_constant"]["low"] > 0 for r in last)
    parts.append(f"The reward part of the bar (both lower ends above 0) holds at {rewards} of {len(last)} seeds.")
    if "prompted" in result:
        parts.append(f"The prompted baseline (no prefix, the goal restated in the agent's context) scores "
                     f"{result['per_tone']['positive']['prompted']:.3f} on warm and "
                     f"{result['per_tone']['negative']['prompted']:.3f} on angry goals; the planner against it: "
                     + ", ".join(_ci(r["vs_prompted"]) for r in last) + ".")
    oracle = result.get("oracle_pick")
    if oracle:
        short = [t for t in MATCH if oracle[t] < 0.8]
        parts.append(f"The oracle (each goal's best corner, played) picks the matching corner for "
                     f"{oracle['positive']:.0%} of warm and {oracle['negative']:.0%} of angry goals" + (
                         f": on {' and '.join({'positive': 'warm', 'negative': 'angry'}[t] for t in short)} goals "
                         "even a perfect planner would miss the 80 % of matching picks, because another corner scores "
                         "higher there; the pick part of the bar asks for more than the reward rewards."
                         if short else "."))
    return [" ".join(parts), ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="outputs/datasets/mood-greedy")
    parser.add_argument("--sizes", type=int, nargs="+", default=[150, 500, 1500])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 256], help="actor and critic layer widths")
    parser.add_argument("--state-noise", type=float, default=0.0,
                        help="jitter each training state by this many of its features' sds (0: none)")
    parser.add_argument("--label", default="greedy", help="the dataset's section in the results (greedy, sampled)")
    parser.add_argument("--markdown-only", action="store_true")
    parser.add_argument("--probe-only", action="store_true", help="add the state probe to the dataset's section")
    parser.add_argument("--gates", nargs="+", help="dat gate run folders to gather into results/gate_moods.json")
    args = parser.parse_args()
    results = json.loads(OUT.read_text()) if OUT.is_file() else {"datasets": {}}
    if args.gates:
        GATES.write_text(json.dumps({"machine": measuring.machine(), "runs": gather(args.gates, by_folder=True)},
                                    indent=2) + "\n")
    elif args.probe_only:
        results["datasets"][args.label]["state_probe"] = probe_only(args)
        OUT.write_text(json.dumps(results, indent=2) + "\n")
    elif not args.markdown_only:
        results["datasets"][args.label] = measure(args)  # other datasets' sections are kept
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(results, indent=2) + "\n")
    PAGE.write_text(markdown(results))
    print(f"wrote {OUT} and {PAGE}")


if __name__ == "__main__":
    main()
