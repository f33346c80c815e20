"""Judge configuration: validation, the dat_pipeline/conf/judge YAML group, and the factory."""

from __future__ import annotations

from dat_pipeline import CONF

import dataclasses
import inspect

import pytest
from omegaconf import OmegaConf

from dat.judges import config as config_module
from dat.judges.cache import CachedJudge
from dat.judges.config import BACKENDS, JudgeConfig
from dat.judges.factory import make_judge
from dat.judges.rule import RuleJudge

JUDGE_CONF = CONF / "judge"


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_yaml_is_a_valid_judge_config(backend):
    node = OmegaConf.merge(OmegaConf.structured(JudgeConfig), OmegaConf.load(JUDGE_CONF / f"{backend}.yaml"))
    cfg = OmegaConf.to_object(node)
    assert cfg.backend == backend and cfg.validate() is cfg
    assert cfg.weights.weights == {"goal": 1.0} and not cfg.weights.overall


def test_every_config_field_has_a_docstring():
    m = config_module
    for cls in (m.JudgeConfig, m.ApiJudgeConfig, m.LocalJudgeConfig, m.EmbeddingJudgeConfig,
                m.RuleJudgeConfig, m.RewardWeights):
        lines = [text.strip() for text in inspect.getsource(cls).splitlines()]
        for f in dataclasses.fields(cls):
            at = next(i for i, text in enumerate(lines) if text.startswith(f"{f.name}:"))
            assert lines[at + 1].startswith('"""'), f"{cls.__name__}.{f.name}"


@pytest.mark.parametrize("change, message", [
    ({"backend": "gpt"}, "judge.backend='gpt'"),
    ({"local": {"dimensions": ["goal", "charm"]}}, "unknown 'charm'"),
    ({"local": {"agents": "all"}}, "judge.local.agents='all'"),
    ({"weights": {"weights": {"goal": 0.0}}}, "positive sum"),
    ({"embedding": {"low": 0.5, "high": 0.5}}, "high must be greater"),
])
def test_bad_configs_name_the_field(change, message):
    cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(JudgeConfig), change))
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        cfg.validate()


def test_factory_builds_the_backend_and_wraps_it_in_the_cache(tmp_path):
    cfg = JudgeConfig(backend="rule")
    judge = make_judge(cfg, cache_dir=tmp_path)
    assert isinstance(judge, CachedJudge) and isinstance(judge.judge, RuleJudge)
    assert (tmp_path / "judgements.sqlite").exists()
    assert isinstance(make_judge(JudgeConfig(backend="rule", cache=False)), RuleJudge)


def test_factory_reuses_the_given_lm_for_the_local_backend(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    class LM:  # the attributes of a FrozenLM the judge uses
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
        name = "tiny"

    judge = make_judge(JudgeConfig(backend="local", cache=False), lm=LM())
    assert (judge.name, judge.model) == ("local", "tiny") and judge.lm is LM.model
    judge = make_judge(JudgeConfig(backend="local", cache=False, local=config_module.LocalJudgeConfig(
        model=str(tiny_model_dir), dimensions=["goal"])))
    assert judge.dimensions == ("goal",)
