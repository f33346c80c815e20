"""Dialogue Action Tokens: steer a frozen chat LLM with a planner trained by offline RL."""

__version__ = "0.1.0"
