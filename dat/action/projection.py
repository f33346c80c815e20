"""The up-projection: a low-dimensional action becomes L prefix embeddings the frozen LM reads.

Four kinds, one interface (``UpProjection``: action ``(batch, d)`` -> prefix ``(batch, L, hidden)``):

* ``pca`` (DAT's training-free basis): the top principal directions of the model's input-embedding matrix;
  the baseline the steerability gate compares against (docs/results/steerability.md).
* ``learned`` and ``anchors`` (experimental, ``dat.action.experimental``): a linear map trained by self-cloning
  through the frozen LM, and softmax mixtures of chosen words' embeddings (one logit per word and token).
* ``behaviours``: a basis of K trained prefixes, one per behaviour (``dat.action.behaviours``: each trained
  contrastively on the frozen model's own best against worst replies by a scorer); the action holds
  one logit per behaviour and a sharp softmax (``prefix.sharpness``) picks a mixture of them.
  With ``prefix.depth=layers`` each behaviour's prefix also holds a vector per decoder layer
  (``dat.lm.layerprefix``), and the projection returns ``(batch, layers, L, hidden)``.

Scale is expressed relative to the model's median token-embedding norm, so one setting ports
across models: with ``norm=1`` an action of unit length gives prefix tokens of a typical token's
length. ``tied`` repeats one vector L times (DAT's PCA path); otherwise the action is split into L
chunks, one per prefix token.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from dat.action import artefact
from dat.action.experimental.anchors import ANCHOR_WORDS, anchor_basis
from dat.atomic import atomic_path, atomic_write
from dat.lm.frozen import POSITIONS


@dataclass
class PrefixConfig:
    """How an action becomes prefix embeddings, and where they go."""

    kind: str = "pca"
    """pca (training-free basis of the embedding matrix), learned (self-cloning), anchors (word mixtures) or
    behaviours (a basis of contrastively trained prefixes, one per behaviour; see dat.action.behaviours)."""
    position: str = "start"
    """start (right after BOS, as DAT) or before_reply (just before the reply header)."""
    tokens: int = 2
    """Number of prefix tokens L."""
    action_dim: int = 64
    """Dimension d of the planner's action."""
    tied: bool = True
    """Repeat one vector for all L tokens (True) or give each token its own chunk of the action."""
    norm: float = 1.0
    """Scale of a unit-length action, in units of the model's median token-embedding norm."""
    path: str | None = None
    """A saved up-projection to load instead of building one (a folder written by UpProjection.save)."""
    anchors: list[str] = field(default_factory=lambda: list(ANCHOR_WORDS))
    """kind=anchors: the words (first token of each, with a leading space) whose embeddings are mixed;
    the action chunk of a prefix token must have one entry per word."""
    sharpness: float = 10.0
    """kind=anchors or behaviours: inverse temperature of the softmax that turns an action (chunk) into
    word or behaviour weights."""
    depth: str = "input"
    """kind=behaviours: input (L input embeddings) or layers (also a trained vector added at the prefix
    positions in every decoder layer, as in prefix-tuning; see dat.lm.layerprefix)."""
    null_action: bool = False
    """kind=behaviours: give the action a "do not steer" point, one more logit beside the behaviours'. Where it
    has the largest weight the line is generated with no prefix at all, exactly as the unsteered model, so a
    planner can always choose not to steer."""

    @property
    def planner_dim(self) -> int:
        """The planner's action dimension: one logit per behaviour (``action_dim``), plus the null one."""
        return self.action_dim + int(self.null_action)

    def validate(self) -> PrefixConfig:
        """Raise a ValueError naming the field and its valid values when a setting is unusable."""
        choices = {"kind": KINDS, "position": POSITIONS, "depth": DEPTHS}
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise ValueError(f"prefix.{name}={getattr(self, name)!r} is not one of: {', '.join(valid)}.")
        for name in ("tokens", "action_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"prefix.{name}={getattr(self, name)} must be a positive integer.")
        if self.norm <= 0 or self.sharpness <= 0:
            raise ValueError(f"prefix.norm={self.norm} and prefix.sharpness={self.sharpness} must be positive.")
        if self.depth == "layers" and self.kind != "behaviours":
            raise ValueError("prefix.depth=layers needs prefix.kind=behaviours (per-layer vectors are trained).")
        if self.null_action and self.kind != "behaviours":
            raise ValueError("prefix.null_action=true needs prefix.kind=behaviours (a null logit beside the "
                             f"behaviours'); prefix.kind={self.kind} has no behaviours to weigh it against.")
        if self.path and not (Path(self.path) / "projection.json").is_file():
            raise ValueError(f"prefix.path={self.path!r} holds no up-projection (projection.json missing); give a "
                             "folder written by UpProjection.save (a run's projection/ folder), or prefix.path=null.")
        return self


KINDS = ("pca", "learned", "anchors", "behaviours")
DEPTHS = ("input", "layers")

MIXTURES = ("anchors", "behaviours")
"""Kinds whose action picks a softmax mixture of stored vectors (their scale is ``norm`` alone)."""


def embedding_stats(embedding: Tensor) -> tuple[Tensor, float]:
    """Mean vector and median row norm of an input-embedding matrix ``(vocab, hidden)``."""
    weight = embedding.detach().float().cpu()  # prefixes are made on the CPU and moved to the model
    return weight.mean(0), float(weight.norm(dim=1).median())


def pca_basis(embedding: Tensor, k: int) -> Tensor:
    """Top-``k`` principal directions ``(k, hidden)`` (orthonormal rows) of the centred embedding rows."""
    weight = embedding.detach().float().cpu()
    centred = weight - weight.mean(0)
    covariance = centred.T @ centred / (weight.shape[0] - 1)
    values, vectors = torch.linalg.eigh(covariance)  # ascending eigenvalues
    order = torch.argsort(values, descending=True)[:k]
    basis = vectors[:, order].T.contiguous()
    signs = torch.sign(basis[:, :1].sum(1, keepdim=True)).clamp(min=0) * 2 - 1  # a fixed sign per row
    return basis * signs


class UpProjection(nn.Module):
    """Maps actions ``(batch, d)`` to prefixes ``(batch, L, hidden)`` (``(batch, layers, L, hidden)`` when deep).

    >>> proj = UpProjection.pca(torch.randn(100, 16), PrefixConfig(action_dim=4, tokens=2))
    >>> proj(torch.ones(3, 4)).shape
    torch.Size([3, 2, 16])
    """

    def __init__(self, cfg: PrefixConfig, hidden_size: int, token_norm: float, basis: Tensor | None = None):
        super().__init__()
        if cfg.kind not in KINDS:
            raise ValueError(f"prefix.kind={cfg.kind!r} is not one of: {', '.join(KINDS)}.")
        if cfg.depth not in DEPTHS:
            raise ValueError(f"prefix.depth={cfg.depth!r} is not one of: {', '.join(DEPTHS)}.")
        if cfg.depth == "layers" and cfg.kind != "behaviours":
            raise ValueError(f"prefix.depth=layers needs prefix.kind=behaviours (per-layer vectors are trained); "
                             f"prefix.kind={cfg.kind} fills the input embeddings only: set prefix.depth=input.")
        if not cfg.tied and cfg.action_dim % cfg.tokens:
            raise ValueError(
                f"prefix.action_dim={cfg.action_dim} must be divisible by prefix.tokens={cfg.tokens} "
                "when prefix.tied=false (each token gets an equal chunk of the action)."
            )
        self.cfg = cfg
        self.hidden_size = hidden_size
        self.register_buffer("token_norm", torch.tensor(float(token_norm)))
        chunk = cfg.action_dim if cfg.tied else cfg.action_dim // cfg.tokens
        if cfg.kind == "anchors" and chunk != len(cfg.anchors):
            raise ValueError(
                f"prefix.kind=anchors needs one action entry per anchor word and prefix token: "
                f"{len(cfg.anchors)} words, so prefix.action_dim={len(cfg.anchors) * (1 if cfg.tied else cfg.tokens)} "
                f"(got {cfg.action_dim})."
            )
        if cfg.kind == "behaviours":
            deep = cfg.depth == "layers" and basis is not None and basis.dim() == 4
            expected = (cfg.action_dim, *(basis.shape[1:2] if deep else ()), cfg.tokens, hidden_size)
            if basis is None or basis.shape != expected or (cfg.depth == "layers") != deep:
                rows = "layers, " if cfg.depth == "layers" else ""
                raise ValueError(
                    f"A behaviours up-projection with prefix.depth={cfg.depth} needs a (behaviours={cfg.action_dim}, "
                    f"{rows}tokens={cfg.tokens}, {hidden_size}) basis; got "
                    f"{None if basis is None else tuple(basis.shape)}. prefix.action_dim must equal the number of "
                    "behaviours.")
            self.register_buffer("basis", basis.float())
            self.linear = None
        elif cfg.kind in ("pca", "anchors"):
            if basis is None or basis.shape != (chunk, hidden_size):
                raise ValueError(f"A {cfg.kind} up-projection needs a ({chunk}, {hidden_size}) basis.")
            self.register_buffer("basis", basis.float())
            self.linear = None
        else:
            self.linear = nn.Linear(chunk, hidden_size)
            with torch.no_grad():  # start from the PCA geometry when a basis is given, else small random
                if basis is not None:
                    self.linear.weight.copy_(basis.T)
                self.linear.bias.zero_()

    @classmethod
    def pca(cls, embedding: Tensor, cfg: PrefixConfig) -> UpProjection:
        chunk = cfg.action_dim if cfg.tied else cfg.action_dim // cfg.tokens
        _, token_norm = embedding_stats(embedding)
        return cls(cfg, embedding.shape[1], token_norm, pca_basis(embedding, chunk))

    @classmethod
    def anchors(cls, embedding: Tensor, cfg: PrefixConfig, tokenizer) -> UpProjection:
        basis = anchor_basis(embedding, cfg.anchors, tokenizer)
        return cls(cfg, embedding.shape[1], embedding_stats(embedding)[1], basis)

    @property
    def scale(self) -> Tensor:
        """Multiplier of a unit action: norm x median token norm (x sqrt(L) per chunk when not tied).

        Anchor and behaviour mixtures already have their own norms, so there it is ``norm`` alone.
        """
        if self.cfg.kind in MIXTURES:
            return torch.tensor(float(self.cfg.norm))
        factor = 1.0 if self.cfg.tied else self.cfg.tokens ** 0.5
        return self.cfg.norm * self.token_norm * factor

    def unsteered(self, action: Tensor) -> Tensor:
        """Which rows of ``action`` choose not to steer (``prefix.null_action``: the null logit is the largest); such
        a row is generated with no prefix at all. All False without a null point."""
        self._check(action)
        if not self.cfg.null_action:
            return torch.zeros(action.shape[0], dtype=torch.bool, device=action.device)
        return action.argmax(dim=-1) == self.cfg.action_dim

    def forward(self, action: Tensor) -> Tensor:
        self._check(action)
        if self.cfg.kind == "behaviours":  # a null logit takes its share of the weight and adds no vector
            weights = torch.softmax(action.float() * self.cfg.sharpness, dim=-1)[:, : self.cfg.action_dim]
            return torch.einsum("bk,k...->b...", weights, self.basis) * self.scale
        chunks = action.float()[:, None, :] if self.cfg.tied else action.float().view(
            action.shape[0], self.cfg.tokens, -1)
        if self.cfg.kind == "anchors":
            tokens = torch.softmax(chunks * self.cfg.sharpness, dim=-1) @ self.basis
        elif self.linear is None:
            tokens = chunks @ self.basis
        else:
            tokens = self.linear(chunks)
        tokens = tokens * self.scale
        if self.cfg.tied:
            tokens = tokens.expand(-1, self.cfg.tokens, -1)
        return tokens

    def _check(self, action: Tensor) -> None:
        if action.dim() != 2 or action.shape[1] != self.cfg.planner_dim:
            null = " + 1 (prefix.null_action)" if self.cfg.null_action else ""
            raise ValueError(f"Action has shape {tuple(action.shape)}; expected (batch, {self.cfg.planner_dim}) "
                             f"(prefix.action_dim{null}).")

    def save(self, folder: str | Path, record: dict | None = None) -> Path:
        """Write ``projection.safetensors`` + ``projection.json`` (config and how it was made)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        meta = {"prefix": asdict(self.cfg), "hidden_size": self.hidden_size, "record": record or {}}
        with atomic_path(folder / "projection.safetensors") as tmp:
            save_file(tensors, str(tmp))
        atomic_write(folder / "projection.json", json.dumps(meta, indent=2))
        return folder

    @classmethod
    def load(cls, folder: str | Path, position: str | None = None) -> UpProjection:
        folder = Path(folder)
        meta_path = folder / "projection.json"
        if not meta_path.is_file():
            raise FileNotFoundError(
                f"No up-projection at {folder} (projection.json missing). Set prefix.path to a folder "
                "written by UpProjection.save, or prefix.path=null to build one."
            )
        meta = json.loads(meta_path.read_text())
        cfg = PrefixConfig(**meta["prefix"])
        if position is not None:
            cfg.position = position
        tensors = load_file(str(folder / "projection.safetensors"))
        proj = cls(cfg, meta["hidden_size"], float(tensors["token_norm"]), tensors.get("basis"))
        proj.load_state_dict(tensors)
        return proj

    @staticmethod
    def record_of(folder: str | Path) -> dict:
        """The JSON record saved with a projection (how it was trained)."""
        return json.loads((Path(folder) / "projection.json").read_text()).get("record", {})


def build_projection(
    embedding: Tensor, cfg: PrefixConfig, cache_folder: Path | None = None, tokenizer=None
) -> UpProjection:
    """The up-projection ``cfg`` asks for: loaded from ``cfg.path``, or built (PCA basis cached on disk).

    A learned projection that is not loaded starts from the PCA geometry; self-cloning trains it.
    Anchor projections need the tokenizer (to find the words' tokens).
    """
    if cfg.path:
        return UpProjection.load(cfg.path, position=cfg.position)
    if cfg.kind == "anchors":
        return UpProjection.anchors(embedding, cfg, tokenizer)
    if cfg.kind == "behaviours":
        raise ValueError(
            "prefix.kind=behaviours is trained, not built: stage 1 trains it (dat.action.basis.ensure_basis), "
            "or set prefix.path to a folder written by UpProjection.save.")
    chunk = cfg.action_dim if cfg.tied else cfg.action_dim // cfg.tokens
    _, token_norm = embedding_stats(embedding)
    if cache_folder is None:
        return UpProjection(cfg, embedding.shape[1], token_norm, pca_basis(embedding, chunk))
    folder = Path(cache_folder) / "pca" / str(chunk)  # one stage-1 artefact per basis size (dat.action.artefact)
    settings = {"kind": "pca", "directions": chunk, "embedding": list(embedding.shape)}
    if artefact.reusable(folder, settings, "PCA basis", "model.cache_dir"):
        basis = UpProjection.load(folder).basis
    else:
        basis = pca_basis(embedding, chunk)
        made = PrefixConfig(kind="pca", action_dim=chunk, tokens=1, tied=True)
        UpProjection(made, embedding.shape[1], token_norm, basis).save(folder, {"settings": settings,
                                                                               "complete": True})
    return UpProjection(cfg, embedding.shape[1], token_norm, basis)
