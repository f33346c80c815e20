"""``python train.py [Hydra overrides]`` in a checkout: the entry point ``dat_pipeline.train`` (the installed
``dat train`` runs the same), with the configs of ``dat_pipeline/conf/``."""

from dat_pipeline.train import main

if __name__ == "__main__":
    main()
