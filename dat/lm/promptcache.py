"""Key/value caches of dialogue prompts, for prefixes placed just before the reply header.

With ``position="before_reply"`` everything before the prefix (system text, history) is the same
for every action, so its keys and values can be computed once per dialogue and shared by all the
actions, samples and replies that follow it. Self-cloning and the steerability benchmark score or
sample dozens of replies per dialogue; on a 2-core CPU recomputing a 250-token prompt for each of
them costs several times more than the work that actually depends on the action.

``PromptCache`` gives the same numbers as ``FrozenLM`` (same tokens, same positions, same masks;
``tests/test_promptcache.py`` checks it) for replies scored, states read, first-token
distributions and sampled replies, and is differentiable in the prefix like ``reply_logprobs``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import Tensor

from dat.lm import kvcache, layerprefix
from dat.lm.frozen import ContextOverflowError, Dialogue, FrozenLM, SamplingConfig
from dat.lm.kvcache import Cached

Prefixes = Sequence[Tensor | None] | Tensor | None


class PromptCache:
    """Per-dialogue caches of the prompt up to (not including) the reply header.

    >>> cache = PromptCache(lm, dialogues)                               # doctest: +SKIP
    >>> cache.generate([0, 0, 1], prefixes, SamplingConfig(), seed=3)   # doctest: +SKIP
    """

    def __init__(self, lm: FrozenLM, dialogues: Sequence[Dialogue], batch_size: int = 8):
        self.lm = lm
        self.header: list[int] | None = None
        heads = []
        for d in dialogues:
            ids = lm.encode(d)
            split = lm.insert_index(ids, "before_reply")
            if self.header is not None and ids[split:] != self.header:
                raise ValueError("Dialogues end with different reply headers; cache them separately.")
            self.header = ids[split:]
            heads.append(ids[:split])
        self.entries = [Cached() for _ in heads]
        for start in range(0, len(heads), batch_size):
            kvcache.extend(lm.model, self.entries[start : start + batch_size], heads[start : start + batch_size])

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def heads(self) -> list[list[int]]:
        return [e.ids for e in self.entries]

    def _suffixes(self, prefixes: Prefixes, n: int, tails: Sequence[Sequence[int]]) -> tuple[list[Tensor], list]:
        """Per sample: [prefix, reply header, tail tokens] as embeddings, and the deep prefixes' layer parts."""
        inputs, layers = layerprefix.splits(self.lm._checked_prefixes(prefixes, n))
        header = list(self.header or [])
        rows = [kvcache.suffix(self.lm.model, p, header + list(tail)) for p, tail in zip(inputs, tails, strict=True)]
        return rows, layers

    def _check_fit(self, index: Sequence[int], suffix_lengths: Sequence[int]) -> None:
        for i, s in zip(index, suffix_lengths, strict=True):
            n = len(self.entries[i])
            if n + s > self.lm.max_context:
                raise ContextOverflowError(
                    f"Dialogue {i} has {n} prompt tokens; with {s} more it exceeds the context of "
                    f"{self.lm.max_context} tokens of {self.lm.name!r}. Shorten the dialogue or the reply "
                    "budget."
                )

    def _forward(self, index: Sequence[int], rows: list[Tensor], layers: Sequence[Tensor | None] | None = None,
                 **kwargs):
        """The model over the suffixes ``rows`` on the cached prompts (each suffix starts with its prefix)."""
        self._check_fit(index, [r.shape[0] for r in rows])
        with layerprefix.added(self.lm.model, layers or [None] * len(rows), [0] * len(rows)):
            return kvcache.forward(self.lm.model, [self.entries[i] for i in index], rows, **kwargs)

    def targets(self, replies: Sequence[str], add_end: bool | Sequence[bool] = True) -> list[list[int]]:
        """Reply token ids as ``FrozenLM.reply_logprobs`` scores them (plus EOS; per reply if a list)."""
        tok = self.lm.tokenizer
        ends = [add_end] * len(replies) if isinstance(add_end, bool) else list(add_end)
        eos = [tok.eos_token_id] if tok.eos_token_id is not None else []
        return [
            tok(r, add_special_tokens=False)["input_ids"] + (eos if e else [])
            for r, e in zip(replies, ends, strict=True)
        ]

    def reply_logprobs(
        self,
        index: Sequence[int],
        replies: Sequence[str],
        prefixes: Prefixes = None,
        add_end: bool | Sequence[bool] = True,
    ) -> tuple[Tensor, Tensor]:
        """Teacher-forced (summed log-prob, token count) per sample; differentiable in the prefixes."""
        targets = self.targets(replies, add_end)
        rows, layers = self._suffixes(prefixes, len(index), targets)
        logits = self._forward(index, rows, layers).logits
        totals = []
        for i, (row, target) in enumerate(zip(rows, targets, strict=True)):
            first = row.shape[0] - len(target)  # position of the first target token in the suffix
            lp = torch.log_softmax(logits[i, first - 1 : row.shape[0] - 1].float(), dim=-1)
            totals.append(lp.gather(1, torch.tensor(target, device=lp.device)[:, None]).sum())
        return torch.stack(totals).cpu(), torch.tensor([len(t) for t in targets], dtype=torch.float32)

    @torch.no_grad()
    def states(
        self, index: Sequence[int], replies: Sequence[str] | None = None, layer: int = -1, pool: str = "last"
    ) -> Tensor:
        """Hidden states ``(batch, hidden)`` of layer ``layer`` without any prefix.

        Without ``replies`` this is the RL state (``FrozenLM.states``: the prompt's last token). With
        them the frozen LM runs over prompt + reply + EOS: ``pool="last"`` reads the EOS (DAT's
        self-cloning state), ``pool="mean"`` averages over the reply's tokens and EOS.
        """
        if pool not in ("last", "mean"):
            raise ValueError(f"pool={pool!r} is not one of: last, mean.")
        tails = [[] for _ in index] if replies is None else self.targets(replies, add_end=True)
        rows, _ = self._suffixes(None, len(index), tails)
        hidden = self._forward(index, rows, output_hidden_states=True, logits_to_keep=1).hidden_states[layer]
        if pool == "mean" and replies is not None:
            return torch.stack(
                [
                    hidden[i, r.shape[0] - len(t) : r.shape[0]].mean(0)
                    for i, (r, t) in enumerate(zip(rows, tails, strict=True))
                ]
            ).float().cpu()
        return torch.stack([hidden[i, r.shape[0] - 1] for i, r in enumerate(rows)]).float().cpu()

    @torch.no_grad()
    def next_token_logprobs(self, index: Sequence[int], prefixes: Prefixes = None) -> Tensor:
        """Log-distribution ``(batch, vocab)`` of the first reply token."""
        rows, layers = self._suffixes(prefixes, len(index), [[] for _ in index])
        if len({r.shape[0] for r in rows}) != 1:
            raise ValueError("All prefixes of one call must have the same length.")
        logits = self._forward(index, rows, layers, logits_to_keep=1).logits
        return torch.log_softmax(logits[:, -1].float(), dim=-1).cpu()

    @torch.no_grad()
    def generate(
        self,
        index: Sequence[int],
        prefixes: Prefixes = None,
        sampling: SamplingConfig | None = None,
        seed: int | None = None,
    ) -> list[str]:
        """Replies for dialogues ``index`` steered by ``prefixes``, as FrozenLM.generate at before_reply."""
        sampling = sampling or SamplingConfig()
        rows, layers = self._suffixes(prefixes, len(index), [[] for _ in index])
        self._check_fit(index, [r.shape[0] + sampling.max_new_tokens for r in rows])
        with warnings.catch_warnings(), layerprefix.added(self.lm.model, layers, kvcache.suffix_starts(rows)):
            warnings.filterwarnings("ignore", message=".*repetition_penalty.*inputs_embeds.*")
            out = kvcache.generate(self.lm.model, [self.entries[i] for i in index], rows,
                                   self.lm._generation_config(sampling), self.lm._processors(sampling),
                                   sampling.seed if seed is None else seed)
        return [self.lm._decode(row) for row in out]
