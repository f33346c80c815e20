"""Self-cloning: the learned projection lowers the cloning loss, gives actions meaning, resumes exactly."""

from __future__ import annotations

from dat_pipeline import CONF

import json

import pytest
import torch

from dat.action.experimental.selfclone import Planner, SelfCloneConfig, SelfCloner, ensure_projection
from dat.action.projection import PrefixConfig, UpProjection
from dat.dialogue.openings import opening_chats
from dat.lm.frozen import FrozenLM, SamplingConfig
from dat.lm.loading import ModelConfig
from dat.lm.promptcache import PromptCache

DIALOGUES = [
    [
        {"role": "system", "content": "You sell a bike for $180."},
        {"role": "user", "content": "Would you take $80?"},
    ],
    [{"role": "system", "content": "You need help."}, {"role": "user", "content": "Hey, what is going on?"}],
    [{"role": "system", "content": "Your heater is broken."}, {"role": "user", "content": "Can it wait?"}],
    [{"role": "user", "content": "Let's volunteer at the food bank on Saturday morning."}],
]
PREFIX = PrefixConfig(kind="learned", position="before_reply", tokens=2, action_dim=8, norm=1.0)


def config(**overrides) -> SelfCloneConfig:
    base = dict(
        steps=40,
        batch_size=4,
        lr=3e-3,
        projection_lr=3e-3,
        hidden_sizes=[32],
        replies_per_dialogue=3,
        sampling=SamplingConfig(max_new_tokens=6, temperature=1.0),
        checkpoint_every=5,
        seed=1,
    )
    return SelfCloneConfig(**{**base, **overrides})


@pytest.fixture(scope="module")
def lm(tiny_model_dir) -> FrozenLM:
    return FrozenLM.load(ModelConfig(name=str(tiny_model_dir)))


@pytest.fixture(scope="module")
def trained(lm, tmp_path_factory) -> tuple[SelfCloner, dict]:
    before = [p.detach().clone() for p in lm.model.parameters()]
    cloner = SelfCloner(lm, DIALOGUES, PREFIX, config(pool="mean", depth=0.5), tmp_path_factory.mktemp("clone"))
    record = cloner.train(progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, lm.model.parameters(), strict=True))  # LM untouched
    return cloner, record


def test_cloning_lowers_the_loss_below_the_unsteered_model(trained):
    _, record = trained
    assert 9 <= record["pairs"] <= 12 and record["steps"] == 40 and record["complete"]
    assert record["loss_final"] < record["loss_init"] - 0.3
    # The target state lets the action encode the reply: better than the model without any prefix.
    assert record["loss_final"] < record["loss_unsteered"]


def test_code_prior_makes_codes_look_like_random_actions(lm, tmp_path):
    plain = SelfCloner(lm, DIALOGUES, PREFIX, config(steps=24), tmp_path / "plain")
    prior = SelfCloner(lm, DIALOGUES, PREFIX, config(steps=24, code_prior=5.0), tmp_path / "prior")
    gaps = [c.train(progress=False)["code_prior_gap"] for c in (plain, prior)]
    assert gaps[1] < 0.7 * gaps[0]  # seeds 1-4 of the sampled targets: 0.24-0.58 (a prior without effect: ~1)


def test_different_actions_give_different_greedy_replies(trained, lm):
    cloner, _ = trained
    projection = UpProjection.load(cloner.folder)
    torch.manual_seed(0)
    actions = torch.rand(6, PREFIX.action_dim) * 2 - 1
    cache = PromptCache(lm, DIALOGUES[:1])
    greedy = SamplingConfig(max_new_tokens=6, do_sample=False)
    replies = cache.generate([0] * 6, list(projection(actions).detach()), greedy)
    assert len(set(replies)) >= 3
    planner = Planner.load(cloner.folder)
    assert torch.allclose(planner(cloner.states[:3]), cloner.planner(cloner.states[:3]))


def test_resumed_training_matches_an_uninterrupted_run(lm, tmp_path):
    short = SelfCloner(lm, DIALOGUES, PREFIX, config(steps=6, checkpoint_every=3), tmp_path / "a")
    short.train(progress=False)
    resumed = SelfCloner(lm, [], PREFIX, config(steps=10, checkpoint_every=3), tmp_path / "a")  # stored data
    record = resumed.train(progress=False)
    straight = SelfCloner(lm, DIALOGUES, PREFIX, config(steps=10, checkpoint_every=3), tmp_path / "b")
    assert straight.train(progress=False)["loss_final"] == pytest.approx(record["loss_final"], abs=1e-5)
    history = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)["history"]
    assert len(history) == 10
    with pytest.raises(ValueError, match="another self-cloning config"):
        SelfCloner(lm, DIALOGUES, PREFIX, config(steps=10, lr=1e-2), tmp_path / "a").train(progress=False)


def test_dialogue_state_and_start_position_and_cached_reuse(lm, tmp_path):
    start = PrefixConfig(**{**PREFIX.__dict__, "position": "start"})
    cfg = config(steps=3, state="dialogue", name="plain")
    projection = ensure_projection(lm, DIALOGUES, start, cfg, tmp_path, progress=False)
    folder = tmp_path / "projections" / "plain"
    record = json.loads((folder / "projection.json").read_text())["record"]
    assert record["selfclone"]["state"] == "dialogue" and record["prefix"]["position"] == "start"
    assert projection.cfg.position == "start"
    stamp = (folder / "projection.safetensors").stat().st_mtime_ns
    never = lambda: pytest.fail("chats were built although the projection is cached")  # noqa: E731
    ensure_projection(lm, never, start, cfg, tmp_path, progress=False)  # complete: loaded, not retrained
    assert (folder / "projection.safetensors").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match=r"other settings \(selfclone.lr\)"):
        ensure_projection(lm, never, start, config(steps=3, state="dialogue", name="plain", lr=0.1), tmp_path)
    longer = ensure_projection(lm, DIALOGUES, start, config(steps=5, state="dialogue", name="plain"), tmp_path)
    assert UpProjection.record_of(folder)["steps"] == 5 and longer.cfg.kind == "learned"  # resumed to 5 steps


def test_bad_settings_are_rejected(lm, tmp_path):
    with pytest.raises(ValueError, match="prefix.kind"):
        SelfCloner(lm, DIALOGUES, PrefixConfig(kind="pca"), config(), tmp_path)
    with pytest.raises(ValueError, match="selfclone.state"):
        SelfCloner(lm, DIALOGUES, PREFIX, config(state="reply"), tmp_path)


@pytest.mark.parametrize("position", ["start", "before_reply"])
def test_prefix_lands_where_the_position_says(lm, position):
    ids = lm.encode(DIALOGUES[0])
    short = lm.encode(DIALOGUES[3])
    prefix = torch.full((2, lm.hidden_size), 7.0)
    batch = lm._splice([ids, short], [prefix, prefix], position)
    header = lm.tokenizer("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    for row, sample in enumerate([ids, short]):
        at = lm.insert_index(sample, position)
        pad = batch.embeds.shape[1] - len(sample) - 2
        assert batch.prefix_index[row] == at
        assert at == (1 if position == "start" else len(sample) - len(header))
        assert torch.all(batch.embeds[row, pad + at : pad + at + 2] == 7.0)
        assert batch.attention_mask[row].tolist() == [0] * pad + [1] * (len(sample) + 2)
        assert batch.position_ids[row, pad:].tolist() == list(range(len(sample) + 2))
        if position == "before_reply":
            after = lm.model.get_input_embeddings()(torch.tensor(header))
            assert torch.equal(batch.embeds[row, pad + at + 2 :], after)


@pytest.mark.parametrize("preset", ["pca_start", "experimental/pca_reply", "experimental/learned",
                                    "experimental/learned_target"])
def test_presets_compose_into_the_schemas(preset):
    from hydra import compose, initialize_config_dir

    from dat.config import register_configs, to_config

    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = to_config(compose("train", overrides=[f"prefix={preset}", "logger=none"]))
    name = preset.rpartition("/")[2]
    assert cfg.prefix.position == ("start" if name == "pca_start" else "before_reply")
    assert cfg.prefix.kind == ("pca" if name.startswith("pca") else "learned")
    if cfg.prefix.kind == "learned":
        assert cfg.selfclone.state == ("dialogue+target" if name == "learned_target" else "dialogue")
        assert cfg.selfclone.name == name


def test_opening_chats_follow_the_env_rules(lm):
    from dat.dialogue.rules import EnvConfig
    from envs.scenarios import load_scenarios

    task = load_scenarios("bundled:train")[0]
    env = EnvConfig(sampling=SamplingConfig(max_new_tokens=4, do_sample=False))
    chats = opening_chats(lm, [task], env, seed=0)
    assert len(chats) == 4  # two sides x (partner opens, steered opens)
    for chat, (side, opens) in zip(chats, [(0, True), (0, False), (1, True), (1, False)], strict=True):
        assert chat[0] == {"role": "system", "content": task.agent_view(side, leave_phrase=env.leave_phrase)}
        assert len(chat) == 2 and chat[1]["role"] == "user"
        assert (chat[1]["content"] != env.opening_cue) == opens
