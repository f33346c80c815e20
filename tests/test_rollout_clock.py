"""The forward-pass clock (``dat.lm.clock``, read by ``benchmarks/rollout.py``): decoding steps told from reads, each
pass timed once."""

from __future__ import annotations

from dataclasses import replace

import pytest

from dat.lm.clock import ForwardClock
from dat.lm.frozen import FrozenLM
from dat.lm.loading import ModelConfig
from tests.dialogue_tasks import GREEDY

CHATS = [
    [{"role": "system", "content": "You sell a used road bike."}, {"role": "user", "content": "Would you take $80?"}],
    [{"role": "user", "content": "The heater is broken and I need it repaired this week, please."}],
]


def test_clock_counts_one_read_then_a_step_per_new_token(tiny_model_dir) -> None:
    lm = FrozenLM.load(ModelConfig(name=str(tiny_model_dir), memo_entries=0))
    longest = max(lm.count_tokens(c) for c in CHATS)
    with ForwardClock(lm) as clock:
        lm.generate(CHATS, sampling=replace(GREEDY, max_new_tokens=6))
    # The read makes the first token; each later one is a step over both rows (a finished row stays in).
    # The decoder's call inside the model's is the same pass, counted once.
    assert clock.reads == 1 and clock.read_tokens >= 2 * longest
    assert 1 <= clock.steps <= 5 and clock.step_rows == 2 * clock.steps
    row = clock.row(clock.step_seconds + clock.read_seconds + 1.0)
    assert row["decode_steps"] == clock.steps and row["read_forwards"] == 1
    assert row["outside_model_seconds"] == pytest.approx(1.0, abs=0.05)
    lm.states(CHATS)  # after the block: the hooks are gone
    assert clock.reads == 1


def test_clock_counts_a_state_pass_through_the_decoder_alone(tiny_model_dir) -> None:
    lm = FrozenLM.load(ModelConfig(name=str(tiny_model_dir), memo_entries=0))
    with ForwardClock(lm) as clock:
        lm.states(CHATS)
    assert (clock.reads, clock.steps) == (1, 0) and clock.read_seconds > 0
