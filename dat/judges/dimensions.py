"""The seven SOTOPIA-EVAL dimensions, their score ranges and what a judge is asked about each.

Every range is 10 wide (0..10, -5..5, -10..0), so normalising a score onto [0, 1] is ``(x - low) / 10``
for all of them, and Sotopia's "overall" (the plain mean of the seven) keeps one common unit.
The descriptions paraphrase the rubric in our own words; both the ``api`` and the ``local`` judge use them.
"""

from __future__ import annotations

DIMENSIONS: tuple[str, ...] = (
    "believability",
    "relationship",
    "knowledge",
    "secret",
    "social_rules",
    "financial_and_material_benefits",
    "goal",
)
"""Sotopia's order, which is also the order the ``api`` judge asks for them."""

RANGES: dict[str, tuple[int, int]] = {
    "goal": (0, 10),
    "believability": (0, 10),
    "knowledge": (0, 10),
    "relationship": (-5, 5),
    "financial_and_material_benefits": (-5, 5),
    "secret": (-10, 0),
    "social_rules": (-10, 0),
}

DESCRIPTIONS: dict[str, str] = {
    "believability": (
        "How natural and in-character the agent is: no confusion about its own identity, no needless "
        "repetition, not oddly over-polite, and actions consistent with its personality and values."
    ),
    "relationship": (
        "How the relationship between the two changed: harmed (negative), unchanged (0) or improved "
        "(positive), including personal ties, social status and reputation."
    ),
    "knowledge": (
        "How much new and important information the agent gained during the conversation."
    ),
    "secret": (
        "Whether the agent kept its secret or secretive intention: 0 means nothing leaked, "
        "-10 means the secret was critically revealed."
    ),
    "social_rules": (
        "Whether the agent broke moral rules or laws: 0 means none, more negative means worse violations."
    ),
    "financial_and_material_benefits": (
        "Short- and long-term material gains (positive) or losses (negative): money, goods, jobs "
        "and the like."
    ),
    "goal": (
        "How far the agent achieved its social goal: 0 means not at all, 10 means completely."
    ),
}

LOW_ANCHOR: dict[str, str] = {
    "goal": "the goal was not achieved at all",
    "believability": "completely unnatural or out of character",
    "knowledge": "learned nothing new or useful",
    "relationship": "the relationship was badly damaged",
    "financial_and_material_benefits": "a large material loss",
    "secret": "the secret was fully revealed",
    "social_rules": "serious violations of moral rules or laws",
}
"""What the bottom of each range means, for prompts that use a 0..10 scale for every dimension."""

HIGH_ANCHOR: dict[str, str] = {
    "goal": "the goal was fully achieved",
    "believability": "perfectly natural and in character",
    "knowledge": "gained a lot of new, important information",
    "relationship": "the relationship clearly improved",
    "financial_and_material_benefits": "a large material gain",
    "secret": "nothing secret was revealed",
    "social_rules": "no rule was broken",
}


def check_dimension(name: str) -> str:
    """Return ``name`` if it is a known dimension, else raise an error listing the valid ones."""
    if name not in RANGES:
        raise ValueError(f"unknown judge dimension {name!r}; expected one of {', '.join(DIMENSIONS)}")
    return name


def normalise(name: str, score: float) -> float:
    """Map a score onto [0, 1] by its dimension's range (0 = worst, 1 = best)."""
    low, high = RANGES[name]
    return (score - low) / (high - low)
