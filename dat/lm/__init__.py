"""The frozen chat LM: loading (and the tiny test model), chat rendering, batched states, prefix-steered
generation, key/value caches and per-layer prefixes. The lowest floor of ``dat``: it imports nothing of
the other subpackages."""
