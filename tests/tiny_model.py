"""Tests build their tiny model with the same code as the `debug` config (dat.tiny)."""

from dat.tiny import build_tiny_model

__all__ = ["build_tiny_model"]
