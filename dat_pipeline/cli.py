"""``dat`` console command: train and evaluate a planner, talk to or watch a steered model from an export.

    dat train loop.rounds=1 logger=none                                     # = python train.py loop.rounds=1 ...
    dat evaluate policy=outputs/train/default/export                         # = python evaluate.py policy=...
    dat stability 'policy="outputs/train/experiment=stability/export"'     # a folder name with = or , is quoted
    dat chat --policy outputs/train/default/export --task bundled-003        # planner vs model partner
    dat chat --policy outputs/train/default/export --interactive             # you are the partner
    dat chat --task bundled-003                                              # no planner: unsteered
    dat collect experiment=mood collect.episodes=2000 collect.out=outputs/datasets/mood   # a dataset
    dat dataset merge outputs/datasets/mood                                  # its shards into one
    dat gate prefix=behaviours seed=1                                        # does an action space steer?
    dat rescore --run outputs/train/default                                  # judge failed episodes again

``dat train``, ``dat evaluate``, ``dat stability``, ``dat collect`` and ``dat gate`` hand everything after the
subcommand to Hydra (overrides, ``-m``, ``--cfg job``, ``--help``), with the configs of ``dat_pipeline/conf``.
"""

from __future__ import annotations

from dat_pipeline import runtime  # process settings before torch (see runtime.py)

import argparse
import importlib
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dat.dialogue.rules import Dialogue, EnvConfig
    from dat.lm.frozen import FrozenLM


HYDRA_COMMANDS = {
    "train": "train a planner: Hydra overrides as for python train.py (e.g. loop.rounds=1 logger=none)",
    "evaluate": "evaluate an export against the baselines: Hydra overrides as for python evaluate.py (policy=...)",
    "stability": "instruction stability over a self-chat, per round and condition: Hydra overrides as for "
                 "python stability.py (policy=..., rounds=8)",
    "collect": "collect a dataset for offline training: Hydra overrides as for python collect.py "
               "(collect.episodes=..., collect.out=..., -m collect.shard=0,1 collect.shards=2)",
    "gate": "the steerability gate on an action space: Hydra overrides as for python gate.py "
            "(prefix=<preset>, seed=1, gate.scenarios=...)",
}
"""Subcommands that run a Hydra entry point; their arguments are Hydra's, so argparse never reads them."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="dat", description="Dialogue Action Tokens tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in HYDRA_COMMANDS.items():
        commands.add_parser(name, help=text, add_help=False)  # listed here, run by run_entry_point
    commands.add_parser("rescore", help="judge saved episodes again (--episodes IN --out OUT) or a run's failed "
                        "episodes in place (--run RUN): see dat rescore --help", add_help=False)
    data = commands.add_parser("dataset", help="merge, check or make datasets (see dat collect)")
    data.add_argument("action", choices=("merge", "verify", "from-run"),
                      help="merge: a dataset's shards into it; verify: a dataset or its shards; "
                           "from-run: a training run's collected episodes as a dataset")
    data.add_argument("folder", help="the dataset folder (from-run: the run folder)")
    data.add_argument("--out", help="from-run: where the dataset goes (default: <run folder>/dataset)")
    chat = commands.add_parser("chat", help="run a steered dialogue from an exported planner")
    chat.add_argument("--policy", help="folder written by DATPolicy.save_pretrained (omit: unsteered)")
    chat.add_argument("--model", help="base model; default: the one the policy was trained on")
    chat.add_argument("--scenarios", default="bundled:eval", help="task set (see envs.scenarios)")
    chat.add_argument("--task", help="task id; default: the first task of the set")
    chat.add_argument("--side", type=int, default=0, choices=(0, 1), help="which agent the planner steers")
    chat.add_argument("--turns", type=int, default=3, help="rounds")
    chat.add_argument("--interactive", action="store_true", help="you play the partner")
    chat.add_argument("--compare", action="store_true",
                      help="also play the same dialogue unsteered (same task, side and seed) and show both")
    chat.add_argument("--greedy", action="store_true", help="greedy decoding instead of sampling")
    chat.add_argument("--max-new-tokens", type=int, default=48)
    chat.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def run_entry_point(name: str, argv: list[str]) -> int:
    """``dat train ...`` (and evaluate, stability, collect): the Hydra entry ``dat_pipeline.<name>`` with ``argv`` as
    its command line, exactly as ``python <name>.py ...`` runs it in a checkout."""
    module = importlib.import_module(f"dat_pipeline.{name}")
    saved = sys.argv
    sys.argv = [f"dat {name}", *argv]
    try:
        module.main()
    finally:
        sys.argv = saved
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in HYDRA_COMMANDS:
        return run_entry_point(argv[0], argv[1:])
    if argv and argv[0] == "rescore":
        from dat_pipeline import rescore

        return rescore.main(argv[1:])
    return run_parsed(argv)


@runtime.one_line_errors
def run_parsed(argv: list[str]) -> int:
    args = parse_args(argv)  # before the heavy imports below, so `dat --help` answers at once
    if args.command == "dataset":
        return _dataset(args)
    import torch

    with torch.no_grad():
        return _chat(args)


def _dataset(args: argparse.Namespace) -> int:
    """``dat dataset merge|verify|from-run``: one line per dataset, what it holds."""
    from dat.dialogue.dataset import SHARDS, Dataset, merge, verify_shards

    folder = Path(args.folder)
    if args.action == "merge":
        merged = merge(folder)
        print(f"{folder}: {len(merged)} episodes merged from {merged.card['sharded']} shards, indices "
              f"0..{max(merged.indices)}, {merged.card['failed_judgements']} failed judgements")
    elif args.action == "verify":
        shards = [Dataset(p.parent) for p in sorted((folder / SHARDS).glob("*/card.json"))]
        if shards:
            verify_shards(shards)
            print(f"{folder}: {len(shards)} shards, same settings, disjoint seeds, "
                  f"{sum(len(s) for s in shards)} episodes")
        if (folder / "card.json").is_file():
            data = Dataset(folder)
            total = data.minari().total_episodes
            print(f"{folder}: {len(data)} episodes committed, {total} in the Minari data, "
                  f"{data.card['failed_judgements']} failed judgements, action space "
                  f"{data.settings['action_space']['fingerprint']}")
        elif not shards:
            Dataset(folder)  # raises, saying what the folder lacks
    else:
        _dataset_from_run(folder, Path(args.out) if args.out else folder / "dataset")
    return 0


def _dataset_from_run(run: Path, out: Path) -> None:
    """An online run's collected episodes (``<run>/episodes/round-*``) as a dataset with the run's settings."""
    from gymnasium import spaces

    from dat.dialogue.dataset import Dataset
    from dat.dialogue.episodes import load_episodes

    rounds = sorted((run / "episodes").glob("round-*"))
    if not rounds:
        raise FileNotFoundError(f"{run} holds no collected episodes (episodes/round-*); give a train.py run folder.")
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from dat.action.projection import UpProjection
    from dat.config import TrainConfig, data_settings, to_config

    if not (run / ".hydra" / "config.yaml").is_file() or not (run / "projection" / "projection.json").is_file():
        raise FileNotFoundError(f"{run} lacks .hydra/config.yaml or projection/: give a folder train.py wrote.")
    cfg = to_config(OmegaConf.load(run / ".hydra" / "config.yaml"), TrainConfig)
    episodes = [e for folder in rounds for e in load_episodes(folder)]
    steered = next(e for e in episodes if not e.judgement_failed)
    lm = SimpleNamespace(name=cfg.model.name, hidden_size=int(steered.states.shape[1]))
    card = {"settings": data_settings(cfg, UpProjection.load(run / "projection"), lm), "seed": cfg.seed,
            "shard": 0, "shards": 1, "behaviour": "the run's rounds: random in round 0, then its planner + noise",
            "scenarios": cfg.env.scenarios.train, "from_run": str(run.resolve())}
    data = Dataset.create(out, card, spaces.Box(-float("inf"), float("inf"), steered.states.shape[1:]),
                          spaces.Box(-1.0, 1.0, steered.actions.shape[1:]))
    todo = [(i, e) for i, e in enumerate(episodes) if i not in set(data.indices)]
    if todo:
        data.append([e for _, e in todo], [i for i, _ in todo])
    print(f"{out}: {len(data)} episodes from {len(rounds)} rounds of {run}")


def _chat(args: argparse.Namespace) -> int:
    """``dat chat``: one dialogue of the task, the planner steering one side (or nobody)."""
    from dat.dialogue.rules import Dialogue, EnvConfig, Lockstep
    from dat.lm.frozen import FrozenLM, SamplingConfig
    from dat.lm.loading import ModelConfig
    from dat.seeding import derive_seed
    from envs.scenarios import load_scenarios

    policy = None
    if args.policy:
        from dat.rl.export import DATPolicy

        DATPolicy.check_source(args.policy)
        policy = DATPolicy.from_pretrained(args.policy)
    model = args.model or (policy.base_model if policy is not None else "smollm2-135m-instruct")
    lm = FrozenLM.load(ModelConfig(name=model))
    tasks = load_scenarios(args.scenarios)
    task = next((t for t in tasks if t.id == args.task), None) if args.task else tasks[0]
    if task is None:
        print(f"No task {args.task!r} in {args.scenarios}; ids: {', '.join(t.id for t in tasks[:20])} …")
        return 2
    sampling = SamplingConfig(max_new_tokens=args.max_new_tokens, do_sample=not args.greedy, seed=args.seed)
    cfg = EnvConfig(max_turns=args.turns, sampling=sampling, steered=args.side, partner_opens=False)
    dialogue = Dialogue.open(task, args.side, False, cfg)
    names = task.record([], args.side).names
    print(f"[{task.id}] {names[args.side]} ({'steered' if policy else 'unsteered'}) talks with "
          f"{names[1 - args.side]} ({'you' if args.interactive else 'the model'}).\n")
    if args.interactive:
        return _interactive(lm, policy, dialogue, cfg, names, args.seed)
    # With --compare an unsteered twin plays in the same batch (NaN actions: no prefix), turn by turn.
    dialogues = [dialogue, Dialogue.open(task, args.side, False, cfg)] if args.compare and policy else [dialogue]
    lockstep = Lockstep(lm, policy.projection if policy is not None else None, cfg)
    lockstep.start(dialogues, args.seed)
    for rnd in range(cfg.max_turns):
        live = [d for d in dialogues if not d.done]
        actions = None
        if policy is not None:
            actions = policy.act(lockstep.observe(live))
            actions[[i for i, d in enumerate(live) if d is not dialogue]] = float("nan")
        shown = [len(d.turns) for d in live]
        lockstep.step(live, actions, (derive_seed(args.seed, rnd, 0), derive_seed(args.seed, rnd, 1)))
        for d, first in zip(live, shown, strict=True):
            label = "" if len(dialogues) == 1 else ("[steered]   " if d is dialogue else "[unsteered] ")
            for turn in d.turns[first:]:
                print(f"{label}{names[turn.agent]}: {turn.text}")
        if all(d.done for d in dialogues):
            break
    return 0


def _interactive(lm: FrozenLM, policy, dialogue: Dialogue, cfg: EnvConfig, names, seed: int) -> int:
    from dat.dialogue.rules import says_leave
    from dat.records import Utterance, clean_utterance
    from dat.seeding import derive_seed

    print(f"(type your lines as {names[dialogue.partner]}; an empty line or '{cfg.leave_phrase}' ends)\n")
    for rnd in range(cfg.max_turns):
        view = dialogue.view(dialogue.steered)
        prefix = None
        if policy is not None:
            prefix = policy.prefixes(lm.states([view], layer=policy.state_layer, pool=policy.state_pool))
        position = policy.position if policy is not None else "start"
        text = lm.generate([view], prefix, replace(cfg.sampling, seed=derive_seed(seed, rnd)), position=position)
        line = clean_utterance(text[0])
        dialogue.turns.append(Utterance(dialogue.steered, line))
        print(f"{names[dialogue.steered]}: {line}")
        if says_leave(line, cfg.leave_phrase):
            break
        try:
            reply = input(f"{names[dialogue.partner]}: ").strip()
        except EOFError:
            break
        if not reply or says_leave(reply, cfg.leave_phrase):
            break
        dialogue.turns.append(Utterance(dialogue.partner, reply))
    return 0


if __name__ == "__main__":
    sys.exit(main())
