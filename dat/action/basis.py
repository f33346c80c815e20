"""Making a behaviour basis: the pool of the frozen model's replies, contrastive training of one prefix per
behaviour, and the settings-checked cache (``dat.action.behaviours`` says what the behaviours are).

Each behaviour's prefix (L input embeddings placed before the reply header; with
``prefix.depth=layers`` also a vector per decoder layer at those positions, ``dat.lm.layerprefix``)
is trained on the prefix alone, the LM frozen. A behaviour with a ``hint`` also samples replies with
that instruction added to the prompt (a targeted pool), and learns to do without the instruction
what the model does with it. ``rounds > 1`` iterates: the next round adds replies sampled *with* the
behaviour's current prefix to its pool, re-selects the pairs and trains on.

Everything is saved as it is made, under ``<model artefacts>/behaviours/<name>`` (``<name>@bfloat16`` for a
basis made against the model in bfloat16: a basis belongs to the dtype it was trained in): the pool
(``pool.json``), each behaviour's prefix when trained (``<behaviour>.safetensors``, with a
checkpoint every few steps), then the projection (safetensors) beside a JSON record of every setting.
A re-run resumes where it stopped; a finished basis is reused only when every setting matches.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm.auto import tqdm

from dat.action import artefact
from dat.action.behaviours import (
    MADE_IN,
    Behaviour,
    BehaviourConfig,
    PromptInfo,
    Scorers,
    basis_settings,
    check_config,
    contrastive_loss,
    select_pairs,
)
from dat.action.projection import PrefixConfig, UpProjection, embedding_stats
from dat.action.steerability import out_of_character
from dat.atomic import atomic_path, atomic_write
from dat.lm import layerprefix
from dat.lm.frozen import FrozenLM, SamplingConfig
from dat.lm.promptcache import PromptCache
from dat.records import clean_utterance
from dat.restating import restates
from dat.seeding import derive_seed


# ------------------------------------------------------------------------------------------ pool
@dataclass
class Pool:
    """Replies to the train prompts: ``text[i]`` (first line) answers prompt ``prompt[i]``.

    ``end[i]``: score the reply with EOS (it ended, or was cut at a newline, as the env cuts it);
    ``ref[i]``: its summed log-prob under the model without prefix; ``source[i]``: "model" or the
    behaviour whose prefix sampled it.
    """

    prompt: list[int] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    end: list[bool] = field(default_factory=list)
    ref: list[float] = field(default_factory=list)
    source: list[str] = field(default_factory=list)

    def extend(self, other: Pool) -> Pool:
        return Pool(*(getattr(self, k) + getattr(other, k) for k in self.__dataclass_fields__))

    def of(self, prompt: int) -> list[int]:
        return [i for i, p in enumerate(self.prompt) if p == prompt]

    def subset(self, rows: Sequence[int]) -> Pool:
        """The replies at ``rows``, in that order."""
        return Pool(*([getattr(self, k)[i] for i in rows] for k in self.__dataclass_fields__))


def sample_pool(cache: PromptCache, prompts: Sequence[int], count: int, sampling: SamplingConfig, seed: int,
                prefix: Tensor | None = None, source: str = "model", rows_per_call: int = 32,
                reference: PromptCache | None = None) -> Pool:
    """``count`` replies per prompt (with ``prefix`` if given), their first lines and reference log-probs.

    ``reference``: the prompts the log-probs are taken on (default ``cache``), for replies sampled
    from other prompts (a hint) but trained on as replies to these.
    """
    reference = reference or cache
    wanted = [p for p in prompts for _ in range(count)]
    pool = Pool()
    for start in tqdm(range(0, len(wanted), rows_per_call), desc=f"pool ({source})", leave=False):
        chunk = wanted[start : start + rows_per_call]
        prefixes = None if prefix is None else [prefix] * len(chunk)
        raw = cache.generate(chunk, prefixes, sampling, seed=derive_seed(seed, "pool", source, start))
        for p, reply in zip(chunk, raw, strict=True):
            text = clean_utterance(reply)
            if not any(c.isalpha() for c in text):
                continue
            cut = len(cache.targets([reply], add_end=False)[0]) < sampling.max_new_tokens or "\n" in reply.strip()
            pool.prompt.append(p)
            pool.text.append(text)
            pool.end.append(bool(cut))
            pool.source.append(source)
    with torch.no_grad():
        for start in range(0, len(pool.text), 16):
            rows = slice(start, start + 16)
            total, _ = reference.reply_logprobs(pool.prompt[rows], pool.text[rows], None, add_end=pool.end[rows])
            pool.ref += total.tolist()
    return pool


# ------------------------------------------------------------------------------------------ training
class BasisTrainer:
    """Trains one prefix per behaviour on a shared pool of the frozen model's replies (module docstring).

    >>> trainer = BasisTrainer(lm, chats, infos, PrefixConfig(kind="behaviours", action_dim=2,
    ...                        position="before_reply"), BehaviourConfig(), "out/basis")   # doctest: +SKIP
    >>> projection = trainer.train()                                                     # doctest: +SKIP
    """

    def __init__(self, lm: FrozenLM, chats: Sequence, infos: Sequence[PromptInfo], prefix: PrefixConfig,
                 cfg: BehaviourConfig, folder: str | Path, embedder=None, dialogue: Mapping | None = None):
        check_config(prefix, cfg)
        self.lm, self.prefix, self.cfg, self.folder = lm, prefix, cfg, Path(folder)
        self.dialogue = dialogue
        self.folder.mkdir(parents=True, exist_ok=True)
        chats, infos = list(chats)[: cfg.prompts], list(infos)[: cfg.prompts]
        if not chats or len(chats) != len(infos):
            raise ValueError(f"The behaviour basis needs train prompts with one PromptInfo each; got "
                             f"{len(chats)} chats and {len(infos)} infos.")
        self.chats, self.infos = chats, infos
        self.cache = PromptCache(lm, chats)
        self.scorers = Scorers(infos, embedder)
        self.mean, self.token_norm = embedding_stats(lm.model.get_input_embeddings().weight)
        self.limits = self._norm_limits()

    def _norm_limits(self) -> Tensor:
        """Largest norm of a prefix token, per prefix row: ``max_norm`` x the typical norm there.

        Row 0 (input embeddings): the median token-embedding norm. Row j of a deep prefix: the median
        norm of the hidden state entering layer j at the train prompts' last token.
        """
        limits = [self.cfg.max_norm * self.token_norm]
        if self.prefix.depth == "layers":
            index = range(len(self.chats))
            limits += [self.cfg.max_norm * float(self.cache.states(index, layer=j).norm(dim=-1).median())
                       for j in range(1, self.lm.layers)]
        return torch.tensor(limits)

    def initial_prefix(self) -> Tensor:
        """Every token at the mean token embedding; a deep prefix's layer rows at zero (no change there)."""
        start = self.mean.expand(self.prefix.tokens, -1)
        if self.prefix.depth == "input":
            return start.clone()
        return torch.cat([start[None], start.new_zeros(self.lm.layers - 1, *start.shape)]).clone()

    def settings(self) -> dict:
        """Everything the basis depends on (compared before a cached basis is reused)."""
        return {**wanted_settings(self.lm, self.prefix, self.cfg, self.dialogue), "prompts": len(self.chats)}

    def pool(self) -> Pool:
        """The model's own replies (sampled once, then read from ``pool.json``)."""
        path = self.folder / "pool.json"
        if path.is_file():
            return Pool(**json.loads(path.read_text()))
        pool = sample_pool(self.cache, range(len(self.chats)), self.cfg.pool, self.cfg.sampling, self.cfg.seed)
        _write_json(path, asdict(pool))
        return pool

    def hinted_pool(self, behaviour: Behaviour) -> Pool:
        """Replies sampled with the behaviour's hint added to each prompt, ``hint_pool`` (else ``pool``) per prompt,
        less those that recite the hint or speak out of character where the behaviour drops them (``<name>.hint.json``
        keeps them all)."""
        pool = self._sampled_hinted_pool(behaviour)
        if not (behaviour.drop_recitals or behaviour.drop_out_of_character):
            return pool

        def kept(prompt: int, text: str) -> bool:
            info = self.infos[prompt]
            if behaviour.drop_recitals and restates(text, behaviour.hint.format(goal=info.goal)):
                return False
            return not (behaviour.drop_out_of_character and out_of_character(text, *info.names))

        return pool.subset([i for i, (p, text) in enumerate(zip(pool.prompt, pool.text, strict=True)) if kept(p, text)])

    def _sampled_hinted_pool(self, behaviour: Behaviour) -> Pool:
        path = self.folder / f"{behaviour.name}.hint.json"
        if path.is_file():
            return Pool(**json.loads(path.read_text()))
        chats = [hinted(chat, behaviour.hint, info.goal) for chat, info in zip(self.chats, self.infos, strict=True)]
        count = self.cfg.pool if behaviour.hint_pool is None else behaviour.hint_pool
        pool = sample_pool(PromptCache(self.lm, chats), range(len(chats)), count, self.cfg.sampling,
                           derive_seed(self.cfg.seed, "hint", behaviour.name), source=f"hint:{behaviour.name}",
                           reference=self.cache)
        _write_json(path, asdict(pool))
        return pool

    def pairs(self, behaviour: Behaviour, pool: Pool) -> list[tuple[int, int]]:
        """(chosen, rejected) pool indices for ``behaviour`` over all prompts."""
        out = []
        for p in range(len(self.chats)):
            rows = pool.of(p)
            if len(rows) >= 2:
                scores = self.scorers(behaviour, p, [pool.text[i] for i in rows])
                out += [(rows[c], rows[r]) for c, r in select_pairs(scores, self.cfg.top, behaviour.direction)]
        return out

    def positives(self, behaviour: Behaviour, pool: Pool) -> dict[str, dict[str, int]]:
        """The real positives a prefix learns from: per pool source (``model``, ``hint:<name>``, a later round),
        how many replies show the behaviour (score above 0; below 0 for a ``down`` behaviour) out of how many."""
        counts: dict[str, dict[str, int]] = {}
        for p in range(len(self.chats)):
            rows = pool.of(p)
            if not rows:
                continue
            scores = np.asarray(self.scorers(behaviour, p, [pool.text[i] for i in rows]), float)
            for i, shown in zip(rows, scores > 0 if behaviour.direction == "up" else scores < 0, strict=True):
                tally = counts.setdefault(pool.source[i], {"replies": 0, "shown": 0})
                tally["replies"] += 1
                tally["shown"] += int(shown)
        return counts

    def _logprobs(self, pool: Pool, rows: Sequence[int], prefix: Tensor) -> Tensor:
        total, _ = self.cache.reply_logprobs([pool.prompt[i] for i in rows], [pool.text[i] for i in rows],
                                             [prefix] * len(rows), add_end=[pool.end[i] for i in rows])
        return total

    def _pair_logprobs(self, pool: Pool, pairs: Sequence[tuple[int, int]], prefix: Tensor) -> tuple[Tensor, Tensor]:
        """Summed log-probs with ``prefix`` of each pair's chosen and rejected reply (one batched call)."""
        rows = [c for c, _ in pairs] + [r for _, r in pairs]
        lp = self._logprobs(pool, rows, prefix)
        return lp[: len(pairs)], lp[len(pairs) :]

    def train_behaviour(self, behaviour: Behaviour, pool: Pool, progress: bool = True) -> tuple[Tensor, dict]:
        """Train (or resume) one behaviour's prefix; returns it and its record.

        The prefix is ``(tokens, hidden)``, or ``(layers, tokens, hidden)`` with ``prefix.depth=layers``.
        """
        cfg, path = self.cfg, self.folder / f"{behaviour.name}.safetensors"
        nll = cfg.nll if behaviour.nll is None else behaviour.nll
        if path.is_file():
            return load_file(str(path))["prefix"], json.loads((self.folder / f"{behaviour.name}.json").read_text())
        started = time.time()
        ckpt_path = self.folder / f"{behaviour.name}.checkpoint.pt"
        prefix = self.initial_prefix().requires_grad_(True)
        optimizer = torch.optim.Adam([prefix], lr=cfg.lr)
        step, history, before = 0, [], None
        seen = pool.extend(self.hinted_pool(behaviour)) if behaviour.hint else pool
        if ckpt_path.is_file():
            state = torch.load(ckpt_path, weights_only=False)
            with torch.no_grad():
                prefix.copy_(state["prefix"])
            optimizer.load_state_dict(state["optimizer"])
            step, history, seen, before = state["step"], state["history"], Pool(**state["pool"]), state["before"]
        total = cfg.steps * cfg.rounds
        limit = self.limits[:, None, None] if self.prefix.depth == "layers" else self.limits[0]
        bar = tqdm(total=total, initial=step, desc=f"behaviour {behaviour.name}", disable=not progress)
        pairs = self.pairs(behaviour, seen)
        if not pairs:
            raise ValueError(f"Behaviour {behaviour.name!r}: no prompt's replies differ on its scorer "
                             f"({behaviour.scorer}); sample a larger pool (behaviours.pool) or choose another.")
        before = before or self._evaluate(seen, pairs, prefix.detach())  # at the initial prefix
        while step < total:
            round_ = step // cfg.steps
            if round_ and not any(src == f"{behaviour.name}:{round_}" for src in seen.source):
                extra = sample_pool(self.cache, range(len(self.chats)), cfg.pool, cfg.sampling,
                                    derive_seed(cfg.seed, behaviour.name, round_), prefix.detach(),
                                    source=f"{behaviour.name}:{round_}")
                seen = seen.extend(extra)
                pairs = self.pairs(behaviour, seen)
            rng = np.random.default_rng(derive_seed(cfg.seed, "pairs", behaviour.name, step))
            batch = [pairs[i] for i in rng.choice(len(pairs), size=min(cfg.batch_size, len(pairs)), replace=False)]
            chosen, rejected = self._pair_logprobs(seen, batch, prefix)
            ref_c = torch.tensor([seen.ref[c] for c, _ in batch])
            ref_r = torch.tensor([seen.ref[r] for _, r in batch])
            loss = contrastive_loss(chosen, ref_c, rejected, ref_r, cfg.beta).mean()
            if nll > 0:
                targets = self.cache.targets([seen.text[c] for c, _ in batch], [seen.end[c] for c, _ in batch])
                loss = loss + nll * (-chosen / torch.tensor([float(len(t)) for t in targets])).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            with torch.no_grad():  # keep every prefix token within max_norm typical norms of its row
                norms = prefix.norm(dim=-1, keepdim=True)
                prefix.mul_(torch.clamp(limit / norms, max=1.0))
            step += 1
            history.append(float(loss.detach()))
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(history[-10:]):.3f}")
            if step % cfg.checkpoint_every == 0 or step == total:
                _save_torch(ckpt_path, {"prefix": prefix.detach(), "optimizer": optimizer.state_dict(), "step": step,
                                        "history": history, "pool": asdict(seen), "before": before})
        bar.close()
        after = self._evaluate(seen, pairs, prefix.detach())
        record = {"name": behaviour.name, "pairs": len(pairs), "steps": step, "loss_first": history[0],
                  "loss_last10": float(np.mean(history[-10:])), "margin_before": before["margin"],
                  "margin_after": after["margin"], "pairs_ranked_before": before["ranked"],
                  "pairs_ranked_after": after["ranked"], "pool": len(seen.text),
                  "positives": self.positives(behaviour, seen),
                  "norms_x_token": (layerprefix.split(prefix.detach())[0].norm(dim=-1) / self.token_norm).tolist(),
                  **self._layer_norms(prefix.detach()),
                  "minutes": round((time.time() - started) / 60, 2)}
        _write_json(self.folder / f"{behaviour.name}.json", record)
        with atomic_path(path) as tmp:  # last: the prefix file marks the behaviour done
            save_file({"prefix": prefix.detach().contiguous()}, str(tmp))
        ckpt_path.unlink(missing_ok=True)
        return prefix.detach(), record

    def _layer_norms(self, prefix: Tensor) -> dict:
        """A deep prefix's per-layer token norms relative to each layer's typical norm (for the record)."""
        if not layerprefix.is_deep(prefix):
            return {}
        typical = self.limits[1:, None] / self.cfg.max_norm
        return {"layer_norms_x_hidden": (prefix[1:].norm(dim=-1) / typical).mean(1).tolist()}

    @torch.no_grad()
    def _evaluate(self, pool: Pool, pairs: Sequence[tuple[int, int]], prefix: Tensor, limit: int = 64) -> dict:
        """Mean implicit margin (nats) and share of pairs ranked right, over the first ``limit`` pairs."""
        margins = []
        for s in range(0, min(len(pairs), limit), 16):
            part = pairs[s : s + 16]
            chosen, rejected = self._pair_logprobs(pool, part, prefix)
            ref_c = torch.tensor([pool.ref[c] for c, _ in part])
            ref_r = torch.tensor([pool.ref[r] for _, r in part])
            margins.append((chosen - ref_c) - (rejected - ref_r))
        margins = torch.cat(margins)
        return {"margin": float(margins.mean()), "ranked": float((margins > 0).float().mean())}

    def train(self, progress: bool = True) -> UpProjection:
        """Pool, every behaviour's prefix, then the projection with its record (each step resumable)."""
        pool = self.pool()
        prefixes, records = [], []
        for behaviour in self.cfg.behaviours:
            prefix, record = self.train_behaviour(behaviour, pool, progress)
            prefixes.append(prefix * (1.0 if behaviour.scale is None else behaviour.scale))
            records.append(record)
        projection = UpProjection(self.prefix, self.lm.hidden_size, self.token_norm, torch.stack(prefixes))
        vectors = torch.stack(prefixes).flatten(1)
        cosine = F.normalize(vectors, dim=-1) @ F.normalize(vectors, dim=-1).T
        projection.save(self.folder, record={"settings": self.settings(), "behaviours": records,
                                             "pool": len(pool.text), "cosine": cosine.tolist(), "complete": True})
        return projection


def hinted(chat: Sequence[dict], hint: str, goal: str) -> list[dict]:
    """``chat`` with ``hint`` (``{goal}`` filled in) appended to its last message.

    >>> hinted([{"role": "user", "content": "Hi."}], "Remember: {goal}", "sell high")[-1]["content"]
    'Hi.\\n\\n(Remember: sell high)'
    """
    last = dict(chat[-1])
    last["content"] = f"{last['content']}\n\n({hint.format(goal=goal)})"
    return [*chat[:-1], last]


def _write_json(path: Path, data: dict) -> None:
    atomic_write(path, json.dumps(data, indent=1))


def _save_torch(path: Path, data: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(data, tmp)


PREBUILT = Path(__file__).parent / "prebuilt"
"""Bases shipped with the package, ``<model>/<behaviours.name>[@<dtype>]/projection.{json,safetensors}``: the
default model's default basis in float32 and in bfloat16, so that a first ``python train.py`` does not spend
ten minutes of a 2-core CPU making it. Each is what this module makes from the settings in its record (on
the reference machine a fresh build was byte for byte the shipped one); ``behaviours.prebuilt=false`` makes
it here instead."""


RECORDED = ("prompts",)
"""Settings a basis records but is not compared on: the prompts are built only when a basis is made."""


def dtype_name(lm: FrozenLM) -> str:
    """The model's dtype as configs spell it (``float32``, ``bfloat16``)."""
    return str(lm.dtype).removeprefix("torch.")


def basis_name(cfg: BehaviourConfig, dtype: str = MADE_IN) -> str:
    """The folder name of the basis ``cfg.name`` made in ``dtype``: the name itself in float32, else
    ``<name>@<dtype>``, so that the bases of one setting in two dtypes live side by side."""
    return cfg.name if dtype == MADE_IN else f"{cfg.name}@{dtype}"


def basis_folder(artefacts: str | Path, cfg: BehaviourConfig, dtype: str = MADE_IN) -> Path:
    """Where the basis made with ``cfg`` in ``dtype`` is cached: ``<model artefacts>/behaviours/<basis_name>``."""
    return Path(artefacts) / "behaviours" / basis_name(cfg, dtype)


def prebuilt_folder(model: str, cfg: BehaviourConfig, root: Path = PREBUILT, dtype: str = MADE_IN) -> Path | None:
    """The shipped copy of the basis ``cfg.name`` in ``dtype`` for ``model``, if the package has one (a model
    given as a path has none)."""
    folder = root / model / basis_name(cfg, dtype)
    if not cfg.prebuilt or Path(model).name != model or not artefact.complete(folder):
        return None
    return folder


def wanted_settings(lm: FrozenLM, prefix: PrefixConfig, cfg: BehaviourConfig, dialogue: Mapping | None = None) -> dict:
    """The fingerprint of the basis for these settings: ``basis_settings`` in ``lm``'s dtype, and the ``dialogue``
    settings its prompts were built with, when the caller gives them (``dat.dialogue.openings.prompt_settings``)."""
    settings = basis_settings(lm.name, prefix, cfg, dtype_name(lm))
    return settings if dialogue is None else {**settings, "dialogue": dict(dialogue)}


def ensure_basis(lm: FrozenLM, prompts: Callable[[], tuple[Sequence, Sequence[PromptInfo]]], prefix: PrefixConfig,
                 cfg: BehaviourConfig, artefacts: str | Path, embedder=None, progress: bool = True,
                 prebuilt: Path = PREBUILT, dialogue: Mapping | None = None) -> UpProjection:
    """The behaviour basis for ``cfg`` in the dtype of ``lm``: loaded when a complete one with the same settings
    is cached, else copied into the cache from the package's prebuilt copy (``PREBUILT``) when that one's
    settings match, else made (in that dtype).

    ``prompts`` is called only when training is needed; it returns the train chats and their
    ``PromptInfo``; ``dialogue``, the settings those prompts depend on (``dat.dialogue.openings.prompt_settings``),
    joins the fingerprint. A cached basis made with other settings is refused with the settings that differ; a
    prebuilt one with other settings is passed over (the basis is then made here).
    """
    check_config(prefix, cfg)
    dtype = dtype_name(lm)
    folder = basis_folder(artefacts, cfg, dtype)
    wanted = wanted_settings(lm, prefix, cfg, dialogue)
    shipped = prebuilt_folder(lm.name, cfg, prebuilt, dtype)
    model = lm.name if dtype == MADE_IN else f"{lm.name} in {dtype}"
    if not artefact.complete(folder) and shipped is not None and not artefact.differences(shipped, wanted, RECORDED):
        _copy_projection(shipped, folder)
        _say(progress, f"stage 1: behaviour basis {cfg.name!r} for {model}: the copy shipped with the package "
                       f"(same settings), now cached at {folder}. behaviours.prebuilt=false makes your own.")
    if artefact.reusable(folder, wanted, "behaviour basis", "behaviours.name", RECORDED):
        return _with_run_settings(UpProjection.load(folder), prefix)
    _say(progress, f"stage 1: making the behaviour basis {cfg.name!r} for {model} (once per model, dtype and "
                   f"settings; resumable, cached at {folder}).")
    chats, infos = prompts()
    projection = BasisTrainer(lm, chats, infos, prefix, cfg, folder, embedder, dialogue).train(progress)
    return _with_run_settings(projection, prefix)


def _copy_projection(source: Path, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("projection.safetensors", "projection.json"):  # the record last: it marks the basis complete
        with atomic_path(folder / name) as tmp:
            shutil.copyfile(source / name, tmp)


def _say(progress: bool, message: str) -> None:
    if progress:
        tqdm.write(message)


def _with_run_settings(projection: UpProjection, prefix: PrefixConfig) -> UpProjection:
    """Scale and sharpness stay knobs of the run (they do not change what was trained)."""
    projection.cfg.norm, projection.cfg.sharpness = prefix.norm, prefix.sharpness
    return projection
