"""Action spaces kept to compare against, not to use: none of them passes the steerability gate on the default
model (docs/results/steerability.md, "Action spaces that fail the gate"). Self-cloning (``prefix.kind=learned``,
DAT's stage 1) and anchor-word mixtures (``prefix.kind=anchors``); their presets are under
``dat_pipeline/conf/prefix/experimental/``. The core (``dat.action``) reaches them only through stage 1's dispatch and
the projection's kind."""
