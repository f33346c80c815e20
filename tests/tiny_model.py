"""Tests build their tiny model with the same code as the `debug` config (dat.lm.tiny)."""

from dat.lm.tiny import build_tiny_model

__all__ = ["build_tiny_model"]
