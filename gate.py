"""``python gate.py [Hydra overrides]`` in a checkout: the entry point ``dat_pipeline.gate`` (the installed
``dat gate`` runs the same), with the configs of ``dat_pipeline/conf/``."""

from dat_pipeline.gate import main

if __name__ == "__main__":
    main()
