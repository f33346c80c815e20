"""Shared fixtures: a tiny Llama chat model built in code (no download), saved once per session."""

from __future__ import annotations

import dat_pipeline  # noqa: F401,E402  (process settings before torch: see dat_pipeline/runtime.py)

import os

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from tests.tiny_model import build_tiny_model  # noqa: E402

pytest_plugins = ["tests.dialogue_tasks"]  # the dialogue tests' fixtures: lm (a RecordingLM), proj


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer Llama with a byte-level BPE tokenizer and a ChatML template, on disk."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))
