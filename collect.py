"""``python collect.py [Hydra overrides]`` in a checkout: the entry point ``dat_pipeline.collect`` (the installed
``dat collect`` runs the same), with the configs of ``dat_pipeline/conf/``."""

from dat_pipeline.collect import main

if __name__ == "__main__":
    main()
