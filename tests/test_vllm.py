"""The vLLM backend: the same replies as the HF backend in float32, the same steering, clear errors.

The server runs from the vLLM environment that ``make vllm`` builds (``.venv-vllm``); CI builds it
before the tests. Without it the tests that need a server skip and say how to get one; the
configuration and start-up errors are checked either way.
"""

from __future__ import annotations

import sys

import pytest
import torch

from dat.config import TrainConfig, validate
from dat.lm.frozen import FrozenLM, SamplingConfig
from dat.lm.loading import ModelConfig, artefact_folder, model_folder
from dat.lm.vllmengine import VLLMConfig, VLLMEngine, VLLMError, python_for
from tests.tiny_model import build_tiny_model

GREEDY = SamplingConfig(do_sample=False, max_new_tokens=12, repetition_penalty=1.2)
CHATS = [
    [{"role": "system", "content": "You sell a bike for $180."}, {"role": "user", "content": "Would you take $80?"}],
    [{"role": "user", "content": "Could you help me finish the report before Friday?"}],
    [{"role": "system", "content": "You are a volunteer."}, {"role": "user", "content": "Food bank on Saturday?"}],
]


def _vllm_python() -> str | None:
    try:
        return python_for(VLLMConfig())
    except VLLMError:
        return None


needs_vllm = pytest.mark.skipif(_vllm_python() is None, reason="no vLLM environment here: build it with `make vllm`")


# ------------------------------------------------------------------------------ before any server
def test_config_names_the_backends_and_refuses_per_layer_prefixes_before_loading():
    cfg = TrainConfig()
    cfg.model.backend = "tgi"
    with pytest.raises(ValueError, match=r"model.backend='tgi' is not one of: hf, vllm"):
        validate(cfg)
    cfg.model.backend = "vllm"
    cfg.prefix.depth, cfg.prefix.kind, cfg.prefix.action_dim = "layers", "behaviours", 2
    with pytest.raises(ValueError, match=r"takes input prefixes only.*prefix.depth=layers"):
        validate(cfg)


def test_a_missing_vllm_environment_is_named_with_its_fix():
    cfg = TrainConfig()
    cfg.model.backend = "vllm"
    cfg.model.vllm.python = "/nowhere/bin/python"
    with pytest.raises(ValueError, match=r"/nowhere/bin/python does not exist.*make vllm"):
        validate(cfg)


def test_a_server_that_dies_while_starting_reports_its_exit_code_and_log(tiny_model_dir):
    # The project's own Python has no vLLM: the server exits at once, and the error shows why.
    cfg = VLLMConfig(python=sys.executable, start_timeout_s=60)
    with pytest.raises(VLLMError, match=r"exited with code 1 while starting") as err:
        VLLMEngine.connect(cfg, tiny_model_dir, "float32", 256)
    assert "No module named 'vllm'" in str(err.value)


def test_derived_artefacts_live_beside_the_model_folder_never_in_it(tmp_path):
    # vLLM loads every *.safetensors in a model folder as weights: a cached basis there breaks it.
    for name in ("smollm2-135m-instruct", "tiny-random"):
        cfg = ModelConfig(name=name, cache_dir=str(tmp_path))
        folder = tmp_path / "models" / name
        assert folder not in artefact_folder(cfg).parents and artefact_folder(cfg) != folder


# ------------------------------------------------------------------------------ against a real server
@pytest.fixture(scope="module")
def backends(tmp_path_factory):
    """The same tiny model (head size 32, which vLLM's CPU attention supports) behind both backends."""
    folder = build_tiny_model(tmp_path_factory.mktemp("tiny128") / "model", hidden_size=128)
    vllm = FrozenLM.load(ModelConfig(name=str(folder), backend="vllm"))
    yield FrozenLM(vllm.model, vllm.tokenizer, vllm.name), vllm
    vllm.engine.close()


def _prefixes(lm: FrozenLM, seed: int, n: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(2, lm.hidden_size, generator=generator) for _ in range(n)]


@needs_vllm
@pytest.mark.parametrize("position", ["before_reply", "start"])
def test_greedy_replies_equal_the_hf_backend_with_and_without_prefixes(backends, position):
    hf, vllm = backends
    prefixes = [*_prefixes(hf, 0, 2), None]  # a mixed batch: two steered rows, one unsteered
    for rows in (None, prefixes):
        expected = hf.generate(CHATS, rows, sampling=GREEDY, position=position)
        assert vllm.generate(CHATS, rows, sampling=GREEDY, position=position) == expected
        assert all(expected)


@needs_vllm
def test_the_same_actions_steer_the_same_way(backends):
    hf, vllm = backends
    one, other = _prefixes(hf, 1, 2)
    replies = {name: [lm.generate(CHATS, [p] * len(CHATS), sampling=GREEDY, position="before_reply")
                      for p in (None, one, other)] for name, lm in (("hf", hf), ("vllm", vllm))}
    assert replies["vllm"] == replies["hf"]
    unsteered, steered, steered_otherwise = replies["vllm"]
    assert steered != unsteered and steered != steered_otherwise  # the prefixes do move the replies


@needs_vllm
def test_sampled_rows_do_not_depend_on_their_batch(backends):
    _, vllm = backends
    # 16 long chats: more prompt tokens than one default scheduler step reads (seeded rows must survive that)
    long = [[{"role": "system", "content": f"Case {i}. " + "I can offer $90 for the bike, thank you. " * 30},
             *chat[-1:]] for i, chat in enumerate(CHATS * 6)][:16]
    assert sum(vllm.count_tokens(c) for c in long) > 4096
    sampling = SamplingConfig(max_new_tokens=12)
    batch = vllm.generate(long, sampling=sampling, seed=5)
    assert vllm.generate(long[:1], sampling=sampling, seed=5) == batch[:1]
    assert vllm.generate(long, sampling=sampling, seed=6) != batch


@needs_vllm
def test_per_layer_prefixes_are_refused_by_the_vllm_backend(backends):
    _, vllm = backends
    deep = torch.zeros(vllm.layers, 2, vllm.hidden_size)
    with pytest.raises(ValueError, match="input prefixes only"):
        vllm.generate(CHATS[:1], [deep], sampling=GREEDY, position="before_reply")


@needs_vllm
@pytest.mark.slow
def test_the_default_model_decodes_the_same_through_vllm():
    vllm = FrozenLM.load(ModelConfig(backend="vllm"))
    try:
        hf = FrozenLM(vllm.model, vllm.tokenizer, vllm.name)
        assert not list(model_folder(ModelConfig()).glob("*basis*"))
        prefixes = [p * 0.5 for p in _prefixes(hf, 2, len(CHATS))]
        sampling = SamplingConfig(do_sample=False, max_new_tokens=24)
        for rows in (None, prefixes):
            assert vllm.generate(CHATS, rows, sampling=sampling, position="before_reply") == \
                hf.generate(CHATS, rows, sampling=sampling, position="before_reply")
    finally:
        vllm.engine.close()
