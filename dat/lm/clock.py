"""Where a generation's time goes: every forward pass of a frozen model, timed and told apart (a profiling aid;
``benchmarks/rollout.py`` sets it against the decoding floor)."""

from __future__ import annotations

import time

from dat.lm.frozen import FrozenLM


class ForwardClock:
    """Every forward pass of the HF model during a row, timed and told apart: a **decode step** reads one
    token per row; a **read** several (system prompts, partner lines, the prefix and reply header, a state
    pass). A pass is the whole model's when generating (the LM head included) or the decoder's alone (a
    state pass); a decoder call inside the model's is part of the model's pass. The row's time outside
    all passes is spent outside the model (sampling, assembling batch caches, tokenising, the runner).

    It says where a row's time goes, set against the floor: the floor counts the tokens a dialogue decodes,
    the clock the steps the lockstep runner takes (a wave of replies lasts as long as its longest one)."""

    def __init__(self, lm: FrozenLM):
        self.modules = (lm.model, lm.model.get_decoder())
        self.steps = self.step_rows = self.reads = self.read_tokens = 0
        self.step_seconds = self.read_seconds = 0.0
        self._shape, self._began, self._depth, self._hooks = (0, 0), 0.0, 0, []

    def __enter__(self) -> ForwardClock:
        for module in self.modules:
            self._hooks += [module.register_forward_pre_hook(self._start, with_kwargs=True),
                            module.register_forward_hook(self._stop, with_kwargs=True)]
        return self

    def __exit__(self, *exc) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []

    def _start(self, module, args, kwargs) -> None:
        self._depth += 1
        if self._depth == 1:
            x = next((kwargs[k] for k in ("input_ids", "inputs_embeds") if kwargs.get(k) is not None), None)
            self._shape, self._began = tuple((args[0] if x is None else x).shape[:2]), time.perf_counter()

    def _stop(self, module, args, kwargs, output) -> None:
        self._depth -= 1
        if self._depth:
            return
        seconds, (rows, tokens) = time.perf_counter() - self._began, self._shape
        if tokens == 1:
            self.steps += 1
            self.step_rows += rows
            self.step_seconds += seconds
        else:
            self.reads += 1
            self.read_tokens += rows * tokens
            self.read_seconds += seconds

    def row(self, seconds: float) -> dict:
        """The clock's figures for a row that took ``seconds`` in all."""
        return {"decode_steps": self.steps, "decode_rows_per_step": round(self.step_rows / max(self.steps, 1), 1),
                "decode_seconds": round(self.step_seconds, 1),
                "decode_ms_per_step": round(1e3 * self.step_seconds / max(self.steps, 1), 1),
                "read_forwards": self.reads, "read_tokens_padded": self.read_tokens,
                "read_seconds": round(self.read_seconds, 1),
                "read_tokens_per_s": round(self.read_tokens / max(self.read_seconds, 1e-9)),
                "outside_model_seconds": round(seconds - self.step_seconds - self.read_seconds, 1)}
