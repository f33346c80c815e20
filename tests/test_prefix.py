"""UpProjection: shapes, token-sized scale, a stable PCA basis, and a safetensors round trip."""

from __future__ import annotations

import pytest
import torch

from dat.action import artefact
from dat.action.projection import PrefixConfig, UpProjection, build_projection, embedding_stats, pca_basis


@pytest.fixture
def embedding() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(500, 32, generator=g) * torch.linspace(0.2, 3.0, 32)


def test_pca_basis_is_orthonormal_and_ordered(embedding):
    basis = pca_basis(embedding, 8)
    assert torch.allclose(basis @ basis.T, torch.eye(8), atol=1e-5)
    centred = embedding - embedding.mean(0)
    variances = (centred @ basis.T).var(0)
    assert torch.all(variances[:-1] >= variances[1:])


@pytest.mark.parametrize("tied", [True, False])
def test_unit_action_gives_token_sized_prefix(embedding, tied):
    cfg = PrefixConfig(action_dim=8, tokens=2, tied=tied, norm=1.0)
    projection = UpProjection.pca(embedding, cfg)
    action = torch.randn(5, 8)
    action = action / action.norm(dim=1, keepdim=True)
    prefix = projection(action)
    assert prefix.shape == (5, 2, 32)
    _, median = embedding_stats(embedding)
    total = prefix.norm(dim=-1).pow(2).sum(-1).sqrt()  # both tokens together
    expected = median * (2**0.5 if tied else 2**0.5)
    assert torch.allclose(total, torch.full((5,), expected), rtol=1e-4)
    if tied:
        assert torch.equal(prefix[:, 0], prefix[:, 1])


def test_norm_scales_linearly(embedding):
    small = UpProjection.pca(embedding, PrefixConfig(action_dim=8, norm=1.0))
    large = UpProjection.pca(embedding, PrefixConfig(action_dim=8, norm=4.0))
    action = torch.rand(3, 8)
    assert torch.allclose(large(action), 4 * small(action), atol=1e-5)


@pytest.mark.parametrize("kind", ["pca", "learned"])
def test_save_load_round_trip(embedding, tmp_path, kind):
    projection = build_projection(embedding, PrefixConfig(kind=kind, action_dim=8))
    if kind == "learned":
        with torch.no_grad():
            projection.linear.bias.add_(0.5)
    projection.save(tmp_path / "proj", record={"trained_by": "test"})
    loaded = UpProjection.load(tmp_path / "proj")
    action = torch.rand(4, 8) * 2 - 1
    assert torch.equal(loaded(action), projection(action))
    assert UpProjection.record_of(tmp_path / "proj") == {"trained_by": "test"}


def test_pca_basis_is_cached(embedding, tmp_path):
    build_projection(embedding, PrefixConfig(action_dim=8), tmp_path)
    assert artefact.complete(tmp_path / "pca" / "8")
    again = build_projection(embedding * 0 + 1, PrefixConfig(action_dim=8), tmp_path)  # basis read from disk
    assert torch.allclose(again.basis, pca_basis(embedding, 8))
    with pytest.raises(ValueError, match=r"PCA basis cached at .* other settings \(embedding\)"):
        build_projection(embedding[:, :-1], PrefixConfig(action_dim=8), tmp_path)  # another model's embedding


def test_bad_shapes_are_explained(embedding):
    projection = UpProjection.pca(embedding, PrefixConfig(action_dim=8))
    with pytest.raises(ValueError, match=r"expected \(batch, 8\)"):
        projection(torch.zeros(2, 7))
    with pytest.raises(ValueError, match="divisible"):
        UpProjection.pca(embedding, PrefixConfig(action_dim=7, tokens=2, tied=False))
    with pytest.raises(FileNotFoundError, match="prefix.path"):
        UpProjection.load("/nonexistent/projection")


class WordTokenizer:
    """A tokenizer stand-in: each word is one id, its position in ``vocab`` (leading space ignored)."""

    def __init__(self, vocab: list[str]):
        self.vocab = vocab

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict:
        return {"input_ids": [self.vocab.index(w) for w in text.split()]}


def test_anchor_prefix_mixes_the_words_embeddings(embedding, tmp_path):
    words = ["great", "terrible", "price", "sorry"]
    tokenizer = WordTokenizer(["pad", *words])
    cfg = PrefixConfig(kind="anchors", anchors=words, action_dim=4, tokens=2, position="before_reply")
    projection = build_projection(embedding, cfg, tokenizer=tokenizer)
    picked = projection(torch.tensor([[1.0, -1.0, -1.0, -1.0], [-1.0, -1.0, -1.0, 1.0]]))
    assert picked.shape == (2, 2, 32)
    # A sharp softmax on one high logit gives (almost) that word's own embedding, at token norm.
    assert torch.allclose(picked[0, 0], embedding[1], atol=1e-6)
    assert torch.allclose(picked[1, 1], embedding[4], atol=1e-6)
    even = projection(torch.zeros(1, 4))[0, 0]
    assert torch.allclose(even, embedding[1:5].mean(0), atol=1e-6)
    projection.save(tmp_path / "anchors")
    action = torch.rand(3, 4) * 2 - 1
    assert torch.equal(UpProjection.load(tmp_path / "anchors")(action), projection(action))


def test_anchor_settings_are_checked(embedding):
    with pytest.raises(ValueError, match="action_dim=3"):
        build_projection(embedding, PrefixConfig(kind="anchors", anchors=["a", "b", "c"], action_dim=4),
                         tokenizer=WordTokenizer(["a", "b", "c"]))
    with pytest.raises(ValueError, match="tokenizer"):
        build_projection(embedding, PrefixConfig(kind="anchors", anchors=["a"], action_dim=1))
    with pytest.raises(ValueError, match="one of: pca, learned, anchors"):
        UpProjection(PrefixConfig(kind="words"), 32, 1.0)


def test_a_null_logit_is_the_do_not_steer_point_of_a_behaviour_basis():
    basis = torch.randn(2, 2, 16)
    cfg = PrefixConfig(kind="behaviours", action_dim=2, tokens=2, sharpness=30.0, null_action=True)
    projection = UpProjection(cfg, 16, 1.0, basis)
    actions = torch.tensor([[1.0, -1.0, -1.0], [-1.0, -1.0, 1.0], [0.2, 0.9, 0.5]])
    assert projection.unsteered(actions).tolist() == [False, True, False]
    assert torch.allclose(projection(actions[:1]), basis[0][None], atol=1e-6)  # the null logit adds no vector
    with pytest.raises(ValueError, match=r"expected \(batch, 3\) \(prefix.action_dim \+ 1"):
        projection(torch.zeros(1, 2))
    plain = UpProjection(PrefixConfig(kind="behaviours", action_dim=2, tokens=2), 16, 1.0, basis)
    assert not plain.unsteered(torch.zeros(4, 2)).any()
    with pytest.raises(ValueError, match="prefix.null_action=true needs prefix.kind=behaviours"):
        PrefixConfig(kind="pca", null_action=True).validate()
