"""Paired evaluation of conditions (planner, unsteered, zero and random action) on the same held-out
episodes, the statistics behind its intervals, and the reports and plots. The top floor with ``dat.rl``."""
