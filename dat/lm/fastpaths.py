"""Two transformers defaults that copy memory in DAT's batched calls on a CPU, and the ways around them.

Both show in a profile of one steered generation call at 64 chats (``benchmarks/decode_costs.py``
times the call before and after, ``--fastpaths off``):

* **Grouped-query attention with a mask.** SmolLM2 and Llama-3 share each key/value head among several
  query heads. transformers' SDPA path lets torch do that sharing (``enable_gqa``) only without a
  mask on CUDA, or for a single query; otherwise it first copies every key and value head once per
  query head it serves (``repeat_kv``). DAT's batches are always masked (left padding), so every read of
  more than one token (the chat's new lines, the prefix and reply header at the start of generation)
  copied the whole batch cache 3x, layer by layer. On a CPU, torch's SDPA takes ``enable_gqa`` with a
  mask into its fused kernel without that copy; ``grouped_sdpa`` asks for it there and leaves every
  other case (CUDA, no shared heads) to transformers' function unchanged.
* **The last position's logits from a strided view.** ``logits_to_keep=1`` hands the LM head
  ``hidden[:, -1:]``, a non-contiguous view; ``torch.matmul`` cannot fold that into one matrix product
  and runs a batched product against a copy of the head's weight per row (49k x 576 floats each).
  A pre-hook makes the head's input contiguous, a copy of one hidden vector per row.

Results are unchanged up to float rounding (``tests/test_fastpaths.py``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

GROUPED_SDPA = "grouped_sdpa"
"""The name ``grouped_sdpa`` is registered under in transformers' attention and mask interfaces."""


def grouped_sdpa(module: nn.Module, query: Tensor, key: Tensor, value: Tensor, attention_mask: Tensor | None,
                 dropout: float = 0.0, scaling: float | None = None, **kwargs) -> tuple[Tensor, None]:
    """transformers' SDPA attention, except that on a CPU, with shared key/value heads and a mask, torch
    shares the heads (``enable_gqa``) instead of transformers copying them first."""
    shared = getattr(module, "num_key_value_groups", 1) > 1
    if not (shared and query.device.type == "cpu" and attention_mask is not None and query.shape[2] > 1
            and kwargs.get("position_bias") is None and kwargs.get("softcap") is None):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling, enable_gqa=True)
    return out.transpose(1, 2).contiguous(), None


def _contiguous_input(module: nn.Module, args: tuple) -> tuple:
    return (args[0].contiguous(), *args[1:])


def apply(model: nn.Module) -> nn.Module:
    """Route ``model``'s SDPA attention through ``grouped_sdpa`` and make its LM head read contiguous input.

    A model on another attention (eager, flash) keeps it. Idempotent; returns ``model``.
    """
    if GROUPED_SDPA not in AttentionInterface._global_mapping:
        AttentionInterface.register(GROUPED_SDPA, grouped_sdpa)
        AttentionMaskInterface.register(GROUPED_SDPA, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    if model.config._attn_implementation == "sdpa":
        model.set_attn_implementation(GROUPED_SDPA)
    head = model.get_output_embeddings()
    if head is not None and not getattr(head, "_dat_contiguous_input", False):
        head.register_forward_pre_hook(_contiguous_input)
        head._dat_contiguous_input = True
    return model
