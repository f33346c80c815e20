"""Offline RL on the collected episodes: TD3+BC on stable-baselines3, the state normaliser, the replay
buffer, resumable checkpoints and the shareable export (``DATPolicy``). Imports ``dat.action`` (the export
carries the up-projection) and nothing above it."""
