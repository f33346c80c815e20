"""The contrastive behaviour basis: pair selection, the objective raising the margin, the settings-checked cache."""

from __future__ import annotations

import copy
import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from dat.action.basis import PREBUILT, BasisTrainer, basis_folder, ensure_basis, prebuilt_folder
from dat.action.behaviours import Behaviour, BehaviourConfig, PromptInfo, Scorers, contrastive_loss, select_pairs
from dat.action.projection import PrefixConfig, UpProjection
from dat.dialogue.openings import prompt_info
from dat.lm.frozen import FrozenLM, SamplingConfig
from dat.lm.loading import ModelConfig
from envs.scenarios import load_scenarios
from tests.test_selfclone import DIALOGUES

LONG_SHORT = [Behaviour("long", "length", "up"), Behaviour("short", "length", "down")]
PREFIX = PrefixConfig(kind="behaviours", position="before_reply", tokens=2, action_dim=2, sharpness=30.0)
INFOS = [PromptInfo(goal="sell the bike", rules=r"\$\d+") for _ in DIALOGUES]


def config(**overrides) -> BehaviourConfig:
    base = dict(behaviours=LONG_SHORT, pool=6, top=2, steps=12, batch_size=4, lr=0.1, beta=0.5,
                sampling=SamplingConfig(max_new_tokens=8, temperature=1.0), checkpoint_every=4, seed=3)
    return BehaviourConfig(**{**base, **overrides})


@pytest.fixture(scope="module")
def lm(tiny_model_dir) -> FrozenLM:
    return FrozenLM.load(ModelConfig(name=str(tiny_model_dir), memo_entries=0))


def test_pairs_are_the_top_replies_against_the_bottom_ones_by_the_scorer():
    scores = np.array([0.2, -0.8, 0.9, 0.0, 0.5, -0.3])
    assert select_pairs(scores, 2) == [(2, 1), (2, 5), (4, 1), (4, 5)]
    assert select_pairs(scores, 2, "down") == [(1, 2), (1, 4), (5, 2), (5, 4)]
    assert select_pairs(np.array([1.0, 1.0, 0.0]), 2) == [(0, 2), (1, 2)]  # ties are never a pair
    scorers = Scorers(INFOS)
    texts = ["I love this, thank you!", "This is awful.", "Fine. Is it $120?", "ok"]
    assert select_pairs(scorers(Behaviour("p", "sentiment"), 0, texts), 1) == [(0, 1)]
    assert scorers(Behaviour("r", "rules"), 0, texts).tolist() == [0, 0, 1, 0]
    assert scorers(Behaviour("q", "question"), 0, texts).tolist() == [0, 0, 1, 0]
    assert select_pairs(scorers(Behaviour("s", "length"), 0, texts), 1, "down") == [(3, 0)]


def test_the_probe_scorer_is_the_prompts_own_test_of_each_reply():
    task = next(t for t in load_scenarios("probes") if t.record([], 0).names[0] == "letter_b")  # starts with B
    info = prompt_info(task.record([], 0))
    scorers = Scorers([info, PromptInfo(goal="sell the bike")])
    texts = ["Books are a fine choice.", "Maybe a walk?", "  bright idea: baking"]
    assert scorers(Behaviour("on_rule", "probe"), 0, texts).tolist() == [1.0, 0.0, 1.0]
    assert select_pairs(scorers(Behaviour("on_rule", "probe"), 0, texts), 1) == [(0, 1)]
    assert scorers(Behaviour("on_rule", "probe"), 1, texts).tolist() == [0.0, 0.0, 0.0]  # no test: no pairs
    bundled = load_scenarios("bundled")[0].record([], 0)
    assert prompt_info(bundled).test is None and prompt_info(bundled).names == tuple(bundled.names)


def test_contrastive_loss_is_dpo_on_the_implicit_margin():
    chosen, rejected = torch.tensor([-10.0]), torch.tensor([-12.0])
    loss = contrastive_loss(chosen, torch.tensor([-11.0]), rejected, torch.tensor([-11.0]), beta=0.5)
    assert float(loss) == pytest.approx(-np.log(1 / (1 + np.exp(-0.5 * 2.0))))


def test_a_trained_behaviour_prefix_raises_its_chosen_rejected_margin(lm, tmp_path):
    trainer = BasisTrainer(lm, DIALOGUES, INFOS, PREFIX, config(), tmp_path / "basis")
    projection = trainer.train(progress=False)
    record = UpProjection.record_of(tmp_path / "basis")
    for behaviour in record["behaviours"]:
        assert behaviour["pairs"] > 0
        assert behaviour["margin_after"] > behaviour["margin_before"] + 1.0, behaviour
        assert behaviour["pairs_ranked_after"] >= behaviour["pairs_ranked_before"]
        assert max(behaviour["norms_x_token"]) <= 8.0 + 1e-4  # the norm clip holds
    # A sharp softmax over the action picks one behaviour's prefix.
    out = projection(torch.tensor([[1.0, -1.0], [-1.0, 1.0]]))
    assert torch.allclose(out[0], projection.basis[0], atol=1e-5)
    assert torch.allclose(out[1], projection.basis[1], atol=1e-5)
    loaded = UpProjection.load(tmp_path / "basis")
    assert torch.equal(loaded.basis, projection.basis) and loaded.cfg.kind == "behaviours"


def test_a_basis_of_three_behaviours_raises_each_ones_own_margin_and_counts_its_positives(lm, tmp_path):
    three = [*LONG_SHORT, Behaviour("vowels", "regex", "up", pattern="[aeiou]{2}")]
    trainer = BasisTrainer(lm, DIALOGUES, INFOS, replace(PREFIX, action_dim=3), config(behaviours=three),
                           tmp_path / "basis")
    projection = trainer.train(progress=False)
    record = UpProjection.record_of(tmp_path / "basis")
    assert [b["name"] for b in record["behaviours"]] == ["long", "short", "vowels"]
    for behaviour in record["behaviours"]:
        assert behaviour["margin_after"] > behaviour["margin_before"] + 1.0, behaviour
        own = behaviour["positives"]["model"]
        assert own["replies"] == len(DIALOGUES) * 6 and 0 <= own["shown"] <= own["replies"]
    vowels = record["behaviours"][2]["positives"]["model"]["shown"]
    assert 0 < vowels < len(DIALOGUES) * 6  # real positives, and real negatives to contrast them with
    corners = torch.eye(3) * 2 - 1  # each behaviour's corner picks its own prefix
    for k in range(3):
        assert torch.allclose(projection(corners[k:k + 1])[0], projection.basis[k], atol=1e-5)


def test_a_behaviours_own_nll_weight_changes_its_prefix_alone_and_joins_the_fingerprint(lm, tmp_path):
    """One prefix may need the NLL term where the others do not: a behaviour's own ``nll`` trains its prefix as the
    basis-wide weight would, leaves the other prefixes as they are, and is part of the basis's settings (a
    behaviour without it is recorded as before, so existing bases still match)."""
    from dat.action.behaviours import basis_settings

    plain = BasisTrainer(lm, DIALOGUES, INFOS, PREFIX, config(), tmp_path / "plain").train(progress=False)
    own = [replace(LONG_SHORT[0], nll=2.0), LONG_SHORT[1]]
    mixed = BasisTrainer(lm, DIALOGUES, INFOS, PREFIX, config(behaviours=own), tmp_path / "mixed").train(progress=False)
    wide = BasisTrainer(lm, DIALOGUES, INFOS, PREFIX, config(nll=2.0), tmp_path / "wide").train(progress=False)
    assert not torch.allclose(mixed.basis[0], plain.basis[0])
    assert torch.equal(mixed.basis[0], wide.basis[0]) and torch.equal(mixed.basis[1], plain.basis[1])
    recorded = [basis_settings("m", PREFIX, config(behaviours=b))["behaviours"]["behaviours"]
                for b in (LONG_SHORT, own)]
    assert "nll" not in recorded[0][0] and recorded[1][0]["nll"] == 2.0 and "nll" not in recorded[1][1]
    with pytest.raises(ValueError, match=r"behaviours\[long\]\.nll=-1"):
        ensure_basis(lm, lambda: (DIALOGUES, INFOS), PREFIX, config(behaviours=[replace(own[0], nll=-1.0), own[1]]),
                     tmp_path, progress=False)


def test_a_deep_behaviour_prefix_trains_its_layer_rows_and_is_cached_apart(lm, tmp_path):
    deep = replace(PREFIX, depth="layers")
    projection = ensure_basis(lm, lambda: (DIALOGUES, INFOS), deep, config(steps=8), tmp_path, progress=False)
    assert projection.basis.shape == (2, lm.layers, 2, lm.hidden_size)
    assert projection.basis[:, 1:].abs().sum() > 0  # the layer rows moved from zero
    for behaviour in UpProjection.record_of(tmp_path / "behaviours" / "sentiment")["behaviours"]:
        assert behaviour["margin_after"] > behaviour["margin_before"], behaviour
        assert max(behaviour["layer_norms_x_hidden"]) <= 8.0 + 1e-4  # each row's norm clip holds
    with pytest.raises(ValueError, match="other settings \\(prefix\\)"):  # an input basis is not this one
        ensure_basis(lm, lambda: (DIALOGUES, INFOS), PREFIX, config(steps=8), tmp_path, progress=False)


def test_basis_is_reused_only_with_the_same_settings_and_resumes_a_partial_run(lm, tmp_path):
    calls = []

    def prompts():
        calls.append(1)
        return DIALOGUES, INFOS

    first = ensure_basis(lm, prompts, PREFIX, config(), tmp_path, progress=False)
    again = ensure_basis(lm, prompts, PREFIX, config(), tmp_path, progress=False)
    assert calls == [1] and torch.equal(first.basis, again.basis)  # reused, prompts never rebuilt
    with pytest.raises(ValueError, match="other settings \\(behaviours\\)"):
        ensure_basis(lm, prompts, PREFIX, config(beta=0.2), tmp_path, progress=False)
    # A run stopped after its first behaviour finishes the second only, on the stored pool.
    folder = tmp_path / "behaviours" / "sentiment"
    (folder / "projection.json").unlink()
    (folder / "short.safetensors").unlink()
    long_before = (folder / "long.safetensors").read_bytes()
    pool = json.loads((folder / "pool.json").read_text())
    resumed = ensure_basis(lm, prompts, PREFIX, config(), tmp_path, progress=False)
    assert (folder / "long.safetensors").read_bytes() == long_before
    assert json.loads((folder / "pool.json").read_text()) == pool
    assert not list(folder.glob("*.checkpoint.pt"))  # a finished behaviour leaves no checkpoint behind
    assert resumed.basis.shape == (2, 2, lm.hidden_size)


def test_a_basis_made_on_other_dialogue_prompts_is_refused_not_reused(lm, tmp_path):
    """The prompts a basis is trained on depend on the dialogue rules (the opening cue shapes the partner's first
    line, the wording the system text): a basis made under another cue is stale, so it is refused by name, and a
    shipped one made under another cue is passed over."""
    from dat.dialogue.openings import prompt_settings
    from dat.dialogue.rules import EnvConfig

    old, new = (prompt_settings(EnvConfig(opening_cue=cue), "bundled:train") for cue in ("Hi.", "Hello! Please start."))
    assert old != new and new["opening_cue"] == "Hello! Please start." and "ids" not in new
    ensure_basis(lm, lambda: (DIALOGUES, INFOS), PREFIX, config(steps=2), tmp_path, progress=False, dialogue=old)
    again = ensure_basis(lm, lambda: (DIALOGUES, INFOS), PREFIX, config(steps=2), tmp_path, progress=False,
                         dialogue=json.loads(json.dumps(old)))  # as read back from the record
    assert again.basis.shape == (2, 2, lm.hidden_size)
    with pytest.raises(ValueError, match="other settings \\(dialogue\\)"):
        ensure_basis(lm, lambda: (DIALOGUES, INFOS), PREFIX, config(steps=2), tmp_path, progress=False, dialogue=new)
    named = FrozenLM(lm.model, lm.tokenizer, name="tiny-random")
    shipped = tmp_path / "shelf" / "tiny-random" / "sentiment"
    shutil.copytree(basis_folder(tmp_path, config()), shipped)
    made = []
    ensure_basis(named, lambda: made.append(1) or (DIALOGUES, INFOS), PREFIX, config(steps=2), tmp_path / "user",
                 progress=False, prebuilt=tmp_path / "shelf", dialogue=new)
    assert made == [1]  # made here, on the current prompts


def test_a_prebuilt_basis_with_the_same_settings_is_copied_into_the_cache_instead_of_made(lm, tmp_path):
    named = FrozenLM(lm.model, lm.tokenizer, name="tiny-random")  # shipped bases are found by model name
    calls = []

    def prompts():
        calls.append(1)
        return DIALOGUES, INFOS

    made = ensure_basis(named, prompts, PREFIX, config(steps=3), tmp_path / "maker", progress=False)
    shelf = tmp_path / "shelf"
    shipped = shelf / "tiny-random" / "sentiment"
    shipped.mkdir(parents=True)
    for name in ("projection.json", "projection.safetensors"):
        shutil.copy2(tmp_path / "maker" / "behaviours" / "sentiment" / name, shipped / name)

    taken = ensure_basis(named, prompts, PREFIX, config(steps=3), tmp_path / "user", progress=False, prebuilt=shelf)
    assert calls == [1] and torch.equal(taken.basis, made.basis)  # nothing made: the shipped copy, now cached
    cached = tmp_path / "user" / "behaviours" / "sentiment"
    assert (cached / "projection.json").read_bytes() == (shipped / "projection.json").read_bytes()
    assert sorted(p.name for p in cached.iterdir()) == ["projection.json", "projection.safetensors"]
    # Other settings, or prebuilt=false: the shipped copy is passed over and the basis is made here.
    ensure_basis(named, prompts, PREFIX, config(steps=2), tmp_path / "other", progress=False, prebuilt=shelf)
    ensure_basis(named, prompts, PREFIX, config(steps=3, prebuilt=False), tmp_path / "own", progress=False,
                 prebuilt=shelf)
    assert calls == [1, 1, 1]
    assert prebuilt_folder(str(tmp_path), config(), shelf) is None  # a model given as a path has no shipped copy


def test_each_dtype_gets_its_own_basis_side_by_side(lm, tmp_path):
    """A basis trained against the float32 model is not used by the bfloat16 one: each dtype's is made (or
    found shipped) in that dtype and cached beside the other, the dtype in its settings. A float32 basis
    records no dtype, so those made before the dtype was recorded still match."""
    half = FrozenLM(copy.deepcopy(lm.model).to(torch.bfloat16), lm.tokenizer, name=lm.name)
    calls = []

    def prompts():
        calls.append(1)
        return DIALOGUES, INFOS

    full = ensure_basis(lm, prompts, PREFIX, config(steps=2), tmp_path, progress=False)
    made = ensure_basis(half, prompts, PREFIX, config(steps=2), tmp_path, progress=False)
    again = ensure_basis(half, prompts, PREFIX, config(steps=2), tmp_path, progress=False)
    assert calls == [1, 1] and torch.equal(made.basis, again.basis)
    assert not torch.equal(full.basis, made.basis)
    assert basis_folder(tmp_path, config(), "bfloat16") == tmp_path / "behaviours" / "sentiment@bfloat16"
    assert "dtype" not in UpProjection.record_of(basis_folder(tmp_path, config()))["settings"]
    assert UpProjection.record_of(basis_folder(tmp_path, config(), "bfloat16"))["settings"]["dtype"] == "bfloat16"
    # A shipped copy is found per dtype too.
    named = FrozenLM(half.model, lm.tokenizer, name="tiny-random")
    made = ensure_basis(named, prompts, PREFIX, config(steps=2), tmp_path / "maker", progress=False)
    shipped = tmp_path / "shelf" / "tiny-random" / "sentiment@bfloat16"
    shutil.copytree(basis_folder(tmp_path / "maker", config(), "bfloat16"), shipped)
    assert prebuilt_folder("tiny-random", config(), tmp_path / "shelf") is None
    assert prebuilt_folder("tiny-random", config(), tmp_path / "shelf", "bfloat16") == shipped
    taken = ensure_basis(named, prompts, PREFIX, config(steps=2), tmp_path / "user", progress=False,
                         prebuilt=tmp_path / "shelf")
    assert calls == [1, 1, 1] and torch.equal(taken.basis, made.basis)


def test_the_default_run_finds_its_basis_shipped_with_the_package():
    """The default config's basis ships prebuilt in float32 and in bfloat16, made with exactly the default
    settings on the default dialogue prompts: a config change that would silently make every first run train it
    again (ten minutes here) fails this test instead."""
    from hydra import compose, initialize_config_dir

    from dat.action.behaviours import basis_settings
    from dat.config import to_config
    from dat.stage1 import basis_dialogue
    from tests.test_train import CONF

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = to_config(compose("train"))
    for dtype in ("float32", "bfloat16"):  # the default model.dtype, and the one that runs faster where supported
        shipped = prebuilt_folder(cfg.model.name, cfg.behaviours, dtype=dtype)
        assert shipped is not None and shipped.is_relative_to(PREBUILT), f"no prebuilt {cfg.behaviours.name!r}@{dtype}"
        record = UpProjection.record_of(shipped)
        wanted = {**basis_settings(cfg.model.name, cfg.prefix, cfg.behaviours, dtype), "dialogue": basis_dialogue(cfg)}
        assert {k: record["settings"].get(k) for k in [*wanted, "dtype"]} == {"dtype": None, **wanted}
        projection = UpProjection.load(shipped)
        assert projection.basis.shape == (cfg.prefix.action_dim, 30, cfg.prefix.tokens, 576)  # SmolLM2-135M's


def test_bad_behaviour_configs_fail_before_any_work(lm, tmp_path):
    def never():
        raise AssertionError("no work may start")

    for prefix, cfg, message in [
        (PrefixConfig(kind="behaviours", action_dim=3), config(), "action_dim=3 must equal the number"),
        (PREFIX, config(behaviours=[Behaviour("a", "vibes"), Behaviour("b")]), "scorer='vibes'"),
        (PREFIX, config(behaviours=[Behaviour("a", "regex"), Behaviour("b")]), "needs a pattern"),
        (PREFIX, config(behaviours=[Behaviour("a"), Behaviour("a")]), "distinct"),
        (PREFIX, config(behaviours=[Behaviour("a", hint="Say {price}"), Behaviour("b")]), "only \\{goal\\}"),
        (PREFIX, config(behaviours=[Behaviour("a", hint_pool=8), Behaviour("b")]), r"hint_pool=8 needs a hint"),
        (PREFIX, config(behaviours=[Behaviour("a", hint="Go.", hint_pool=1), Behaviour("b")]), r"\[a\]\.hint_pool=1"),
        (PREFIX, config(behaviours=[Behaviour("a", drop_recitals=True), Behaviour("b")]), r"drop_recitals=true needs"),
        (PREFIX, config(behaviours=[Behaviour("a", scale=0.0), Behaviour("b")]), r"\[a\]\.scale=0.0 must be > 0"),
        (PREFIX, config(behaviours=[Behaviour("a", drop_out_of_character=True), Behaviour("b")]),
         r"drop_out_of_character=true needs a hint"),
    ]:
        with pytest.raises(ValueError, match=message):
            ensure_basis(lm, never, prefix, cfg, tmp_path, progress=False)


def test_rounds_add_replies_sampled_with_the_prefix(lm, tmp_path):
    trainer = BasisTrainer(lm, DIALOGUES, INFOS, PREFIX, config(rounds=2, steps=4), tmp_path)
    trainer.train(progress=False)
    record = UpProjection.record_of(tmp_path)
    assert all(b["steps"] == 8 and b["pool"] > len(trainer.pool().text) for b in record["behaviours"])


def test_a_hinted_behaviour_learns_from_replies_sampled_with_the_hint_scored_on_the_plain_prompt(lm, tmp_path):
    hint = "Remember your goal: {goal}"
    behaviours = [Behaviour("goal", "length", "up", hint=hint), Behaviour("plain", "length", "down")]
    trainer = BasisTrainer(lm, DIALOGUES, INFOS, PREFIX, config(behaviours=behaviours, steps=4), tmp_path)
    trainer.train(progress=False)
    hinted_pool = trainer.hinted_pool(behaviours[0])
    assert set(hinted_pool.source) == {"hint:goal"} and len(hinted_pool.text) > 0
    # Reference log-probs are taken on the prompts the prefix is trained on: the plain ones, not the hinted.
    rows = list(range(min(4, len(hinted_pool.text))))
    prompts, texts = [hinted_pool.prompt[i] for i in rows], [hinted_pool.text[i] for i in rows]
    with torch.no_grad():
        plain, _ = trainer.cache.reply_logprobs(prompts, texts, None, add_end=[hinted_pool.end[i] for i in rows])
    assert np.allclose([hinted_pool.ref[i] for i in rows], plain.tolist(), atol=1e-4)
    record = {b["name"]: b for b in UpProjection.record_of(tmp_path)["behaviours"]}
    assert record["goal"]["pool"] == len(trainer.pool().text) + len(hinted_pool.text)
    assert record["plain"]["pool"] == len(trainer.pool().text)  # only the hinted behaviour sees those replies
    assert UpProjection.record_of(tmp_path)["settings"]["behaviours"]["behaviours"][0]["hint"] == hint


def test_a_behaviours_hint_pool_sizes_its_targeted_pool_alone_and_joins_the_fingerprint(lm, tmp_path):
    """A behaviour rarely shown even when hinted gets more positives from a larger targeted pool: ``hint_pool``
    replies per prompt instead of ``pool``, recorded in the settings only when set (older bases still match)."""
    from dat.action.behaviours import basis_settings

    hint = "Remember your goal: {goal}"
    sizes = {}
    for count in (None, 2 * config().pool):
        behaviours = [Behaviour("goal", "length", "up", hint=hint, hint_pool=count), Behaviour("plain", "length")]
        trainer = BasisTrainer(lm, DIALOGUES, INFOS, PREFIX, config(behaviours=behaviours), tmp_path / str(count))
        sizes[count] = len(trainer.hinted_pool(behaviours[0]).text)
        recorded = basis_settings("m", PREFIX, config(behaviours=behaviours))["behaviours"]["behaviours"]
        assert recorded[0].get("hint_pool") == count and "hint_pool" not in recorded[1]
    assert sizes[None] <= config().pool * len(DIALOGUES) < sizes[2 * config().pool]


def _hinted_pool_from(lm, folder, behaviours, sampled, infos=INFOS):
    """The first behaviour's targeted pool read from a given ``<name>.hint.json`` sample, its recorded settings and
    the texts the file still holds afterwards."""
    from dat.action.behaviours import basis_settings

    folder.mkdir()
    stored = folder / f"{behaviours[0].name}.hint.json"
    stored.write_text(json.dumps(sampled.__dict__))
    pool = BasisTrainer(lm, DIALOGUES, infos, PREFIX, config(behaviours=behaviours), folder).hinted_pool(behaviours[0])
    recorded = basis_settings("m", PREFIX, config(behaviours=behaviours))["behaviours"]["behaviours"][0]
    return pool, recorded, json.loads(stored.read_text())["text"]


def test_a_behaviour_that_drops_recitals_learns_from_no_hinted_reply_that_recites_its_hint(lm, tmp_path):
    """A hinted reply that quotes the instruction ("(Say the price you want ...)") is not the behaviour: with
    ``drop_recitals`` it leaves the targeted pool, though ``<name>.hint.json`` keeps every sampled reply."""
    from dat.action.basis import Pool

    hint = "Say the price you want as a dollar figure, like $40."
    kept, recited = ["It is yours for $35, a fair price.", "I could go to $50."], [
        "(Say the price you want as a dollar figure, like $40.)", "A dollar figure, like $40."]
    sampled = Pool(prompt=[0, 0, 1, 1], text=[kept[0], recited[0], recited[1], kept[1]], end=[True] * 4,
                   ref=[-1.0, -2.0, -3.0, -4.0], source=["hint:amount"] * 4)
    for drop in (None, True):
        behaviours = [Behaviour("amount", "regex", pattern=r"\$\d", hint=hint, drop_recitals=drop),
                      Behaviour("plain", "length")]
        pool, recorded, stored = _hinted_pool_from(lm, tmp_path / str(drop), behaviours, sampled)
        if drop:
            assert (pool.text, pool.prompt, pool.ref) == (kept, [0, 1], [-1.0, -4.0])
            assert recorded["drop_recitals"] is True
        else:
            assert pool == sampled and "drop_recitals" not in recorded  # older bases still match
        assert stored == sampled.text


def test_a_behaviour_that_drops_out_of_character_replies_learns_from_no_hinted_stage_direction(lm, tmp_path):
    """A hint reaches the model as a bracketed aside and the model often answers in kind; with
    ``drop_out_of_character`` such a hinted reply (by the gate's own in-character test, which needs the agents'
    names) leaves the targeted pool, while ``<name>.hint.json`` keeps every sampled reply."""
    from dat.action.basis import Pool

    infos = [replace(info, names=("Jun Park", "Helena Brandt")) for info in INFOS]
    kept = ["Could we meet at noon?", "Helena, would $50 work?"]
    dropped = ["(smiling) Ah, what brings you here?", "Helena Brandt: what do you want?", "Jun Park is asking why."]
    sampled = Pool(prompt=[0, 0, 1, 1, 1], text=[dropped[0], kept[0], dropped[1], kept[1], dropped[2]],
                   end=[True] * 5, ref=[-1.0, -2.0, -3.0, -4.0, -5.0], source=["hint:ask"] * 5)
    for drop in (None, True):
        behaviours = [Behaviour("ask", "question", hint="Ask them a question.", drop_out_of_character=drop),
                      Behaviour("plain", "length")]
        pool, recorded, stored = _hinted_pool_from(lm, tmp_path / str(drop), behaviours, sampled, infos)
        if drop:
            assert (pool.text, pool.prompt, pool.ref) == (kept, [0, 1], [-2.0, -4.0])
            assert recorded["drop_out_of_character"] is True
        else:
            assert pool == sampled and "drop_out_of_character" not in recorded  # older bases still match
        assert stored == sampled.text


def test_a_behaviours_scale_multiplies_its_trained_prefix_in_the_basis_alone(lm, tmp_path):
    from safetensors.torch import load_file

    from dat.action.behaviours import basis_settings

    behaviours = [replace(LONG_SHORT[0], scale=1.5), LONG_SHORT[1]]
    projection = BasisTrainer(lm, DIALOGUES, INFOS, PREFIX, config(behaviours=behaviours, steps=2), tmp_path).train(
        progress=False)
    trained = [load_file(str(tmp_path / f"{b.name}.safetensors"))["prefix"] for b in behaviours]
    assert torch.allclose(projection.basis[0], 1.5 * trained[0]) and torch.equal(projection.basis[1], trained[1])
    recorded = basis_settings("m", PREFIX, config(behaviours=behaviours))["behaviours"]["behaviours"]
    assert recorded[0]["scale"] == 1.5 and "scale" not in recorded[1]  # older bases still match


def test_train_makes_the_basis_in_stage_one_and_exports_it(tmp_path):
    from dat_pipeline import train as train_module

    from hydra import compose, initialize_config_dir

    from dat.config import to_config
    from dat.rl.export import DATPolicy
    from tests.test_train import CONF

    overrides = ["debug=tiny", f"model.cache_dir={tmp_path / 'cache'}", "logger=none", "loop.rounds=1",
                 "prefix=behaviours", "prefix.kind=behaviours", "prefix.action_dim=2", "behaviours.pool=4",
                 "behaviours.steps=3", "behaviours.prompts=3", "behaviours.sampling.max_new_tokens=6",
                 f"output_dir={tmp_path / 'run'}",  # reply length, not sentiment: the tiny model's words are noise
                 "behaviours.behaviours=[{name:long,scorer:length,direction:up},{name:short,scorer:length,direction:down}]"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = to_config(compose("train", overrides=overrides))
    train_module.train(cfg)
    folder = tmp_path / "cache" / "derived" / "tiny-random" / "behaviours" / "sentiment"
    record = UpProjection.record_of(folder)
    assert record["complete"] and [b["name"] for b in record["behaviours"]] == ["long", "short"]
    policy = DATPolicy.from_pretrained(tmp_path / "run" / "export")
    assert policy.projection.cfg.kind == "behaviours" and policy.projection.cfg.sharpness == 30.0
    assert torch.equal(policy.projection.basis, UpProjection.load(folder).basis)
