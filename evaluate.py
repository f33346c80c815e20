"""``python evaluate.py [Hydra overrides]`` in a checkout: the entry point ``dat_pipeline.evaluate`` (the installed
``dat evaluate`` runs the same), with the configs of ``dat_pipeline/conf/``."""

from dat_pipeline.evaluate import main

if __name__ == "__main__":
    main()
