"""Small hand-written tasks, a deterministic judge, a recording LM and their fixtures for the dialogue tests.

Its fixtures are registered for every test module (``conftest.pytest_plugins``): ``lm``, a RecordingLM of
the tiny model, and ``proj``, a PCA projection of it (a module's own ``lm`` fixture takes precedence).
GREEDY decoding and a leave phrase that is NEVER said make dialogues deterministic and full length.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from dat.action.projection import PrefixConfig, UpProjection
from dat.lm.frozen import FrozenLM, SamplingConfig
from dat.lm.loading import ModelConfig
from dat.records import DialogueRecord
from envs.scenarios import AgentProfile, RelationshipType, Scenario, Task


def _person(pk: str, first: str, secret: str) -> AgentProfile:
    return AgentProfile(pk, first, "Doe", 30, "Baker", "Woman", "She/her", "Bakes bread.", "", (), (), "",
                        "", secret)


def make_tasks(n: int = 3) -> list[Task]:
    """``n`` short tasks whose goals and secrets carry unmistakable markers (GOAL-i-k, SECRET-i-k)."""
    tasks = []
    for k in range(n):
        scenario = Scenario(
            f"s{k}", f"deal{k}", f"Two friends talk about a bike, round {k}.",
            (f"Buy the bike for $80. GOAL-{k}-0", f"Sell the bike for $150. GOAL-{k}-1"),
            RelationshipType.friend, "test",
        )
        agents = (_person(f"a{k}", "Ann", f"SECRET-{k}-0"), _person(f"b{k}", "Bea", f"SECRET-{k}-1"))
        tasks.append(Task(f"s{k}/1", scenario, agents))
    return tasks


class LengthJudge:
    """Reward = characters said by the steered agent / 100; ``fail_after`` turns make it fail (None)."""

    def __init__(self, fail_after: int | None = None):
        self.fail_after = fail_after
        self.calls: list[int] = []

    def __call__(self, records: Sequence[DialogueRecord]) -> list[float | None]:
        self.calls.append(len(records))
        return [None if self.fail_after is not None and len(r.turns) > self.fail_after
                else sum(len(t.text) for t in r.turns if t.agent == r.steered) / 100 for r in records]


class RecordingLM(FrozenLM):
    """The real FrozenLM, keeping every chat it is asked to read (and whether it got a prefix)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen: list[tuple[str, list[dict], bool]] = []

    def states(self, dialogues, layer=-1, caches=None, pool="last"):
        self.seen += [("states", list(d), False) for d in dialogues]
        return super().states(dialogues, layer, caches, pool)

    def generate(self, dialogues, prefix_embeds=None, sampling=None, position="start", seed=None, caches=None):
        prefixes = list(prefix_embeds) if prefix_embeds is not None else [None] * len(dialogues)
        self.seen += [("generate", list(d), p is not None) for d, p in zip(dialogues, prefixes, strict=True)]
        return super().generate(dialogues, prefix_embeds, sampling, position, seed, caches)


GREEDY = SamplingConfig(do_sample=False, max_new_tokens=8, repetition_penalty=1.0)
NEVER = "zq-never-said-qz"
"""A leave phrase no dialogue says, so episodes run to max_turns."""


@pytest.fixture(scope="module")
def lm(tiny_model_dir) -> RecordingLM:
    return RecordingLM.load(ModelConfig(name=str(tiny_model_dir), memo_entries=0))


@pytest.fixture(scope="module")
def proj(lm) -> UpProjection:
    return UpProjection.pca(lm.model.get_input_embeddings().weight, PrefixConfig(action_dim=4, tokens=2))
