"""Per-layer ("deep") prefixes: free vectors added to the hidden states at the prefix positions of every layer.

An input-embedding prefix reaches the deeper layers only through what the frozen layers make of
it. Prefix-tuning (Li & Liang 2021) and P-tuning v2 (Liu et al. 2022) found such prompts weak on
models far below 10B parameters and per-layer prefixes strong across scales. Here a deep prefix is
a tensor ``(layers, L, hidden)``:

* row 0 holds the L input embeddings (the input prefix, spliced in as usual);
* row j (1 <= j < layers) is *added* to the hidden state entering decoder layer j at the prefix's
  L positions.

So the keys and values of every layer at those positions follow from free vectors, as in
prefix-tuning, while the prefix stays an ordinary run of sequence positions: the KV cache, masks,
position ids and batching work unchanged, and a deep prefix whose rows 1.. are zero gives exactly
the input prefix's output (``tests/test_layerprefix.py``).

The additions are made by forward pre-hooks on the decoder layers, active only inside ``added``
and only on the first forward pass of that block (the one that reads the prefix; later decoding
steps read cached keys and values).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn


def decoder_layers(model) -> nn.ModuleList:
    """The decoder layers of a Hugging Face causal LM (Llama, Qwen, Mistral, Gemma style)."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else getattr(model, "model", None)
    layers = getattr(decoder, "layers", None)
    if not isinstance(layers, nn.ModuleList) or not len(layers):
        raise ValueError(f"{type(model).__name__} has no decoder.layers; per-layer prefixes (prefix.depth=layers) "
                         "need a Llama-style model. Use prefix.depth=input.")
    return layers


def is_deep(prefix: Tensor | None) -> bool:
    """Whether ``prefix`` is a deep prefix ``(layers, L, hidden)`` rather than an input prefix ``(L, hidden)``."""
    return prefix is not None and prefix.dim() == 3


def tokens(prefix: Tensor | None) -> int:
    """Number of sequence positions the prefix takes (0 for none)."""
    return 0 if prefix is None else int(prefix.shape[-2])


def split(prefix: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
    """(input embeddings ``(L, hidden)``, per-layer additions ``(layers - 1, L, hidden)`` or None)."""
    if not is_deep(prefix):
        return prefix, None
    return prefix[0], prefix[1:]


def splits(prefixes: Sequence[Tensor | None]) -> tuple[list[Tensor | None], list[Tensor | None]]:
    """``split`` of each prefix of a batch: (input parts, layer parts)."""
    parts = [split(p) for p in prefixes]
    return [p[0] for p in parts], [p[1] for p in parts]


@contextmanager
def added(model, additions: Sequence[Tensor | None], starts: Sequence[int]) -> Iterator[None]:
    """Within the block, the first forward pass adds ``additions[i][j - 1]`` to row i's hidden state
    entering decoder layer j, at positions ``starts[i] .. starts[i] + L`` of that pass's input.

    Rows whose addition is None are left alone; with no additions at all nothing is hooked.
    Differentiable in the additions.
    """
    if all(a is None for a in additions):
        yield
        return
    layers = decoder_layers(model)
    depth = next(a for a in additions if a is not None).shape[0]
    if depth != len(layers) - 1:
        raise ValueError(f"A deep prefix has {depth + 1} layer rows; this model has {len(layers)} layers "
                         "(the prefix was made for another model).")
    done: set[int] = set()

    def hook(index: int):
        def add(module, args, kwargs):
            if index in done:
                return None
            done.add(index)
            hidden = args[0] if args else kwargs["hidden_states"]
            if hidden.shape[0] != len(additions):
                raise ValueError(f"{len(additions)} deep prefixes for a batch of {hidden.shape[0]} rows.")
            hidden = _added(hidden, additions, starts, index)
            if args:
                return (hidden, *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": hidden}
        return add

    handles = [layers[j].register_forward_pre_hook(hook(j), with_kwargs=True) for j in range(1, len(layers))]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _added(hidden: Tensor, additions: Sequence[Tensor | None], starts: Sequence[int], layer: int) -> Tensor:
    """``hidden`` with each row's vectors for ``layer`` added at its prefix positions (only those entries
    are touched; differentiable in the additions)."""
    rows, cols, vectors = [], [], []
    for row, (addition, start) in enumerate(zip(additions, starts, strict=True)):
        if addition is None:
            continue
        part = addition[layer - 1]
        if start < 0 or start + part.shape[0] > hidden.shape[1]:
            raise ValueError(f"A deep prefix at positions {start}..{start + part.shape[0]} does not fit a pass "
                             f"of {hidden.shape[1]} positions.")
        rows += [row] * part.shape[0]
        cols += range(start, start + part.shape[0])
        vectors.append(part.to(hidden))
    index = (torch.tensor(rows, device=hidden.device), torch.tensor(cols, device=hidden.device))
    return hidden.index_put(index, torch.cat(vectors), accumulate=True)
