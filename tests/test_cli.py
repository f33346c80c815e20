"""`dat chat`: a steered dialogue from an export, with the model or a human (stdin) as the partner."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from gymnasium import spaces

import dat_cli
from dat.action.projection import PrefixConfig, build_projection
from dat.lm.frozen import FrozenLM
from dat.lm.loading import ModelConfig
from dat.rl.export import DATPolicy
from dat.rl.td3bc import TD3BC, AlgoConfig, NetArch


@pytest.fixture(autouse=True)
def user_cache(monkeypatch, tmp_path_factory):
    """The command loads the export's base model through the user cache: keep it in a temp folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg"))


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    folder = tmp_path_factory.mktemp("chat")
    lm = FrozenLM.load(ModelConfig(name="tiny-random", cache_dir=str(folder / "cache")))
    obs = spaces.Box(-np.inf, np.inf, (lm.hidden_size,), np.float32)
    algo = TD3BC.from_config(AlgoConfig(net_arch=NetArch([8], [8])), observation_space=obs,
                             action_space=spaces.Box(-1, 1, (4,), np.float32), seed=0)
    projection = build_projection(lm.model.get_input_embeddings().weight, PrefixConfig(action_dim=4, norm=4.0))
    DATPolicy.from_trained(algo, projection, "tiny-random").save_pretrained(folder / "export")
    return folder / "export"


def test_chat_with_the_model_as_partner(export, capsys):
    code = dat_cli.main(["chat", "--policy", str(export), "--turns", "2", "--greedy", "--max-new-tokens", "6"])
    out = capsys.readouterr().out
    assert code == 0 and "(steered) talks with" in out
    assert len([line for line in out.splitlines() if ": " in line and not line.startswith("[")]) >= 2


def test_chat_with_a_human_partner(export, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("Hello there, how much is it?\n\n"))
    code = dat_cli.main(["chat", "--policy", str(export), "--interactive", "--greedy", "--max-new-tokens", "6"])
    assert code == 0
    assert "type your lines" in capsys.readouterr().out


def test_unknown_task_is_explained(export, capsys):
    assert dat_cli.main(["chat", "--policy", str(export), "--task", "no-such-task"]) == 2
    assert "No task 'no-such-task'" in capsys.readouterr().out


def test_export_steers_what_it_says(export):
    policy = DATPolicy.from_pretrained(export)
    assert policy(torch.zeros(2, policy.state_mean.shape[0])).shape == (2, 2, policy.state_mean.shape[0])


def test_chat_compares_the_steered_reply_with_the_unsteered_one(export, capsys):
    code = dat_cli.main(["chat", "--policy", str(export), "--turns", "1", "--greedy", "--max-new-tokens", "6",
                         "--compare"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    steered = [line for line in lines if line.startswith("[steered]")]
    unsteered = [line for line in lines if line.startswith("[unsteered]")]
    assert len(steered) == len(unsteered) == 2  # the steered line and the partner's reply, in each dialogue
