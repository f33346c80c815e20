"""``python stability.py [Hydra overrides]`` in a checkout: the entry point ``dat_pipeline.stability`` (the installed
``dat stability`` runs the same), with the configs of ``dat_pipeline/conf/``."""

from dat_pipeline.stability import main

if __name__ == "__main__":
    main()
