"""The frozen chat LLM that DAT steers: chat rendering, last-token states, prefix-steered generation.

A dialogue is a list of chat messages (``{"role": ..., "content": ...}``) rendered with the
tokenizer's own chat template. Every batched call left-pads and passes an explicit attention mask
and position ids, so a dialogue gives the same result alone or in a batch.

Prefix embeddings (the DAT action tokens) are spliced into each sample's embedded prompt:

* ``start``: right after BOS (DAT's choice; at the very start when the template has no BOS),
* ``before_reply``: just before the final reply header (``<|im_start|>assistant``), which the
  trained-prefix measurement found to steer more strongly.

A prefix is ``(L, hidden)`` input embeddings, or a deep prefix ``(layers, L, hidden)`` that also adds
a vector per layer at its positions (``dat.lm.layerprefix``).

Generation always goes through ``inputs_embeds`` (steered or not), so steered and unsteered replies
are produced by the same code path; the repetition penalty then covers generated tokens only. With
``model.backend=vllm`` the same spliced embeddings are decoded by a vLLM server (``dat.lm.vllmengine``);
everything else (states, log-probs) stays on the HF model.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from transformers import GenerationConfig, LogitsProcessorList

from dat.lm import fastpaths, kvcache, layerprefix
from dat.lm.kvcache import Cached
from dat.lm.kvstore import KVStore
from dat.lm.loading import DEFAULT_MODEL, DTYPES, ModelConfig, load_model, model_folder
from dat.lm.memo import Memo
from dat.lm.nucleus import NucleusSampler
from dat.lm.penalty import RepetitionPenalty
from dat.lm.vllmengine import VLLMEngine

Message = Mapping[str, str]
Dialogue = Sequence[Message]
POSITIONS = ("start", "before_reply")


class ContextOverflowError(ValueError):
    """A dialogue (plus prefix and reply budget) does not fit in the model's context window."""


@dataclass
class SamplingConfig:
    """Decoding settings; every field is passed explicitly, the checkpoint's defaults are never used."""

    max_new_tokens: int = 40
    """Maximum number of tokens per utterance."""
    temperature: float = 0.7
    """Softmax temperature when sampling."""
    top_p: float = 0.9
    """Nucleus sampling mass."""
    repetition_penalty: float = 1.2
    """Penalty on tokens already generated (SmolLM2 loops without one)."""
    do_sample: bool = True
    """Sample (True) or decode greedily (False)."""
    seed: int = 0
    """Seed for the sampling stream of a call (callers derive one per call)."""

    def validate(self, where: str = "sampling") -> SamplingConfig:
        """Raise a ValueError naming the field (``where`` is the config path) when a setting is unusable."""
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ValueError(f"{where}.max_new_tokens={self.max_new_tokens!r} must be at least 1.")
        if self.do_sample and self.temperature < 0:
            raise ValueError(f"{where}.temperature={self.temperature!r} must be >= 0 (0 decodes greedily).")
        if self.do_sample and not 0 < self.top_p <= 1:
            raise ValueError(f"{where}.top_p={self.top_p!r} must be in (0, 1] (1 keeps every token).")
        if self.repetition_penalty <= 0:
            raise ValueError(f"{where}.repetition_penalty={self.repetition_penalty!r} must be > 0 (1 is none).")
        return self


@dataclass
class Batch:
    """A left-padded batch of embedded prompts, with the prefix spliced in."""

    embeds: Tensor
    attention_mask: Tensor
    position_ids: Tensor
    prefix_index: list[int]
    """Where each sample's prefix starts in its own (unpadded) ids."""
    prefix_start: list[int]
    """Where each sample's prefix starts in the padded batch (the column of its first prefix token)."""


class FrozenLM:
    """A frozen causal chat LM with batched, prefix-steerable generation.

    >>> lm = FrozenLM.load(ModelConfig())                          # doctest: +SKIP
    >>> chat = [{"role": "user", "content": "I'm asking $180 for the bike."}]
    >>> lm.generate([chat], sampling=SamplingConfig(do_sample=False))   # doctest: +SKIP
    ['...']
    """

    def __init__(self, model, tokenizer, name: str = DEFAULT_MODEL, engine: VLLMEngine | None = None,
                 kv_store_mib: int = ModelConfig.kv_store_mib, memo_entries: int = ModelConfig.memo_entries):
        self.model = fastpaths.apply(model)
        self.engine = engine
        """The vLLM engine that decodes replies (model.backend=vllm), or None for HF ``generate``."""
        self.kv_store = KVStore(kv_store_mib)
        """Keys and values of text already read, for the calls with ``caches`` (model.kv_store_mib)."""
        self.memo = Memo(memo_entries)
        """States and greedy unprefixed replies already computed, by their chat's ids (model.memo_entries)."""
        self.tokenizer = tokenizer
        self.name = name
        self.hidden_size: int = model.get_input_embeddings().weight.shape[1]
        self.layers: int = int(model.config.num_hidden_layers)
        self.max_context: int = int(getattr(model.config, "max_position_embeddings", 2048))
        self.end_ids: set[int] = _end_of_turn_ids(tokenizer)
        self.pad_id: int = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.end_ids)
        self._header_ids: list[int] = self._reply_header_ids()

    @property
    def device(self) -> torch.device:
        """Where the model (and every tensor this class makes for it) lives."""
        return self.model.get_input_embeddings().weight.device

    @classmethod
    def load(cls, cfg: ModelConfig) -> FrozenLM:
        model, tokenizer = load_model(cfg)
        lm = cls(model, tokenizer, name=cfg.name, kv_store_mib=cfg.kv_store_mib, memo_entries=cfg.memo_entries)
        if cfg.backend == "vllm":
            dtype = str(DTYPES[cfg.vllm.dtype or cfg.dtype]).removeprefix("torch.")
            lm.engine = VLLMEngine.connect(cfg.vllm, model_folder(cfg), dtype, lm.max_context)
        return lm

    def forget(self) -> None:
        """Empty the key/value store and the memo: later calls compute everything they read, as a fresh process."""
        self.kv_store.clear()
        self.memo.clear()

    @property
    def dtype(self) -> torch.dtype:
        return self.model.get_input_embeddings().weight.dtype

    # ----------------------------------------------------------------------------------- text
    def render(self, messages: Dialogue, add_generation_prompt: bool = True) -> str:
        """The dialogue as the model reads it, through the tokenizer's chat template."""
        return self.tokenizer.apply_chat_template(
            [dict(m) for m in messages], tokenize=False, add_generation_prompt=add_generation_prompt
        )

    def encode(self, messages: Dialogue) -> list[int]:
        """Token ids of the rendered dialogue, ending with the reply header."""
        return self.tokenizer(self.render(messages), add_special_tokens=False)["input_ids"]

    def count_tokens(self, messages: Dialogue) -> int:
        return len(self.encode(messages))

    def fits(self, messages: Dialogue, prefix_tokens: int = 0, new_tokens: int = 0) -> bool:
        """Whether the dialogue, a prefix and a reply budget fit in the context window."""
        return self.count_tokens(messages) + prefix_tokens + new_tokens <= self.max_context

    # ----------------------------------------------------------------------------------- states
    @torch.no_grad()
    def states(self, dialogues: Sequence[Dialogue], layer: int = -1, caches: Sequence[Cached] | None = None,
               pool: str = "last") -> Tensor:
        """Hidden states ``(batch, hidden)`` of layer ``layer`` in float32, without any prefix (the RL state).

        ``pool="last"``: the last token's vector (DAT's state). ``pool="mean"``: the mean over every
        token of the chat.
        With ``caches`` (one per dialogue, kept by the caller between calls) only the tokens each chat
        gained since its cache was filled are computed; the cache then holds the chat up to its reply header.
        A mean keeps the layer's hidden rows in the cache (and in the key/value store), so it too reads only
        new tokens, in the pass that also fills the cache for generation: equal to a full read up to float
        rounding (``tests/test_llm.py``). A chat read before (same ids, layer and pool) is not read again: its
        state comes from the memo (``dat.lm.memo``); an empty cache then takes what the key/value store kept of it.
        """
        if pool not in ("last", "mean"):
            raise ValueError(f"pool={pool!r} is not one of: last, mean.")
        ids = [self._checked_ids(d, 0, 0) for d in dialogues]
        if caches is not None:
            self._check_caches(caches, ids)
        kind = ("state", layer, pool)
        known = [self.memo.get(kind, i) for i in ids]
        todo = [k for k, found in enumerate(known) if found is None]
        if caches is not None:  # a memoised chat's empty cache takes what the store kept of it, as a read leaves it
            for k in (k for k, found in enumerate(known) if found is not None and not len(caches[k])):
                self.kv_store.seed(caches[k], ids[k], layer if pool == "mean" else None)
                caches[k].crop(self.insert_index(ids[k], "before_reply"))
        if todo:
            fresh = self._states([ids[k] for k in todo], layer, None if caches is None else [caches[k] for k in todo],
                                 pool)
            for k, state in zip(todo, fresh, strict=True):
                known[k] = state
                self.memo.put(kind, ids[k], state.clone())
        return torch.stack(known)

    def _states(self, ids: list[list[int]], layer: int, caches: Sequence[Cached] | None, pool: str) -> Tensor:
        if caches is not None:  # one pass reads the chat's new tokens and the header; the header is then dropped
            hidden = kvcache.extend(self.model, caches, ids, layer=layer, store=self.kv_store, pool=pool)
            for cache, sample in zip(caches, ids, strict=True):
                cache.crop(self.insert_index(sample, "before_reply"))
            return hidden.float().cpu()
        batch = self._splice(ids, None, "start")
        out = self.model.get_decoder()(inputs_embeds=batch.embeds, attention_mask=batch.attention_mask,
                                       position_ids=batch.position_ids, output_hidden_states=layer != -1)
        hidden = kvcache.layer_states(out, layer)
        if pool == "last":
            return hidden[:, -1, :].float().cpu()
        mask = batch.attention_mask[..., None].to(hidden.dtype)  # left padding does not count
        return ((hidden * mask).sum(1) / mask.sum(1)).float().cpu()

    # ----------------------------------------------------------------------------------- generation
    @torch.no_grad()
    def generate(
        self,
        dialogues: Sequence[Dialogue],
        prefix_embeds: Sequence[Tensor | None] | Tensor | None = None,
        sampling: SamplingConfig | None = None,
        position: str = "start",
        seed: int | Sequence[int] | None = None,
        caches: Sequence[Cached] | None = None,
    ) -> list[str]:
        """Generate the next utterance for each dialogue, each steered by its own prefix (or none).

        ``seed``: one seed for the call (``sampling.seed`` when None), from which all rows draw, so a row's
        sample depends on its place in the batch; or one seed per row, from which that row alone draws, so
        its sample is the one it would get in any batch (up to the float rounding of batched matmuls).

        ``caches`` (one per dialogue) are used, and brought up to date, when the prefixes leave the
        chat before the reply header untouched: no prefix, or ``position="before_reply"``. A prefix at
        ``start`` shifts every token after it, so those calls read the whole chat again. A reply made
        without a prefix stays in its cache (with the header before it), so the next turn's chat, which
        holds that reply, does not read it again. With a vLLM
        engine, vLLM's own prefix cache plays that part and ``caches`` are not used.

        A greedy reply without a prefix is a function of its chat's ids: one decoded before comes from the memo
        (``dat.lm.memo``), and its cache stays as it was.
        """
        sampling = sampling or SamplingConfig()
        prefixes = self._checked_prefixes(prefix_embeds, len(dialogues))
        ids = [
            self._checked_ids(d, layerprefix.tokens(p), sampling.max_new_tokens)
            for d, p in zip(dialogues, prefixes, strict=True)
        ]
        seed = sampling.seed if seed is None else seed
        rows = None if isinstance(seed, int) else [int(x) for x in seed]
        if rows is not None and len(rows) != len(dialogues):
            raise ValueError(f"generate got {len(rows)} row seeds for {len(dialogues)} dialogues.")
        if caches is not None:
            self._check_caches(caches, ids)
        greedy = not (sampling.do_sample and sampling.temperature > 0)  # then a reply is a function of its ids
        kind = ("reply", sampling.max_new_tokens, sampling.repetition_penalty)
        known = [self.memo.get(kind, i) if greedy and p is None else None for i, p in zip(ids, prefixes, strict=True)]
        todo = [k for k, text in enumerate(known) if text is None]
        if todo:  # a memoised reply leaves its cache as it was: a later call reads what the cache lacks
            def pick(values):
                return None if values is None else [values[k] for k in todo]

            made = self._generate(pick(ids), pick(prefixes), sampling, position, seed if rows is None else pick(rows),
                                  pick(caches))
            for k, text in zip(todo, made, strict=True):
                known[k] = text
                if greedy and prefixes[k] is None:
                    self.memo.put(kind, ids[k], text)
        return known

    def _generate(self, ids: list[list[int]], prefixes: list[Tensor | None], sampling: SamplingConfig, position: str,
                  seed: int | list[int], caches: Sequence[Cached] | None) -> list[str]:
        rows = None if isinstance(seed, int) else seed
        inputs, layers = layerprefix.splits(prefixes)
        if self.engine is not None:
            return self._engine_generate(ids, prefixes, position, sampling, seed)
        config, processors = self._generation_config(sampling), self._processors(sampling, rows)
        seed = seed if rows is None else sampling.seed  # the global stream's; with row seeds nothing draws from it
        reusable = position == "before_reply" or all(p is None for p in prefixes)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*repetition_penalty.*inputs_embeds.*")
            if caches is not None and reusable:
                rows = self._cached_rows(ids, caches, inputs)
                plain = [i[len(c):] if p is None else None for i, c, p in zip(ids, caches, prefixes, strict=True)]
                with layerprefix.added(self.model, layers, kvcache.suffix_starts(rows)):
                    out = kvcache.generate(self.model, caches, rows, config, processors, seed, plain)
            else:
                batch = self._splice(ids, inputs, position)
                with torch.random.fork_rng(devices=[]), layerprefix.added(self.model, layers, batch.prefix_start):
                    torch.manual_seed(seed)
                    out = self.model.generate(
                        inputs_embeds=batch.embeds, attention_mask=batch.attention_mask, generation_config=config,
                        logits_processor=processors,
                    ).tolist()
        return [self._decode(row) for row in out]

    def _engine_generate(self, ids, prefixes, position: str, sampling: SamplingConfig,
                         seed: int | list[int]) -> list[str]:
        if any(p is not None and p.dim() == 3 for p in prefixes):
            raise ValueError("model.backend=vllm takes input prefixes only: a per-layer prefix (prefix.depth=layers) "
                             "acts inside the decoder layers, which prompt embeddings cannot express. Use "
                             "model.backend=hf, or an input-depth prefix.")
        rows, _ = self._embedded_rows(ids, prefixes, position)
        tokens = self.engine.generate(rows, sampling, seed, sorted(self.end_ids))
        return [self._decode(row) for row in tokens]

    def _cached_rows(self, ids: list[list[int]], caches: Sequence[Cached], prefixes) -> list[Tensor]:
        """Extend each cache to its chat's head (all but the reply header); return [prefix, header] embeddings.

        ``prefixes``: the input embeddings ``(L, hidden)`` of each prefix (or None).
        """
        self._check_caches(caches, ids)
        cut = [self.insert_index(i, "before_reply") for i in ids]
        kvcache.extend(self.model, caches, [i[:c] for i, c in zip(ids, cut, strict=True)], store=self.kv_store)
        return [kvcache.suffix(self.model, p, i[c:]) for i, c, p in zip(ids, cut, prefixes, strict=True)]

    @staticmethod
    def _check_caches(caches: Sequence[Cached], ids: Sequence[Sequence[int]]) -> None:
        if len(caches) != len(ids):
            raise ValueError(f"Got {len(caches)} caches for {len(ids)} dialogues; pass one per dialogue.")

    def reply_logprobs(
        self,
        dialogues: Sequence[Dialogue],
        replies: Sequence[str],
        prefix_embeds: Sequence[Tensor | None] | Tensor | None = None,
        position: str = "start",
        add_end: bool = True,
    ) -> tuple[Tensor, Tensor]:
        """Teacher-forced log-probs of ``replies``: (summed log-prob per sample, token count per sample).

        Differentiable in the prefix (the LM weights stay frozen): self-cloning trains through it,
        and the fluency measure (mean token log-prob under the unsteered model) reads it.
        """
        prefixes = self._checked_prefixes(prefix_embeds, len(dialogues))
        inputs, layers = layerprefix.splits(prefixes)
        end = [self.tokenizer.eos_token_id] if add_end and self.tokenizer.eos_token_id is not None else []
        targets = [self.tokenizer(r, add_special_tokens=False)["input_ids"] + end for r in replies]
        prompts = [self._checked_ids(d, layerprefix.tokens(p), len(t)) for d, p, t in
                   zip(dialogues, prefixes, targets, strict=True)]
        batch = self._splice([p + t for p, t in zip(prompts, targets, strict=True)], inputs, position,
                             header_offset=[len(t) for t in targets])
        with layerprefix.added(self.model, layers, batch.prefix_start):
            logits = self.model(inputs_embeds=batch.embeds, attention_mask=batch.attention_mask,
                                position_ids=batch.position_ids).logits.float()
        logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
        width = batch.embeds.shape[1]
        rows: list[Tensor] = []
        for i, target in enumerate(targets):
            start = width - len(target)  # target tokens are the last ones (left padding)
            index = torch.tensor(target, dtype=torch.long, device=logprobs.device)
            rows.append(logprobs[i, start - 1 : width - 1].gather(1, index[:, None]).sum())
        total = torch.stack(rows).cpu()  # differentiable: gradients reach a prefix on any device
        return total, torch.tensor([len(t) for t in targets], dtype=torch.float32)

    @torch.no_grad()
    def next_token_logprobs(
        self, dialogues: Sequence[Dialogue], prefix_embeds=None, position: str = "start"
    ) -> Tensor:
        """Log-distribution ``(batch, vocab)`` of the first reply token (for KL / JS of prefixes)."""
        prefixes = self._checked_prefixes(prefix_embeds, len(dialogues))
        inputs, layers = layerprefix.splits(prefixes)
        ids = [self._checked_ids(d, layerprefix.tokens(p), 1) for d, p in zip(dialogues, prefixes, strict=True)]
        batch = self._splice(ids, inputs, position)
        with layerprefix.added(self.model, layers, batch.prefix_start):
            logits = self.model(inputs_embeds=batch.embeds, attention_mask=batch.attention_mask,
                                position_ids=batch.position_ids, logits_to_keep=1).logits
        return torch.log_softmax(logits[:, -1].float(), dim=-1).cpu()

    # ----------------------------------------------------------------------------------- internals
    def insert_index(self, ids: Sequence[int], position: str, header_offset: int = 0) -> int:
        """Where the prefix goes in one sample's token ids (before any padding)."""
        if position == "start":
            bos = self.tokenizer.bos_token_id
            return 1 if bos is not None and ids and ids[0] == bos else 0
        if position == "before_reply":
            end = len(ids) - header_offset
            header = self._header_ids
            if list(ids[end - len(header) : end]) != header:
                raise ValueError("The prompt does not end with the reply header; cannot place the prefix.")
            return end - len(header)
        raise ValueError(f"prefix position {position!r} is not one of {POSITIONS}; fix prefix.position.")

    def _splice(
        self,
        ids: Sequence[Sequence[int]],
        prefixes: Sequence[Tensor | None] | None,
        position: str,
        header_offset: Sequence[int] | None = None,
    ) -> Batch:
        embedding = self.model.get_input_embeddings()
        rows, index = self._embedded_rows(ids, prefixes, position, header_offset)
        width = max(r.shape[0] for r in rows)
        pad = embedding(torch.tensor([self.pad_id], device=self.device))[0]
        embeds = torch.stack([torch.cat([pad.expand(width - r.shape[0], -1), r], 0) for r in rows])
        mask = torch.tensor([[0] * (width - r.shape[0]) + [1] * r.shape[0] for r in rows], device=self.device)
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        starts = [width - r.shape[0] + at for r, at in zip(rows, index, strict=True)]
        return Batch(embeds, mask, position_ids, index, starts)

    def _embedded_rows(self, ids, prefixes, position: str, header_offset=None) -> tuple[list[Tensor], list[int]]:
        """Each sample's input embeddings with its prefix spliced in, unpadded; and where each prefix starts."""
        embedding = self.model.get_input_embeddings()
        rows, index = [], []
        for i, sample in enumerate(ids):
            embeds = embedding(torch.tensor(sample, dtype=torch.long, device=self.device))
            prefix = prefixes[i] if prefixes is not None else None
            at = self.insert_index(sample, position, header_offset[i] if header_offset else 0)
            if prefix is not None and prefix.shape[0] > 0:
                embeds = torch.cat([embeds[:at], prefix.to(embeds), embeds[at:]], dim=0)
            rows.append(embeds)
            index.append(at)
        return rows, index

    def _checked_ids(self, messages: Dialogue, prefix_tokens: int, new_tokens: int) -> list[int]:
        ids = self.encode(messages)
        if len(ids) + prefix_tokens + new_tokens > self.max_context:
            raise ContextOverflowError(
                f"The dialogue has {len(ids)} tokens; with {prefix_tokens} prefix tokens and "
                f"{new_tokens} new tokens it exceeds the context of {self.max_context} tokens of "
                f"{self.name!r}. Shorten the dialogue (env.max_turns), lower sampling.max_new_tokens, "
                "or use a model with a longer context."
            )
        return ids

    def _checked_prefixes(self, prefix_embeds, n: int) -> list[Tensor | None]:
        if prefix_embeds is None:
            return [None] * n
        if isinstance(prefix_embeds, Tensor) and prefix_embeds.dim() == 2:
            prefix_embeds = [prefix_embeds] * n
        prefixes = list(prefix_embeds)
        if len(prefixes) != n:
            raise ValueError(f"Got {len(prefixes)} prefixes for {n} dialogues; pass one (or None) per dialogue.")
        for i, p in enumerate(prefixes):
            if p is None:
                continue
            input_prefix = p.dim() == 2 and p.shape[1] == self.hidden_size
            deep = p.dim() == 3 and p.shape[0] == self.layers and p.shape[2] == self.hidden_size
            if not (input_prefix or deep):
                raise ValueError(
                    f"Prefix {i} has shape {tuple(p.shape)}; expected (L, {self.hidden_size}) or, per layer, "
                    f"({self.layers}, L, {self.hidden_size}) for model {self.name!r}. Check that the "
                    "up-projection was built for this model (prefix.*)."
                )
        return prefixes

    def _generation_config(self, s: SamplingConfig) -> GenerationConfig:
        """Greedy decoding over the scores of ``_processors``: when sampling, its last processor has made the draw."""
        return GenerationConfig(
            max_new_tokens=s.max_new_tokens, min_new_tokens=0, do_sample=False, num_beams=1,
            temperature=None, top_p=None, top_k=None, repetition_penalty=1.0,
            eos_token_id=sorted(self.end_ids), pad_token_id=self.pad_id, bos_token_id=None,
        )

    @staticmethod
    def _processors(s: SamplingConfig, rows: Sequence[int] | None = None) -> LogitsProcessorList:
        """The repetition penalty over generated tokens, then (when sampling) the top-p draw.

        transformers' built-in penalty, given ``inputs_embeds``, skips each row's first
        pad-length generated tokens, so a padded row would decode differently in a batch than
        alone; these processors see only generated ids (the embeds path passes no prompt ids).
        ``RepetitionPenalty`` applies transformers' rule in place; ``NucleusSampler`` draws with
        transformers' top-p law without sorting the vocabulary (from one generator per row given ``rows``,
        their seeds).
        """
        processors = LogitsProcessorList()
        if s.repetition_penalty != 1.0:
            processors.append(RepetitionPenalty(s.repetition_penalty))
        if s.do_sample and s.temperature > 0:
            processors.append(NucleusSampler(s.temperature, s.top_p, rows))
        return processors

    def _decode(self, tokens: Sequence[int]) -> str:
        cut = next((i for i, t in enumerate(tokens) if t in self.end_ids), len(tokens))
        return self.tokenizer.decode(tokens[:cut], skip_special_tokens=True).strip()

    def _reply_header_ids(self) -> list[int]:
        probe = [{"role": "user", "content": "x"}]
        with_header = self.tokenizer(self.render(probe, True), add_special_tokens=False)["input_ids"]
        without = self.tokenizer(self.render(probe, False), add_special_tokens=False)["input_ids"]
        if with_header[: len(without)] != without:
            raise ValueError("The chat template's generation prompt is not a pure suffix; cannot find it.")
        return with_header[len(without):]


def _end_of_turn_ids(tokenizer) -> set[int]:
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    for token in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<end_of_turn>", "</s>"):
        tid = tokenizer.convert_tokens_to_ids(token)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id and tid >= 0:
            ids.add(tid)
    if not ids:
        raise ValueError("The tokenizer has no end-of-turn token; set tokenizer.eos_token.")
    return ids
