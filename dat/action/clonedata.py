"""Self-cloning data: the chats a projection is cloned on, and the replies the model gives to them.

Kept apart from the training loop (``dat.action.selfclone``). The chats themselves are built by the env's
own rules (``dat.dialogue.openings``), so the cloning prompts look exactly like the prompts the planner
acts on later.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tqdm.auto import tqdm

from dat.lm.promptcache import PromptCache
from dat.seeding import derive_seed

if TYPE_CHECKING:
    from dat.action.selfclone import SelfCloneConfig

Chat = Sequence[Mapping[str, str]]


@dataclass
class CloneData:
    """Cloning targets: reply ``i`` was sampled for dialogue ``index[i]``; ``ended[i]``: it ended with EOS."""

    dialogues: list[list[dict]]
    index: list[int]
    replies: list[str]
    ended: list[bool]


def sample_targets(cache: PromptCache, cfg: SelfCloneConfig, rows_per_call: int = 32) -> CloneData:
    """``replies_per_dialogue`` sampled replies per cached dialogue (replies without letters dropped)."""
    wanted = [i for i in range(len(cache)) for _ in range(cfg.replies_per_dialogue)]
    data = CloneData([], [], [], [])
    for start in tqdm(range(0, len(wanted), rows_per_call), desc="self-clone targets", leave=False):
        chunk = wanted[start : start + rows_per_call]
        out = cache.generate(chunk, None, cfg.sampling, seed=derive_seed(cfg.seed, "selfclone-targets", start))
        lengths = [len(t) for t in cache.targets(out, add_end=False)]
        for i, reply, n in zip(chunk, out, lengths, strict=True):
            if any(c.isalpha() for c in reply):
                data.index.append(i)
                data.replies.append(reply)
                data.ended.append(n < cfg.sampling.max_new_tokens)
    return data
